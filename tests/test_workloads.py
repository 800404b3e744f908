"""Workloads (``--prompts``, ``--output-len``, ``--length-spread``, ``--shared-prefix``,
``--save-outputs``): files made here, run through ``streambench run`` on the embedded tiny model
(byte tokenizer: an ASCII text of N characters is N tokens) and through ``streambench endpoint``
against the stub server of ``test_endpoint.py`` (which records every request it received)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streambench.errors import UsageError
from streambench.tiny import build_tokenizer
from streambench.workloads import (
    WorkloadSpec,
    build_requests,
    read_prompt_file,
    synthetic_requests,
)

ROOT = Path(__file__).resolve().parent.parent
TEXTS = ["Hello there, clockmaker", "What time is it?", "Tell me a story about the sea."]
CHAT = [{"role": "user", "content": "Who repairs the clocks?"}]


def cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "streambench", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )


def write_files(d: Path) -> dict[str, Path]:
    """The same prompts in every format (ShareGPT: references of 4, 6, 9 characters)."""
    (d / "p.txt").write_text(TEXTS[0] + "\n\n" + TEXTS[1] + "\n" + TEXTS[2] + "\n")
    lines = [{"prompt": TEXTS[0], "output_tokens": 3}, {"messages": CHAT, "output_tokens": 5}]
    (d / "p.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    refs = ["abcd", "abcdef", "abcdefghi"]
    share = [
        {"conversations": [{"from": "human", "value": t}, {"from": "gpt", "value": r}]}
        for t, r in zip(TEXTS, refs)
    ]
    (d / "p.json").write_text(json.dumps(share))
    with open(d / "p.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "prompt"])
        for i, t in enumerate(TEXTS):
            w.writerow([i, t])
    return {k: d / f"p.{k}" for k in ("txt", "jsonl", "json", "csv")}


# ------------------------------------------------------------------------- files, pure
def test_every_format_reads_the_same_prompts(tmp_path):
    files = write_files(tmp_path)
    for kind in ("txt", "json", "csv"):
        f = read_prompt_file(str(files[kind]))
        assert [i.text for i in f.items] == TEXTS, kind
        assert len(f.sha256) == 64
    assert read_prompt_file(str(files["txt"])).items[1].where == "line 3"
    share = read_prompt_file(str(files["json"]))
    assert share.format == "sharegpt" and share.items[2].reference_text == "abcdefghi"
    jl = read_prompt_file(str(files["jsonl"]))
    assert jl.items[0].reference_tokens == 3 and jl.items[1].messages == tuple(CHAT)


@pytest.mark.parametrize(
    "name, content, where",
    [
        ("p.yaml", "x", "unknown format"),
        ("p.txt", "\n\n  \n", "empty file"),
        ("p.txt", b"ok\n\xff\xfe\n", "line 2"),
        ("p.jsonl", '{"prompt": "a"}\n[1, 2]\n', "line 2"),
        ("p.jsonl", '{"prompt": "a"}\n{"prompt": \n', "line 2"),
        ("p.jsonl", '{"text": "a"}\n', "line 1"),
        ("p.jsonl", '{"messages": [{"role": "robot", "content": "x"}]}\n', "line 1"),
        ("p.jsonl", '{"prompt": "a", "output_tokens": -3}\n', "line 1"),
        ("p.json", '{"conversations": []}', "ShareGPT"),
        ("p.json", '[{"conversations": [{"from": "gpt", "value": "x"}]}]', "item 0"),
        ("p.csv", "text\nhello\n", "no 'prompt' column"),
        ("p.csv", 'prompt\nhello\n""\n', "row 3"),
    ],
)
def test_bad_files_name_the_file_and_place(tmp_path, name, content, where):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(UsageError) as err:
        read_prompt_file(str(path))
    assert str(path) in str(err.value) and where in str(err.value)


def test_requests_lengths_prefix_and_template(tmp_path):
    tok = build_tokenizer()
    files = write_files(tmp_path)
    spec = WorkloadSpec(prompts=str(files["jsonl"]), output_len="from-data", shared_prefix=5)
    reqs, skipped = build_requests(spec, read_prompt_file(spec.prompts), tokenizer=tok)
    assert not skipped and [r.output_tokens for r in reqs] == [3, 5]
    assert reqs[0].input_ids[5:] == tuple(tok(TEXTS[0]).input_ids)  # the prefix, then the prompt
    assert reqs[0].input_ids[:5] == reqs[1].input_ids[:5]
    chat = tok.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False)
    assert reqs[1].input_tokens == 5 + len(chat)
    # too long for a context of 28: exit 2 naming the line, or skipped with --skip-invalid
    with pytest.raises(UsageError, match=r"p\.jsonl \(line 2\).*context of 40"):
        build_requests(spec, read_prompt_file(spec.prompts), tokenizer=tok, context=40)
    spec.skip_invalid = True
    reqs, skipped = build_requests(spec, read_prompt_file(spec.prompts), tokenizer=tok, context=40)
    assert len(reqs) == 1 and skipped[0].startswith("line 2")


def test_length_spread_is_seeded_and_bounded():
    tok = build_tokenizer()

    def lengths(seed, **kw):
        spec = WorkloadSpec(length_spread=0.25, **kw)
        reqs = synthetic_requests(spec, 40, 20, 50, tokenizer=tok, seed=seed)
        return [(r.input_tokens, r.output_tokens) for r in reqs]

    a = lengths(7)
    assert a == lengths(7) and a != lengths(8)
    assert all(30 <= i <= 50 and 15 <= o <= 25 for i, o in a)
    assert len(set(a)) > 10
    # a shared prefix is its own stream: the drawn lengths stay the same
    assert lengths(7, shared_prefix=8) == a


# ------------------------------------------------------------------------- run
def test_bad_input_exits_2_before_loading_and_writes_nothing(tmp_path):
    files = write_files(tmp_path)
    out = tmp_path / "out.json"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a"}\n"just a string"\n')
    long = tmp_path / "long.txt"
    long.write_text("short\n" + "x" * 5000 + "\n")
    cases = [
        (["--prompts", str(bad)], "bad.jsonl (line 2)"),
        (["--prompts", str(files["txt"]), "--in-out", "8-8"], "--output-len"),
        (["--prompts", str(files["txt"]), "--output-len", "from-data"], "no reference output"),
        (["--prompts", str(long), "--output-len", "4"], "long.txt (line 2)"),
        (["--output-len", "natural"], "--prompts"),
        (["--prompts", str(files["txt"]), "--length-spread", "2"], "--length-spread"),
    ]
    for args, needle in cases:
        r = cli("run", *args, "-o", str(out))
        assert r.returncode == 2, (args, r.stderr)
        assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "Traceback" not in r.stderr and not out.exists()


def _workload_requests(entry):
    return [q for t in entry["trials"] for q in t["extra"]["workload"]["requests"]]


def test_run_prompt_files_through_isolated_workers(tmp_path):
    """--isolate config: the workload travels to the worker as JSON and back."""
    tok = build_tokenizer()
    files = write_files(tmp_path)
    out = tmp_path / "out.json"
    r = cli(
        "run",
        "--prompts",
        str(files["jsonl"]),
        "--output-len",
        "from-data",
        "--batch-size",
        "1,2",
        "--warmup",
        "0",
        "--trials",
        "2",
        "--isolate",
        "config",
        "--save-outputs",
        "-o",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    assert (
        doc["settings"]["workload"]["prompts_sha256"]
        == read_prompt_file(str(files["jsonl"])).sha256
    )
    chat = tok.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False)
    want_in = {
        0: len(tok(TEXTS[0]).input_ids),
        1: len(tok(chat, add_special_tokens=False).input_ids),
    }
    bs1, bs2 = doc["configurations"]
    assert bs1["settings"]["further"]["output_len"] == "from-data"
    assert bs1["settings"]["input_tokens"] is None and "prompts" in bs1["id"]
    reqs = _workload_requests(bs1)
    assert [q["prompt_index"] for q in reqs] == [0, 1, 0, 1]  # every prompt once per trial
    assert all(q["input_tokens"] == want_in[q["prompt_index"]] for q in reqs)
    assert [q["output_tokens"] for q in reqs] == [3, 5, 3, 5]  # the reference lengths
    assert all(len(q["output_md5"]) == 32 and isinstance(q["output_text"], str) for q in reqs)
    assert bs1["aggregates"]["workload"]["requests"] == 4 and len(bs1["trials"]) == 4
    # batch 2: left-padded to the longest prompt, the real lengths kept
    trial = bs2["trials"][0]["extra"]["workload"]
    assert trial["padded_input_tokens"] == max(want_in.values())
    assert trial["padded_input_tokens"] == bs2["trials"][0]["prompt_tokens"]
    assert sorted(q["input_tokens"] for q in trial["requests"]) == sorted(want_in.values())


def test_run_sharegpt_chat_template_and_natural_length(tmp_path):
    files = write_files(tmp_path)
    out = tmp_path / "out.json"
    r = cli(
        "run",
        "--prompts",
        str(files["json"]),
        "--apply-chat-template",
        "--warmup",
        "0",
        "--trials",
        "1",
        "--max-prompts",
        "2",
        "--shuffle",
        "--seed",
        "3",
        "-o",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    entry = json.loads(out.read_text())["configurations"][0]
    reqs = _workload_requests(entry)
    tok = build_tokenizer()
    refs = {0: 4, 1: 6, 2: 9}  # the gpt turns' lengths in tokens: from-data by default
    assert [q["output_tokens"] for q in reqs] == [refs[q["prompt_index"]] for q in reqs]
    for q in reqs:
        msg = [{"role": "user", "content": TEXTS[q["prompt_index"]]}]
        text = tok.apply_chat_template(msg, add_generation_prompt=True, tokenize=False)
        assert q["input_tokens"] == len(tok(text, add_special_tokens=False).input_ids)
    r = cli(
        "run",
        "--prompts",
        str(files["txt"]),
        "--output-len",
        "natural",
        "--max-output-len",
        "3",
        "--warmup",
        "0",
        "--trials",
        "1",
        "-o",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    reqs = _workload_requests(json.loads(out.read_text())["configurations"][0])
    assert len(reqs) == 3 and all(1 <= q["output_tokens"] <= 3 for q in reqs)


def test_run_length_spread_is_reproducible(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    for path in (a, b):
        r = cli(
            "run",
            "--in-out",
            "24-6",
            "--length-spread",
            "0.5",
            "--shared-prefix",
            "4",
            "--batch-size",
            "2",
            "--warmup",
            "0",
            "--trials",
            "2",
            "--seed",
            "5",
            "-o",
            str(path),
        )
        assert r.returncode == 0, r.stderr

    def lengths(path):
        entry = json.loads(path.read_text())["configurations"][0]
        return [(q["input_tokens"], q["output_tokens"]) for q in _workload_requests(entry)]

    assert lengths(a) == lengths(b) and len(set(lengths(a))) > 1
    assert all(12 <= i <= 36 for i, _ in lengths(a))


def test_run_prompt_file_with_generation_variants(tmp_path):
    """--prompts x --attn-implementation: one configuration per variant, each with its own id,
    every prompt once per trial, timed per token (one measuring path for both)."""
    files = write_files(tmp_path)
    out = tmp_path / "out.json"
    r = cli(
        "run", "--prompts", str(files["jsonl"]), "--output-len", "from-data",
        "--attn-implementation", "eager,sdpa", "--warmup", "0", "--trials", "2", "-o", str(out),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    entries = json.loads(out.read_text())["configurations"]
    assert len(entries) == 2 and len({e["id"] for e in entries}) == 2
    for entry, attn in zip(entries, ["eager", "sdpa"]):
        assert entry["status"] == "ok", entry["error"]
        further = entry["settings"]["further"]
        assert further["attn_implementation"] == attn and further["output_len"] == "from-data"
        assert entry["config"]["trials"] == 2 and len(entry["trials"]) == 4  # 2 prompts x 2
        assert [q["output_tokens"] for q in _workload_requests(entry)] == [3, 5, 3, 5]
        for trial in entry["trials"]:
            latencies = trial["token_latencies_s"]
            assert len(latencies) == trial["new_tokens"] and all(t > 0 for t in latencies)


def test_run_prompt_file_sampled_under_the_seed(tmp_path):
    """--prompts x --do-sample: every run reseeds under --seed (the same outputs in every
    trial and in a second sweep), another seed draws other outputs."""
    files = write_files(tmp_path)

    def outputs(seed: str) -> list[str]:
        out = tmp_path / f"s{seed}.json"
        r = cli(
            "run", "--prompts", str(files["txt"]), "--output-len", "12", "--do-sample",
            "--temperature", "1.5", "--seed", seed, "--warmup", "0", "--trials", "2",
            "--isolate", "none", "-o", str(out),
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        (entry,) = json.loads(out.read_text())["configurations"]
        assert entry["settings"]["further"]["do_sample"] is True, entry["settings"]
        assert entry["actual_output_tokens"] == 12  # lengths still forced
        return [q["output_md5"] for q in _workload_requests(entry)]

    first = outputs("3")
    assert first[:3] == first[3:]  # trial 2 drew what trial 1 drew
    assert outputs("3") == first and outputs("4") != first


def test_run_prompt_file_trials_auto_interleaved(tmp_path):
    """--trials auto and --interleave with a prompt file: a trial is one pass over the file,
    the rule stops on the trials' means; the variants' trials run in rotation."""
    files = write_files(tmp_path)
    out = tmp_path / "out.json"
    r = cli(
        "run", "--prompts", str(files["jsonl"]), "--output-len", "from-data",
        "--attn-implementation", "eager,sdpa", "--warmup", "1", "--trials", "auto",
        "--max-trials", "6", "--interleave", "-o", str(out),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    assert doc["settings"]["trials"] == "auto" and doc["settings"]["interleave"] is True
    for entry in doc["configurations"]:
        assert entry["status"] == "ok", entry["error"]
        run = entry["adaptive"]["trials_run"]
        assert entry["stopped"] in ("target", "max_trials") and run == entry["config"]["trials"]
        assert len(entry["trials"]) == 2 * run and len(entry["warmup_runs"]) == 1
        assert len(entry["interference"]["trials"]) == run
    starts = [s for e in doc["configurations"] for s in e["interference"]["trial_started_at"]]
    first, second = (e["interference"]["trial_started_at"] for e in doc["configurations"])
    assert first[1] > second[0] and len(starts) == 2 * len(first)  # A1 B1 A2 B2 ...


# ------------------------------------------------------------------------- endpoint
@pytest.fixture(scope="module")
def stub():
    sys.path.insert(0, str(Path(__file__).parent))
    from test_endpoint import StubProcess

    s = StubProcess()
    yield s
    s.close()


def test_endpoint_sends_the_file_prompts(stub, tmp_path):
    files = write_files(tmp_path)
    tok_dir = tmp_path / "tok"
    build_tokenizer().save_pretrained(tok_dir)
    out = tmp_path / "e.json"
    url = stub.url("ttft=0.005;gap=0.001")
    for kind in ("txt", "csv", "json"):
        stub.reset()
        r = cli(
            "endpoint",
            url,
            "--model",
            "m",
            "--prompts",
            str(files[kind]),
            "--tokenizer",
            str(tok_dir),
            "--warmup",
            "0",
            "--force-output",
            "on",
            "-o",
            str(out),
        )
        assert r.returncode == 0, r.stderr
        seen = [s["body"] for s in stub.seen]
        assert [b["prompt"] for b in seen] == TEXTS, kind
        entry = json.loads(out.read_text())["configurations"][0]
        reqs = [q for q in entry["requests"] if not q["warmup"]]
        assert [q["input_tokens"] for q in reqs] == [len(t) for t in TEXTS]
        want = [4, 6, 9] if kind == "json" else [128] * 3  # ShareGPT: from-data by default
        assert [b["max_tokens"] for b in seen] == want
        assert [q["output_tokens"] for q in reqs] == want


def test_endpoint_chat_messages_prefix_and_outputs(stub, tmp_path):
    files = write_files(tmp_path)
    out = tmp_path / "e.json"
    stub.reset()
    r = cli(
        "endpoint",
        stub.url("ttft=0.005;gap=0.001"),
        "--model",
        "m",
        "--chat",
        "--prompts",
        str(files["jsonl"]),
        "--output-len",
        "from-data",
        "--shared-prefix",
        "6",
        "--save-outputs",
        "--warmup",
        "1",
        "-o",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    bodies = [s["body"] for s in stub.seen if s["body"].get("max_tokens", 1) > 1]
    first = [b["messages"][0]["content"] for b in bodies]
    prefix = first[0][: len(first[0]) - len(TEXTS[0])]
    assert prefix and all(c.startswith(prefix) for c in first)
    assert bodies[-1]["messages"][0]["content"] == prefix + CHAT[0]["content"]
    assert [b["max_tokens"] for b in bodies] == [3, 3, 5]  # warm-up, then each prompt once
    entry = json.loads(out.read_text())["configurations"][0]
    reqs = [q for q in entry["requests"] if not q["warmup"]]
    assert [q["prompt_index"] for q in reqs] == [0, 1]
    assert [q["output_text"] for q in reqs] == ["ab " * 3, "ab " * 5]
    assert entry["settings"]["further"]["shared_prefix"] == 6
    # natural lengths are never forced; from-data on a ShareGPT file needs --tokenizer
    stub.reset()
    r = cli(
        "endpoint",
        stub.url("eos=2"),
        "--model",
        "m",
        "--prompts",
        str(files["txt"]),
        "--output-len",
        "natural",
        "--max-output-len",
        "7",
        "--warmup",
        "0",
    )
    assert r.returncode == 0, r.stderr
    assert all(
        "ignore_eos" not in s["body"] and s["body"]["max_tokens"] in (1, 7) for s in stub.seen
    )
    r = cli("endpoint", stub.url(), "--model", "m", "--prompts", str(files["json"]))
    assert r.returncode == 2 and "--tokenizer" in r.stderr


def test_save_outputs_alone_keeps_the_usual_prompts(tmp_path, stub):
    out = tmp_path / "r.json"
    r = cli(
        "run",
        "--in-out",
        "12-4",
        "--save-outputs",
        "--warmup",
        "0",
        "--trials",
        "1",
        "-o",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    entry = json.loads(out.read_text())["configurations"][0]
    (q,) = _workload_requests(entry)
    assert q["input_tokens"] == 12 and q["output_tokens"] == 4 and len(q["output_text"]) > 0
    stub.reset()
    r = cli(
        "endpoint",
        stub.url(),
        "--model",
        "m",
        "--save-outputs",
        "--in-out",
        "8-3",
        "--requests",
        "2",
        "--warmup",
        "0",
        "-o",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    reqs = json.loads(out.read_text())["configurations"][0]["requests"]
    assert [q["output_text"] for q in reqs if not q["warmup"]] == ["ab " * 3] * 2
    from streambench.endpoint import make_prompts

    sent = [s["body"]["prompt"] for s in stub.seen if s["body"]["max_tokens"] > 1]
    assert sent == make_prompts(2, 8)  # the prompts of a run without --save-outputs


def test_one_runner_fills_a_typed_result_for_both_prompt_sources(tmp_path):
    """In process: the one configuration runner fills a ConfigurationResult for a synthetic
    prompt and for a prompt file alike; what the isolation worker sends (``to_dict``) reads
    back (``from_dict``) as the same document."""
    import torch

    from streambench.engines.transformers import ModelSpec
    from streambench.engines.variant_load import prepare_model
    from streambench.results.schema import ConfigurationResult
    from streambench.runners.local.configuration import run_configuration
    from streambench.runners.local.plan import SweepSettings, new_result
    from streambench.runners.local.workload_prompts import preflight

    files = write_files(tmp_path)
    spec = ModelSpec("streambench/tiny-llama", "embedded")
    plain = SweepSettings([spec], [(8, 4)], [1], warmup=1, trials=2, telemetry=False)
    workload = WorkloadSpec(prompts=str(files["txt"]), output_len=4)
    work = SweepSettings(
        [spec], [(8, 4)], [2], warmup=1, trials=2, telemetry=False, workload=workload
    )
    preflight(work, lambda _line: None)
    loaded = prepare_model(spec, plain, {}, torch.device("cpu"))
    runs = []
    for settings, batch in ((plain, 1), (work, 2)):
        n_in = None if settings is work else 8
        result = new_result(settings, spec.name, n_in, 4, batch)
        assert isinstance(result, ConfigurationResult) and result.status == "pending"
        run_configuration(loaded, result, settings, on_run=lambda i, warm: runs.append(warm))
        assert result.status == "ok", result.error
        assert result.config.trials == 2 and result.extra["stopped"] == "trials"
        assert result.aggregates is not None and result.aggregates.first_token_s is not None
        assert all(len(t.token_latencies_s or []) == 4 for t in result.trials)
        sent = result.to_dict()
        assert ConfigurationResult.from_dict(sent).to_dict() == sent
    # synthetic: 1 warm-up + 2 trials; the file: 1 warm-up + 2 passes of 2 batches (3 prompts)
    assert runs == [True, False, False, True, False, False, False, False]
    assert len(result.trials) == 4 and result.aggregates.extra["workload"]["requests"] == 6
