"""``streambench run --profile DIR``: a real torch.profiler trace of one extra run per
configuration, the token boundaries marked, the profiled run kept out of the statistics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def streambench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streambench", *args],
        capture_output=True, text=True, env=ENV, cwd=cwd, timeout=300,
    )  # fmt: skip


def test_profile_trace_marks_tokens_and_stays_out_of_statistics(tmp_path):
    import importlib.util

    html = ["-o", "r.html"] if importlib.util.find_spec("plotly") else []
    res = streambench(
        "run", "--in-out", "8-5", "--batch-size", "1,2", "--trials", "2", "--warmup", "1",
        "--profile", "traces", "-o", "r.json", *html, cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    assert len(doc["configurations"]) == 2  # each in its own worker process (the default)
    if os.path.exists(tmp_path / "r.html"):  # the report links each trace
        page = (tmp_path / "r.html").read_text()
        assert "traces/streambench_tiny-llama_8-5_bs2.trace.json" in page
    for entry in doc["configurations"]:
        profile = entry["profile"]
        trace = json.loads((tmp_path / profile["trace"]).read_text())  # valid JSON
        marks = sorted(
            (e for e in trace["traceEvents"] if str(e.get("name", "")).startswith("streambench.")),
            key=lambda e: e["ts"],
        )
        names = [e["name"] for e in marks]
        assert names == ["streambench.prefill"] + [f"streambench.decode[{i}]" for i in range(1, 5)]
        assert profile["ranges"] == 5 == len(profile["token_latencies_s"])
        # the ranges are streambench's own intervals, back to back: together they span the
        # run's time to its last token; each is near the streamer's number for it (a boundary
        # is marked just after the streamer's timestamp, so a loaded machine shifts it a little)
        latencies = profile["token_latencies_s"]
        span = (marks[-1]["ts"] + marks[-1]["dur"] - marks[0]["ts"]) / 1e6
        assert abs(span - sum(latencies)) < 5e-3 + 0.02 * sum(latencies), (span, latencies)
        for event, latency in zip(marks, latencies):
            assert abs(event["dur"] / 1e6 - latency) < 5e-3 + 0.1 * latency, (event, latency)
        for before, after in zip(marks, marks[1:]):
            assert after["ts"] >= before["ts"] + before["dur"] - 1  # µs; no overlap
        assert any(e.get("cat") == "cpu_op" for e in trace["traceEvents"])  # operators too
        # the profiled run is not a trial, and not in the aggregates
        assert len(entry["trials"]) == 2 and entry["aggregates"]["runs"] == 2
        assert entry["aggregates"]["first_token_s"]["n"] == 2
        firsts = [t["first_token_s"] for t in entry["trials"]]
        assert profile["first_token_s"] not in firsts


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--profile", "t", "--num-beams", "2"], "--num-beams 1"),
        (["--profile", "f.txt/sub"], "--profile f.txt/sub"),
    ],
)
def test_profile_bad_input_one_line(tmp_path, args, message):
    (tmp_path / "f.txt").write_text("a file")
    res = streambench("run", *args, cwd=tmp_path)
    assert res.returncode == 2 and message in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
