"""The load figure (``streambench plot`` of an endpoint sweep or capacity search): real sweep and
search documents from the stub server of ``tests/test_endpoint_load.py``, plotted by the real
command; the data drawn is compared with the entries. Runtime: ~5 s on 2 shared cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from test_endpoint_load import ROOT, cli, stub, url  # noqa: F401 - stub is a fixture

from streambench.results.report.load_plot import load_data
from streambench.results.schema import ResultsDocument


def _plot(doc: os.PathLike, png: os.PathLike) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streambench", "plot", str(doc), "-o", str(png)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": ROOT},
    )  # fmt: skip


def _is_png(path: os.PathLike, min_bytes: int = 20_000) -> bool:
    with open(path, "rb") as f:
        head = f.read(8)
    return head == b"\x89PNG\r\n\x1a\n" and os.path.getsize(path) > min_bytes


def test_sweep_load_figure_draws_the_entries(stub, tmp_path):  # noqa: F811
    out = tmp_path / "sweep.json"
    res = cli(
        url(stub, "plot=sweep;service=0.005"), "--model", "m", "--in-out", "4-3",
        "--requests", "6", "--warmup", "0", "--request-rate", "100,inf", "--concurrency", "1,3",
        "--force-output", "off", "-o", str(out),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    png = tmp_path / "sweep.png"
    res = _plot(out, png)
    assert res.returncode == 0, res.stderr
    load_png = tmp_path / "sweep-load.png"
    assert str(load_png) in res.stdout
    assert _is_png(png) and _is_png(load_png)

    raw = json.loads(out.read_text())
    data = load_data(ResultsDocument.from_dict(raw))
    entries = raw["configurations"]
    assert [p.id for p in data.points] == [e["id"] for e in entries]
    assert data.quantiles == ("p50", "p90", "p99")
    for p, e in zip(data.points, entries):
        ep = e["aggregates"]["endpoint"]
        assert p.requests_per_s == ep["requests_per_s"]
        assert p.output_tokens_per_s == ep["output_tokens_per_s"]
        assert p.ttft_s == ep["percentiles"]["ttft_s"]
        assert p.itl_s == ep["percentiles"]["itl_s"]
        assert (p.request_rate, p.concurrency) == (
            e["settings"].get("request_rate"),
            e["settings"]["concurrency"],
        )
        assert p.series.endswith(f"c{e['settings']['concurrency']}")  # the rate varies

    # the Pareto front: none of its points is beaten, every other point is
    def beats(q, p):
        return (
            q.output_tokens_per_s >= p.output_tokens_per_s
            and q.latency_s <= p.latency_s
            and (q.output_tokens_per_s > p.output_tokens_per_s or q.latency_s < p.latency_s)
        )

    assert data.pareto
    for p in data.points:
        assert p.pareto == (not any(beats(q, p) for q in data.points if q is not p))
    assert data.search == [] and data.max_rate is None


def test_search_load_figure_marks_pass_fail_and_the_max_rate(stub, tmp_path):  # noqa: F811
    out = tmp_path / "cap.json"
    res = cli(
        url(stub, "plot=cap;slots=2;service=0.04"), "--model", "m", "--in-out", "4-2",
        "--requests", "8", "--warmup", "1", "--arrivals", "constant", "--find-max-rate",
        "--slo", "ttft=150ms", "--rate-range", "20,160", "--max-points", "3",
        "--force-output", "off", "-o", str(out),
    )  # fmt: skip
    assert res.returncode in (0, 1), res.stderr
    png = tmp_path / "cap.png"
    assert _plot(out, png).returncode == 0
    assert _is_png(tmp_path / "cap-load.png")
    raw = json.loads(out.read_text())
    data = load_data(ResultsDocument.from_dict(raw))
    cap = raw["capacity"]
    assert [(s.rate, s.passed) for s in data.search] == [
        (p["rate"], p["passed"]) for p in cap["points"]
    ]
    assert data.max_rate == cap["max_rate"]


def test_one_load_point_gets_no_load_figure(stub, tmp_path):  # noqa: F811
    out = tmp_path / "one.json"
    res = cli(
        url(stub, "plot=one"), "--model", "m", "--in-out", "4-2", "--requests", "3",
        "--warmup", "0", "--force-output", "off", "-o", str(out),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert _plot(out, tmp_path / "one.png").returncode == 0
    assert (tmp_path / "one.png").exists() and not (tmp_path / "one-load.png").exists()
