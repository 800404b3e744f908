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
        "--slo", "itl=400ms", "--force-output", "off", "-o", str(out), "-o", str(page),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    _open(browser, page)
    entries = json.loads(out.read_text())["configurations"]
    assert len(entries) == 4
    drawn = _drawn(browser)
    for chart in _CHARTS:  # 2 series (concurrency 1, 3) x p50, p90, p99
        assert drawn[chart] == 6, (chart, drawn)
    assert "chart-load-0-search" not in drawn
    for chart in _CHARTS:  # a sweep's SLO (each configuration's config.slo_s): ITL only
        shapes = browser.evaluate(
            f"(document.getElementById('{chart}').layout.shapes || []).map(s => s.y0)"
        )
        assert shapes == ([pytest.approx(400.0)] if "itl" in chart else []), (chart, shapes)
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


@pytest.fixture(scope="module")
def search_file(stub, tmp_path_factory):  # noqa: F811
    """A real capacity search (SLO: TTFT 120 ms, TPOT 50 ms) against the stub (2 slots, 40 ms a
    request: about 50 requests/s): up to 4 points from 10/s, the first passing even on a loaded
    machine (with none passing there is one point and no Load section)."""
    cap = tmp_path_factory.mktemp("search") / "cap.json"
    res = cli(  # a warm-up request: the first opens the connection (80 ms more, seen here)
        url(stub, "html=cap;slots=2;service=0.04"), "--model", "m", "--in-out", "4-2",
        "--requests", "8", "--warmup", "1", "--arrivals", "constant", "--find-max-rate",
        "--slo", "ttft=120ms,tpot=50ms", "--rate-range", "10,160", "--max-points", "4",
        "--force-output", "off", "-o", str(cap),
    )  # fmt: skip
    assert res.returncode in (0, 1), res.stderr
    return cap


def test_search_report_marks_the_points_and_a_single_point_has_no_load(
    stub,  # noqa: F811
    browser,  # noqa: F811
    search_file,
    tmp_path,
):
    cap, one = search_file, tmp_path / "one.json"
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


def _search_page(search_file, tmp_path, reverse: bool = False) -> object:
    """The search's report; ``reverse``: from a copy listing the points last tried first (so
    that the file's order is never the order of rates)."""
    if reverse:
        data = json.loads(search_file.read_text())
        data["configurations"].reverse()
        data["capacity"]["points"].reverse()
        search_file = tmp_path / "reversed.json"
        search_file.write_text(json.dumps(data))
    page = tmp_path / "search.html"
    assert streambench("report", str(search_file), "-o", str(page)).returncode == 0
    return page


def test_load_charts_fit_their_cells_at_common_widths(browser, search_file, tmp_path):  # noqa: F811
    """Every chart of the page inside its box at widths with two chart columns (plotly sized
    the first Load chart by a grid that held only its cell: 1135 px drawn in a 560 px cell at
    1200 px, clipped)."""
    page = _search_page(search_file, tmp_path)
    measure = (
        "Array.from(document.querySelectorAll('.chart')).map(c => { const box = "
        "c.getBoundingClientRect(), svg = c.querySelector('.main-svg').getBoundingClientRect();"
        " return [c.id, box.left, box.right, svg.left, svg.right]; })"
    )
    for width in (1200, 1400, 1920):
        browser.open(page, width=width)
        browser.settle(0.5)
        charts = browser.evaluate(measure)
        load = [c for c in charts if c[0].startswith("chart-load-0-")]
        assert len(load) == 6, charts  # 4 percentile charts, Pareto, search
        for name, left, right, svg_left, svg_right in charts:
            assert svg_left >= left - 1 and svg_right <= right + 1, (width, name, charts)
        # two columns: the first chart shares its row with the second, each half the width
        first, second = load[0], load[1]
        assert first[2] < second[1] and (first[2] - first[1]) < width / 2, (width, load)


def test_search_report_slo_lines_and_points_by_rate(browser, search_file, tmp_path):  # noqa: F811
    """The TTFT SLO as a horizontal line on the TTFT charts, the TPOT SLO on the Pareto chart
    (median TPOT), none on the ITL charts (no ITL SLO);
    the configurations listed by asked rate, each with the search's pass/fail and order tried;
    an endpoint has no memory readings and no dtype: no memory chart, "—" (never "null")."""
    page = _search_page(search_file, tmp_path, reverse=True)
    _open(browser, page)
    capacity = json.loads((tmp_path / "reversed.json").read_text())["capacity"]
    assert capacity["slo_s"] == {"ttft": 0.12, "tpot": 0.05} and len(capacity["points"]) > 1
    for chart in [*_CHARTS, "chart-load-0-pareto"]:
        shapes = browser.evaluate(
            f"(document.getElementById('{chart}').layout.shapes || []).map(s => [s.y0, s.y1, "
            "s.xref, s.x0, s.x1])"
        )
        top = browser.evaluate(f"document.getElementById('{chart}')._fullLayout.yaxis.range[1]")
        want = 120.0 if "ttft" in chart else 50.0 if "pareto" in chart else None
        if want is None:
            assert shapes == [], chart
        else:
            assert shapes == [[pytest.approx(want), pytest.approx(want), "paper", 0, 1]], chart
            assert top > want  # the line is in view
    rows = browser.evaluate(
        "Array.from(document.querySelectorAll('table.configs tbody tr[data-config]')).map(r => "
        "[Number(r.dataset.config), r.querySelector('td.rate').textContent, "
        "r.querySelector('td.slo').textContent, r.querySelector('td.dtype').textContent])"
    )
    entries = json.loads((tmp_path / "reversed.json").read_text())["configurations"]
    verdicts = {p["id"]: ("pass" if p["passed"] else "fail") for p in capacity["points"]}
    rates = [entries[i]["settings"]["request_rate"] for i, *_ in rows]
    assert rates == sorted(rates) and len(rows) == len(entries) == len(capacity["points"])
    in_file = [e["settings"]["request_rate"] for e in entries]
    assert len(set(rates)) == len(rates) and rates != in_file  # sorted, not the file's order
    for i, rate, verdict, dtype in rows:
        assert float(rate) == entries[i]["settings"]["request_rate"]
        assert verdict == verdicts[entries[i]["id"]]
        assert entries[i]["config"]["dtype"] is None and dtype == "—"
    drawn = _drawn(browser)
    assert "chart-latency" in drawn and "chart-memory" not in drawn
    assert "null" not in browser.evaluate("document.querySelector('table.configs').textContent")
