"""``streambench endpoint --quality`` against the stub OpenAI server of ``test_endpoint.py``.

The stub answers ``echo`` + ``logprobs`` from known numbers: one token per UTF-8 byte of the
prompt (the tests' byte-level tokenizer), token ``i``'s log-probability ``-(lpa + lpb * (i %
5))``; the expected perplexity is computed here from the prompts the stub saw. Its streamed
outputs are ``"ab " * n``, so the agreement with a reference whose saved text differs at a
known character is known. Hostile answers (NaN, a positive log-probability, a wrong count,
control characters in an error) must leave ``perplexity`` ``null`` with an inert reason.

Runtime: ~40 s (2 shared cores; one local ``streambench run`` of a tiny model).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys

import pytest
from test_endpoint import StubProcess

from streambench.endpoint import EndpointSpec
from streambench.endpoint.quality import prompt_perplexity
from streambench.tiny import build_tokenizer, save_tiny_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPTS = ["hello there world", "the quick brown fox jumps", "naïve café, 3 tokens?"]
FAST = "ttft=0.005;gap=0.001"


@pytest.fixture(scope="module")
def stub():
    s = StubProcess()
    yield s
    s.close()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """(tokenizer dir, prompt file, another prompt file)."""
    root = tmp_path_factory.mktemp("quality")
    tok = root / "tok"
    build_tokenizer().save_pretrained(tok)
    prompts = root / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    other = root / "other.jsonl"
    other.write_text("".join(json.dumps({"prompt": p + "!"}) + "\n" for p in PROMPTS))
    return str(tok), str(prompts), str(other)


def cli(*args: str, command: str = "endpoint") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": ROOT}
    env.pop("OPENAI_API_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "streambench", command, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=ROOT,
    )


def expected_perplexity(prompts, a: float, b: float) -> tuple[float, int]:
    """exp(mean NLL) over every prompt's tokens after the first, from the stub's formula."""
    nll = [a + b * (i % 5) for p in prompts for i in range(1, len(p.encode()))]
    return math.exp(sum(nll) / len(nll)), len(nll)


def echo_bodies(stub, scenario: str) -> list[dict]:
    return [
        s["body"]
        for s in stub.seen
        if s["path"].split("/")[1] == scenario and s["body"].get("echo")
    ]


def test_perplexity_is_exp_mean_of_what_the_server_served(stub, files, tmp_path):
    tok, prompts, _ = files
    scenario = f"{FAST};lpa=0.3;lpb=0.2"
    out, csv = tmp_path / "q.json", tmp_path / "q.csv"
    args = [stub.url(scenario), "--model", "m", "--tokenizer", tok, "--prompts", prompts]
    args += [
        "--output-len",
        "4",
        "--quality",
        "--concurrency",
        "1,2",
        "-o",
        str(out),
        "-o",
        str(csv),
    ]
    stub.reset()
    proc = cli(*args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    want, tokens = expected_perplexity(PROMPTS, 0.3, 0.2)
    entries = json.loads(out.read_text())["configurations"]
    assert len(entries) == 2
    for entry in entries:
        q = entry["quality"]
        assert q["perplexity"] == pytest.approx(want, rel=1e-12)
        assert q["tokens"] == tokens and q["texts"] == 3
        assert q["context_length"] == max(len(p.encode()) for p in PROMPTS)
        assert q["agreement"] is None and "--quality-reference" in q["reasons"]["agreement"]
    # scored once, after the first point's timed requests, never among them; greedy, 1 token
    seen = [s for s in stub.seen if s["path"].split("/")[1] == scenario]
    echo_at = [i for i, s in enumerate(seen) if s["body"].get("echo")]
    assert len(echo_at) == 3 and echo_at == list(range(echo_at[0], echo_at[0] + 3))
    assert sum(1 for s in seen[: echo_at[0]] if not s["body"].get("echo")) >= 4  # point 1
    assert any(not s["body"].get("echo") for s in seen[echo_at[-1] :])  # point 2 after
    for s in (seen[i] for i in echo_at):
        body = s["body"]
        assert body["logprobs"] == 1 and body["max_tokens"] == 1 and body["temperature"] == 0
        assert not body.get("stream") and body["prompt"] in PROMPTS
    assert f"perplexity {want:.4g} ({tokens} tokens of 3 text(s)" in proc.stdout
    header, row = csv.read_text().splitlines()[:2]
    cells = dict(zip(header.split(","), row.split(",")))
    assert float(cells["perplexity"]) == pytest.approx(want, rel=1e-9)
    # the HTML report of a served file carries its quality too (speed against quality)
    page = tmp_path / "q.html"
    report = cli(str(out), "-o", str(page), command="report")
    assert report.returncode == 0, report.stdout + report.stderr
    assert '"perplexity"' in page.read_text()


def test_without_a_tokenizer_the_usage_count_says_which_tokens_are_the_prompt(stub, tmp_path):
    """Generated prompts (``--in-out``), no tokenizer: the server's ``usage.prompt_tokens``
    separates the prompt's log-probabilities from the generated token's."""
    scenario = f"{FAST};lpa=1.1;lpb=0.05;notok"
    out = tmp_path / "g.json"
    stub.reset()
    proc = cli(stub.url(scenario), "--model", "m", "--in-out", "12-4", "--requests", "3",
               "--quality", "-o", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sent = [b["prompt"] for b in echo_bodies(stub, scenario)]
    assert len(sent) == 4  # warm-up + requests prompts, each once
    want, tokens = expected_perplexity(sent, 1.1, 0.05)
    q = json.loads(out.read_text())["configurations"][0]["quality"]
    assert q["perplexity"] == pytest.approx(want, rel=1e-12) and q["tokens"] == tokens


def _spec(stub, scenario: str, **kw) -> EndpointSpec:
    return EndpointSpec(url=stub.url(scenario), model="m", prompt="hello there world", **kw)


@pytest.mark.parametrize(
    ("opt", "says"),
    [
        ("lp=none", "no choices[0].logprobs.token_logprobs"),
        ("lp=nan", "log-probability is nan, expected a finite number <= 0"),
        ("lp=pos", "log-probability is 0.5, expected a finite number <= 0"),
        ("lp=short", "echoed 17 log-probabilities for a prompt of 18 tokens"),
        ("lp=count", "the server counts 18 prompt tokens, --tokenizer makes 17"),
    ],
)
def test_hostile_or_missing_numbers_leave_perplexity_null_with_the_reason(stub, opt, says):
    tok = build_tokenizer()
    spec = _spec(stub, f"{FAST};{opt}")
    if opt == "lp=short":  # checked against usage (no tokenizer): 17 bytes, one fewer
        spec = dataclasses.replace(spec, prompt="hello there world!")
        tok = None
    q = prompt_perplexity(spec, tok)
    assert q.perplexity is None and q.tokens is None, q
    assert says in q.reasons["perplexity"], q.reasons


def test_a_server_that_refuses_echo_still_benchmarks_and_says_why_inertly(stub, files, tmp_path):
    tok, prompts, _ = files
    out = tmp_path / "r.json"
    proc = cli(stub.url(f"{FAST};echostatus=400"), "--model", "m", "--tokenizer", tok,
               "--prompts", prompts, "--output-len", "4", "--quality", "-o", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    entry = json.loads(out.read_text())["configurations"][0]
    assert entry["status"] == "ok"
    why = entry["quality"]["reasons"]["perplexity"]
    assert why.startswith("the server refused echo+logprobs on /completions (HTTP 400")
    assert "echo is not supported" in why
    for text in (why, proc.stdout):
        assert not any(c in text for c in "\x1b\x07"), repr(text)
    assert "\n" not in why
    chat = prompt_perplexity(_spec(stub, FAST, chat=True), None)
    assert chat.perplexity is None and "--chat" in chat.reasons["perplexity"]


def _save_reference(stub, files, tmp_path, name: str = "ref.json"):
    tok, prompts, _ = files
    ref = tmp_path / name
    proc = cli(stub.url(FAST), "--model", "m", "--tokenizer", tok, "--prompts", prompts,
               "--output-len", "6", "--save-outputs", "-o", str(ref))  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return ref


def _quality_with(stub, files, tmp_path, reference: str, *extra: str):
    tok, prompts, _ = files
    out = tmp_path / "agree.json"
    proc = cli(stub.url(FAST), "--model", "m", "--tokenizer", tok, "--prompts", prompts,
               "--output-len", "6", "--save-outputs", "--quality", "--quality-reference",
               reference, "-o", str(out), *extra)  # fmt: skip
    return proc, out


def test_agreement_with_saved_outputs_identical_and_one_divergence(stub, files, tmp_path):
    ref = _save_reference(stub, files, tmp_path)
    doc = json.loads(ref.read_text())
    ref_id = doc["configurations"][0]["id"]
    proc, out = _quality_with(stub, files, tmp_path, str(ref))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    q = json.loads(out.read_text())["configurations"][0]["quality"]
    n = len("ab " * 6)  # 18 characters = 18 tokens of the byte-level tokenizer, per prompt
    assert q["agreement"] == 1.0 and q["first_divergence_mean"] == n and q["reference"] == ref_id
    # prompt 1's saved text differs at character 7: 53 of 54 positions agree
    for r in doc["configurations"][0]["requests"]:
        if r["prompt_index"] == 1 and r["output_text"]:
            r["output_text"] = r["output_text"][:7] + "X" + r["output_text"][8:]
    ref.write_text(json.dumps(doc))
    proc, out = _quality_with(stub, files, tmp_path, str(ref))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    q = json.loads(out.read_text())["configurations"][0]["quality"]
    assert q["agreement"] == pytest.approx((3 * n - 1) / (3 * n), rel=1e-12)
    assert q["first_divergence_mean"] == pytest.approx((n + 7 + n) / 3, rel=1e-12)
    assert "agreement 98.1 % with" in proc.stdout


def test_agreement_with_a_local_run_saved_outputs(stub, files, tmp_path):
    """The reference is a real ``streambench run --prompts FILE --save-outputs`` file of a tiny
    model: its texts (not the stub's) tokenized and compared position by position."""
    _tok, prompts, _ = files
    model = save_tiny_model(tmp_path / "tiny", vocabulary="printable")
    run = tmp_path / "run.json"
    proc = cli(str(model), "--prompts", prompts, "--output-len", "6", "--save-outputs",
               "--trials", "1", "--warmup", "0", "-o", str(run), command="run")  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    entry = json.loads(run.read_text())["configurations"][0]
    saved = {  # one trial per prompt of the file (batch 1)
        r["prompt_index"]: r["output_text"]
        for t in entry["trials"]
        for r in t["extra"]["workload"]["requests"]
    }
    assert sorted(saved) == [0, 1, 2]
    proc, out = _quality_with(stub, files, tmp_path, str(run))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    q = json.loads(out.read_text())["configurations"][0]["quality"]
    same = total = 0
    firsts = []
    for i in range(len(PROMPTS)):  # independently: byte by byte (one token per byte)
        a, b = ("ab " * 6).encode(), saved[i].encode()
        pairs = [
            (a[k] if k < len(a) else None, b[k] if k < len(b) else None)
            for k in range(max(len(a), len(b)))
        ]
        matches = [x == y for x, y in pairs]
        same, total = same + sum(matches), total + len(matches)
        firsts.append(matches.index(False) if False in matches else len(matches))
    assert q["reference"] == entry["id"]
    assert q["agreement"] == pytest.approx(same / total, rel=1e-12)
    assert q["first_divergence_mean"] == pytest.approx(sum(firsts) / len(firsts), rel=1e-12)


def test_what_cannot_be_compared_is_refused_before_any_request(stub, files, tmp_path):
    tok, prompts, other = files
    ref = _save_reference(stub, files, tmp_path, "ref2.json")
    stub.reset()
    cases = [
        (["--prompts", other], "its outputs are of other prompts"),
        (["--extra-body", '{"temperature": 0.7}'], "needs greedy outputs"),
    ]
    for extra, says in cases:
        out = tmp_path / "x.json"
        proc = cli(stub.url(FAST), "--model", "m", "--tokenizer", tok, "--prompts", prompts,
                   "--output-len", "6", "--save-outputs", "--quality", "--quality-reference",
                   str(ref), "-o", str(out), *extra)  # fmt: skip
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert says in proc.stderr and "--quality-reference" in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and not out.exists()
    base = [stub.url(FAST), "--model", "m", "--prompts", prompts, "--output-len", "6"]
    for args, says in [
        ([*base, "--save-outputs", "--quality", "--quality-reference", str(ref)], "--tokenizer"),
        (
            [*base, "--tokenizer", tok, "--quality", "--quality-reference", str(ref)],
            "--save-outputs",
        ),
        ([*base, "--quality-reference", str(ref)], "needs --quality"),
        ([*base, "--quality", "--quality-reference", prompts], prompts),
    ]:
        proc = cli(*args)
        assert proc.returncode == 2 and says in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert stub.seen == []  # nothing was sent


def test_a_hostile_reference_file_is_refused_naming_it(stub, files, tmp_path):
    ref = _save_reference(stub, files, tmp_path, "ref3.json")
    doc = json.loads(ref.read_text())
    for r in doc["configurations"][0]["requests"]:
        if r.get("output_text"):
            r["output_text"] = 12345
    ref.write_text(json.dumps(doc))
    proc, _ = _quality_with(stub, files, tmp_path, str(ref))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"--quality-reference {ref}" in proc.stderr and "output_text" in proc.stderr
