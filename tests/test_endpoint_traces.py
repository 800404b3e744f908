"""``streambench endpoint --trace`` against the stub server of ``tests/test_endpoint.py`` (its own
process on 127.0.0.1; it records every body and when it received it): requests go out at their
trace times (intended vs actual recorded), the trace's lengths are honoured, Mooncake
``hash_ids`` become shared prompt prefixes, the format is detected from the columns, and bad
traces are refused with one line naming the file and line, exit 2, before anything is sent.

Runtime: ~40 s (2 cores, shared).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from test_endpoint import StubProcess

from streambench.endpoint.traces import BLOCK_TOKENS, load_trace
from streambench.endpoint.tracesend import trace_requests
from streambench.errors import UsageError
from streambench.tiny import build_tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples", "traces")


@pytest.fixture(scope="module")
def stub():
    s = StubProcess()
    yield s
    s.close()


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": ROOT}
    env.pop("OPENAI_API_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "streambench", "endpoint", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=ROOT,
    )


def _write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _mooncake(rows) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


# ------------------------------------------------------------------------- reading, no server
@pytest.mark.parametrize(
    ("name", "fmt", "count", "skipped"),
    [("mooncake.jsonl", "mooncake", 24, 0), ("burstgpt.csv", "burstgpt", 22, 2),
     ("azure.csv", "azure", 24, 0)],
)  # fmt: skip
def test_examples_are_detected_and_read(name, fmt, count, skipped):
    trace = load_trace(os.path.join(EXAMPLES, name))
    assert (trace.format, len(trace.rows), trace.skipped) == (fmt, count, skipped)
    assert trace.offsets_s[0] == 0.0 and list(trace.offsets_s) == sorted(trace.offsets_s)
    fast = load_trace(os.path.join(EXAMPLES, name), speedup=4.0)
    assert fast.span_s == pytest.approx(trace.span_s / 4)


def test_azure_timestamps_keep_their_fraction(tmp_path):
    rows = "2023-11-16 18:15:46.6805900,10,2\n2023-11-16 18:15:47.9305900,10,2\n"
    path = _write(tmp_path, "a.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n" + rows)
    assert load_trace(path).offsets_s == pytest.approx((0.0, 1.25))


def test_window_limit_and_sorting(tmp_path):
    rows = [{"timestamp": t, "input_length": 5, "output_length": 2} for t in (3000, 0, 1000, 2000)]
    path = _write(tmp_path, "m.jsonl", _mooncake(rows))
    trace = load_trace(path)
    assert trace.resorted and trace.offsets_s == (0.0, 1.0, 2.0, 3.0)
    assert "sorted by timestamp" in trace.notes()[0]
    win = load_trace(path, window_s=(0.5, 2.5))
    assert win.offsets_s == (0.5, 1.5)  # times from the window's start
    assert load_trace(path, limit=2, speedup=2.0).offsets_s == (0.0, 0.5)


def test_hash_ids_share_prefixes_and_lengths_are_exact_with_a_tokenizer(tmp_path):
    tok = build_tokenizer("printable")
    rows = [
        {"timestamp": 0, "input_length": 1100, "output_length": 3, "hash_ids": [7, 8, 9]},
        {"timestamp": 1, "input_length": 1300, "output_length": 4, "hash_ids": [7, 8, 11]},
        {"timestamp": 2, "input_length": 600, "output_length": 5, "hash_ids": [12, 13]},
    ]
    trace = load_trace(_write(tmp_path, "m.jsonl", _mooncake(rows)))
    reqs = trace_requests(trace, seed=0, tokenizer=tok)
    ids = [tok(r.text, add_special_tokens=False)["input_ids"] for r in reqs]
    assert [len(i) for i in ids] == [1100, 1300, 600]
    assert [r.input_tokens for r in reqs] == [1100, 1300, 600]
    assert [r.output_tokens for r in reqs] == [3, 4, 5]
    shared = 2 * BLOCK_TOKENS
    assert ids[0][:shared] == ids[1][:shared] and ids[0][shared:] != ids[1][shared:1100]
    assert ids[2][:64] != ids[0][:64]
    # without a tokenizer: a word per token, the same prefix sharing
    plain = trace_requests(trace, seed=0, tokenizer=None)
    words = [r.text.split(" ") for r in plain]
    assert [len(w) for w in words] == [1100, 1300, 600]
    assert words[0][:shared] == words[1][:shared] and words[0][shared:] != words[1][shared:1100]


@pytest.mark.parametrize(
    ("name", "text", "expect"),
    [
        ("t.csv", "a,b\n1,2\n", "not a known trace (columns: a, b)"),
        ("t.csv", "Timestamp,Request tokens,Response tokens,ContextTokens,GeneratedTokens\n"
         "1,2,3,4,5\n",
         "the columns fit burstgpt and azure: give --trace-format"),
        ("t.jsonl", '{"timestamp": 1, "input_length": 5, "output_length": 2}\n{"timestamp": -1, '
         '"input_length": 5, "output_length": 2}\n',
         "(line 2): timestamp '-1': expected a time from 0 on"),
        ("t.jsonl", '{"timestamp": 1, "input_length": 0, "output_length": 2}\n',
         "(line 1): input_length '0' is not a whole number from 1"),
        ("t.jsonl", '{"timestamp": 1, "input_length": 600, "output_length": 2, '
         '"hash_ids": [1,2,3]}\n',
         "(line 1): hash_ids must be a list of at most ceil(input_length / 512) = 2"),
        ("t.jsonl", '{"timestamp": 1, "input_length": 5, "output_length": 2}\nnope\n',
         "(line 2): not valid JSON"),
        ("t.csv", "Timestamp,Model,Request tokens,Response tokens\n1,m,5,2\nx,m,5,2\n",
         "(line 3): Timestamp 'x' is not a number"),
        ("t.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-13-40 00:00:00,5,2\n",
         "(line 2): TIMESTAMP '2023-13-40 00:00:00' is not a valid date"),
        ("t.csv", "Timestamp,Model,Request tokens,Response tokens\n1,m,5,2\n2,m,5\n",
         "(line 3): not as many cells"),
        ("t.jsonl", '{"timestamp": 1e12, "input_length": 5, "output_length": 2}\n'
         '{"timestamp": 0, "input_length": 5, "output_length": 2}\n', "the replay would last"),
    ],
)  # fmt: skip
def test_bad_traces_are_refused_with_one_line(tmp_path, name, text, expect):
    path = _write(tmp_path, name, text)
    with pytest.raises(UsageError) as info:
        load_trace(path)
    message = str(info.value)
    assert "\n" not in message and path in message and expect in message, message


def test_explicit_format_names_the_missing_column(tmp_path):
    path = _write(tmp_path, "t.csv", "Timestamp,Request tokens,Response tokens\n1,5,2\n")
    with pytest.raises(UsageError, match="no contexttokens, generatedtokens column"):
        load_trace(path, fmt="azure")
    assert load_trace(path, fmt="burstgpt").format == "burstgpt"


# ----------------------------------------------------------------------- against the stub
def test_requests_go_out_at_their_trace_times(stub, tmp_path):
    """40 requests over 2 s of trace time at speedup 2 (1 s of replay): each recorded with its
    intended time; the stub received them at those times (its clock is the client's)."""
    stub.reset()
    gaps = [0, 10, 40, 0, 150, 30, 70, 5, 90, 45] * 4
    t, rows = 0, []
    for i, g in enumerate(gaps):
        t += g
        rows.append({"timestamp": t, "input_length": 8 + i, "output_length": 2 + i % 5})
    path = _write(tmp_path, "m.jsonl", _mooncake(rows))
    out = tmp_path / "r.json"
    scenario = "ttft=0.01;gap=0.001;trace"
    p = cli(stub.url(scenario), "--model", "m", "--trace", path, "--trace-speedup", "2",
            "--warmup", "0", "--force-output", "on", "-o", str(out))  # fmt: skip
    assert p.returncode == 0, p.stderr
    entry = json.loads(out.read_text())["configurations"][0]
    measured = sorted((r for r in entry["requests"] if not r["warmup"]), key=lambda r: r["index"])
    assert len(measured) == 40
    expect = [rows[i]["timestamp"] / 1000 / 2 for i in range(40)]
    assert [r["intended_s"] for r in measured] == pytest.approx(expect)
    lags = [r["send_lag_s"] for r in measured]
    assert min(lags) >= -0.001  # never sent early
    assert statistics.median(lags) < 0.050 and max(lags) < 0.5, lags
    # the server saw them in the trace's order and spacing: its receive times against the plan
    seen = [s for s in stub.seen if s["path"].startswith(f"/{scenario}/")]
    got = sorted(s["t_recv"] for s in seen)
    start = got[0] - expect[0] - lags[0]
    late = [g - (start + e) for g, e in zip(got, expect)]
    assert statistics.median(late) < 0.060, late
    # lengths: the output asked per request, a word per input token (no --tokenizer)
    by_len = {len(s["body"]["prompt"].split(" ")): s["body"]["max_tokens"] for s in seen}
    assert by_len == {8 + i: 2 + i % 5 for i in range(40)}
    trace = entry["aggregates"]["trace"]
    assert trace["requests"] == 40 and trace["span_s"] == pytest.approx(expect[-1])
    assert trace["send_lag_s"]["n"] == 40
    assert "trace replay (mooncake): 40 requests" in p.stdout


def test_hash_ids_prefixes_reach_the_server(stub, tmp_path):
    stub.reset()
    rows = [
        {"timestamp": 0, "input_length": 700, "output_length": 2, "hash_ids": [1, 2]},
        {"timestamp": 5, "input_length": 900, "output_length": 2, "hash_ids": [1, 3]},
        {"timestamp": 9, "input_length": 600, "output_length": 2, "hash_ids": [4, 5]},
    ]
    path = _write(tmp_path, "m.jsonl", _mooncake(rows))
    p = cli(stub.url("hash"), "--model", "m", "--chat", "--trace", path, "--warmup", "0")
    assert p.returncode == 0, p.stderr
    prompts = {}
    for s in stub.seen:
        if s["body"].get("max_tokens") != 1:
            words = s["body"]["messages"][0]["content"].split(" ")
            prompts[len(words)] = words
    assert sorted(prompts) == [600, 700, 900]
    a, b, c = prompts[700], prompts[900], prompts[600]
    assert a[:BLOCK_TOKENS] == b[:BLOCK_TOKENS] and a[BLOCK_TOKENS:] != b[BLOCK_TOKENS:700]
    assert c[:BLOCK_TOKENS] != a[:BLOCK_TOKENS]


def test_bad_trace_and_options_exit_2_before_sending(stub, tmp_path):
    stub.reset()
    bad = _write(tmp_path, "t.csv", "a,b\n1,2\n")
    good = os.path.join(EXAMPLES, "burstgpt.csv")
    mine = _write(tmp_path, "mine.csv", open(good).read())
    for args, expect in (
        (("--trace", bad), f"--trace {bad} (line 1): not a known trace"),
        (("--trace", good, "--in-out", "8-8"), "drop --in-out"),
        (("--trace", good, "--request-rate", "5"), "drop --request-rate"),
        (("--trace", good, "--trace-window", "20s:10s"), "END must come after START"),
        (("--trace", good, "--trace-window", "900s:"), "no requests inside --trace-window"),
        (("--trace", good, "--trace-speedup", "0"), "--trace-speedup 0.0: expected a number"),
        (
            (
                "--trace-speedup",
                "2",
            ),
            "--trace-speedup needs --trace FILE",
        ),
        (("--trace", str(tmp_path / "missing.csv")), "missing.csv"),
        (("--trace", mine, "-o", mine), f"--output {mine}: is the trace file"),
    ):
        p = cli(stub.url(), "--model", "m", *args)
        lines = [x for x in p.stderr.strip().splitlines() if "skipped (failed requests" not in x]
        assert p.returncode == 2 and len(lines) == 1 and expect in lines[0], p.stderr
    assert stub.seen == []
    assert open(mine).read() == open(good).read()  # the trace is never overwritten


def test_lengths_are_exact_with_a_tokenizer_through_the_cli(stub, tmp_path):
    """BurstGPT rows through ``--tokenizer``: each prompt the stub received encodes to the row's
    ``Request tokens``, and asks for its ``Response tokens``."""
    stub.reset()
    tok = build_tokenizer("printable")
    tok.save_pretrained(tmp_path / "tok")
    path = _write(tmp_path, "b.csv", "Timestamp,Model,Request tokens,Response tokens\n"
                  "0,m,37,3\n0.01,m,700,5\n0.02,m,1,2\n0.03,m,0,9\n0.04,m,64,4\n")  # fmt: skip
    p = cli(stub.url("tok"), "--model", "m", "--trace", path, "--tokenizer", str(tmp_path / "tok"),
            "--warmup", "0", "--force-output", "on")  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "1 row(s) with 0 input or output tokens skipped" in p.stderr

    def tokens(text: str) -> int:
        return len(tok(text, add_special_tokens=False)["input_ids"])

    bodies = [s["body"] for s in stub.seen]
    got = sorted((tokens(b["prompt"]), b["max_tokens"]) for b in bodies if "min_tokens" in b)
    assert got == [(1, 2), (37, 3), (64, 4), (700, 5)]
