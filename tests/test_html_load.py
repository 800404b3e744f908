"""The Load section of the HTML report: real sweep and capacity-search documents from the stub
server of ``tests/test_endpoint_load.py`` (as ``tests/test_load_plot.py``), written by the real
commands and rendered in the headless Chromium of ``tests/browser.py``; the charts' points are
compared with the entries."""

from __future__ import annotations

import json

import pytest
from test_endpoint_load import cli, stub, url  # noqa: F401 - stub is a fixture
from test_html_report import _drawn, _open, browser, streambench  # noqa: F401 - a fixture

pytest.importorskip("plotly", reason="HTML reports need plotly: pip install 'streambench[report]'")

_CHARTS = [f"chart-load-0-{m}-{x}" for m in ("ttft", "itl") for x in ("rate", "tokens")]


def _traces(page, chart: str) -> list[dict]:
    return page.evaluate(
        f"document.getElementById('{chart}').data.map(t => ({{name: t.name, x: Array.from(t.x), "
        "y: Array.from(t.y), text: t.text ? Array.from(t.text) : null}))"
    )


def test_sweep_report_has_the_load_section(stub, browser, tmp_path):  # noqa: F811
    out, page = tmp_path / "sweep.json", tmp_path / "sweep.html"
    res = cli(
        url(stub, "html=sweep;service=0.005"), "--model", "m", "--in-out", "4-3",
        "--requests", "6", "--warmup", "0", "--request-rate", "100,inf", "--concurrency", "1,3",
        "--force-output", "off", "-o", str(out), "-o", str(page),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    _open(browser, page)
    entries = json.loads(out.read_text())["configurations"]
    assert len(entries) == 4
    drawn = _drawn(browser)
    for chart in _CHARTS:  # 2 series (concurrency 1, 3) x p50, p90, p99
        assert drawn[chart] == 6, (chart, drawn)
    assert "chart-load-0-search" not in drawn
    for chart, metric, x_key in (
        (_CHARTS[0], "ttft_s", "requests_per_s"),
        (_CHARTS[3], "itl_s", "output_tokens_per_s"),
    ):
        for trace in _traces(browser, chart):
            c, q = int(trace["name"].split()[-2][1:]), trace["name"].split()[-1]
            mine = [e for e in entries if e["settings"]["concurrency"] == c]
            mine.sort(key=lambda e: e["aggregates"]["endpoint"][x_key])
            assert trace["text"] == [e["id"] for e in mine]
            assert trace["x"] == [e["aggregates"]["endpoint"][x_key] for e in mine]
            want = [e["aggregates"]["endpoint"]["percentiles"][metric][q] * 1e3 for e in mine]
            assert trace["y"] == pytest.approx(want, rel=1e-12)
    # Pareto: (tokens/s, median TPOT) of every point; the front is those no other point beats
    pts = [
        (ep["output_tokens_per_s"], ep["percentiles"]["tpot_s"]["p50"] * 1e3)
        for ep in (e["aggregates"]["endpoint"] for e in entries)
    ]
    front = sorted(p for p in pts if not any(q != p and q[0] >= p[0] and q[1] <= p[1] for q in pts))
    cloud, line = _traces(browser, "chart-load-0-pareto")
    flat = [v for xy in sorted(zip(cloud["x"], cloud["y"])) for v in xy]
    assert flat == pytest.approx([v for xy in sorted(pts) for v in xy], rel=1e-12)
    assert line["x"] == [x for x, _ in front]  # connected in order of throughput
    assert line["y"] == pytest.approx([y for _, y in front], rel=1e-12)


def test_search_report_marks_the_points_and_a_single_point_has_no_load(stub, browser, tmp_path):  # noqa: F811
    cap, one = tmp_path / "cap.json", tmp_path / "one.json"
    res = cli(
        url(stub, "html=cap;slots=2;service=0.04"), "--model", "m", "--in-out", "4-2",
        "--requests", "8", "--warmup", "0", "--arrivals", "constant", "--find-max-rate",
        "--slo", "ttft=70ms", "--rate-range", "20,160", "--max-points", "3",
        "--force-output", "off", "-o", str(cap),
    )  # fmt: skip
    assert res.returncode in (0, 1), res.stderr
    res = cli(
        url(stub, "html=one"), "--model", "m", "--in-out", "4-2", "--requests", "3",
        "--warmup", "0", "--force-output", "off", "-o", str(one),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    page = tmp_path / "cap.html"
    assert streambench("report", str(cap), str(one), "-o", str(page)).returncode == 0
    _open(browser, page)
    capacity = json.loads(cap.read_text())["capacity"]
    traces = {t["name"]: t for t in _traces(browser, "chart-load-0-search")}
    for name, passed in (("pass", True), ("fail", False)):
        pts = [(n, p) for n, p in enumerate(capacity["points"], 1) if p["passed"] is passed]
        if not pts:
            assert name not in traces
            continue
        assert traces[name]["x"] == [p["rate"] for _, p in pts]
        assert traces[name]["text"] == [str(n) for n, _ in pts]
    line = [t for n, t in traces.items() if n.startswith("max rate")]
    if capacity["max_rate"] is None:
        assert not line
    else:
        assert line[0]["x"] == [capacity["max_rate"]] * 2
    # the one-point document (the second): no Load section, no load chart
    ids = browser.evaluate("Array.from(document.querySelectorAll('section')).map(s => s.id)")
    assert "load-0" in ids and "load-1" not in ids
    assert not [c for c in _drawn(browser) if c.startswith("chart-load-1")]
    page = tmp_path / "one.html"
    assert streambench("report", str(one), "-o", str(page)).returncode == 0
    _open(browser, page)
    load = browser.evaluate("document.querySelectorAll('[id^=load-], [id^=chart-load]').length")
    assert load == 0
