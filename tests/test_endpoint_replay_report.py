"""The HTML report (``streambench report``) of a multi-turn run and of a trace replay, both real
runs against the stub server of ``tests/test_endpoint.py``: the TTFT-by-turn and send-lag charts
drawn in a real headless Chromium (skipped, saying what to install, where none is found), with
the numbers of the results files.

Runtime: ~20 s (2 cores, shared).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from browser import INSTALL_HINT, Browser, find_chromium
from test_endpoint import StubProcess

from streambench.results import load_results
from streambench.results.report.html import report_payload

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples", "traces")

pytest.importorskip("plotly", reason="HTML reports need plotly: pip install 'streambench[report]'")


def streambench(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": ROOT}
    env.pop("OPENAI_API_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "streambench", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A multi-turn run and a trace replay against the stub: their results files."""
    tmp = tmp_path_factory.mktemp("replay")
    conv = tmp / "conv.jsonl"
    turns = [("user", "q1"), ("assistant", "a"), ("user", "q2"), ("assistant", "b"), ("user", "q3")]
    msgs = [{"role": r, "content": c} for r, c in turns]
    conv.write_text(json.dumps({"messages": msgs}) + "\n")
    stub = StubProcess()
    try:
        url = stub.url("ttft=0.01;gap=0.001")
        multi = streambench("endpoint", url, "--model", "m", "--chat", "--prompts", str(conv),
                            "--multi-turn", "--output-len", "2", "--requests", "3",
                            "-o", str(tmp / "multi.json"))  # fmt: skip
        assert multi.returncode == 0, multi.stderr
        trace = streambench("endpoint", url, "--model", "m", "--trace",
                            os.path.join(EXAMPLES, "burstgpt.csv"), "--trace-speedup", "20",
                            "--trace-limit", "12", "-o", str(tmp / "trace.json"))  # fmt: skip
        assert trace.returncode == 0, trace.stderr
    finally:
        stub.close()
    return tmp


def test_report_payload_holds_turns_and_lags(runs):
    docs = [load_results(str(runs / "multi.json")), load_results(str(runs / "trace.json"))]
    payload = report_payload(docs, ["multi", "trace"])
    multi = payload["documents"][0]["configurations"][0]["endpoint"]
    entry = json.loads((runs / "multi.json").read_text())["configurations"][0]
    rows = entry["aggregates"]["sessions"]["ttft_by_turn"]
    assert [t["turn"] for t in multi["ttft_by_turn"]] == ["1", "2", "3"]
    assert [t["n"] for t in multi["ttft_by_turn"]] == [3, 3, 3]
    assert [t["median_ms"] for t in multi["ttft_by_turn"]] == pytest.approx(
        [r["ttft_s"]["median"] * 1e3 for r in rows]
    )
    trace = payload["documents"][1]["configurations"][0]["endpoint"]
    raw = json.loads((runs / "trace.json").read_text())["configurations"][0]["requests"]
    measured = [r for r in raw if not r["warmup"]]
    assert len(trace["trace_lag"]) == len(measured) == 12
    want = sorted([r["intended_s"], r["send_lag_s"] * 1e3] for r in measured)
    for got, exp in zip(sorted(trace["trace_lag"]), want):
        assert got == pytest.approx(exp, rel=1e-12)
    assert "trace_lag" not in multi and "ttft_by_turn" not in trace


def test_report_draws_turns_and_lags_in_browser(runs):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip(INSTALL_HINT)
    page = runs / "report.html"
    res = streambench("report", str(runs / "multi.json"), str(runs / "trace.json"), "-o", str(page))
    assert res.returncode == 0, res.stderr
    b = Browser(chromium)
    try:
        b.open(page)
        b.settle(0.5)
        assert b.evaluate("document.body.getAttribute('data-rendered')") == "true"
        assert b.requests() == [page.resolve().as_uri()]
        assert b.console_problems() == []
        drawn = b.evaluate(
            "Object.fromEntries(Array.from(document.querySelectorAll('.chart')).map(c => [c.id, "
            "c.querySelectorAll('.scatterlayer .trace').length]))"
        )
        assert drawn["chart-endpoint-turns"] == 1 and drawn["chart-endpoint-trace"] == 1, drawn
    finally:
        b.close()
