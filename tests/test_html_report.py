"""The HTML report (``streambench report``, ``-o FILE.html``) and ``compare -o FILE.md``: real runs
of the embedded tiny model, rendered in a real headless Chromium (skipped, saying what to install,
where none is found) with every network request refused."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from browser import INSTALL_HINT, Browser, find_chromium
from verdict_docs import scale_trials

from streambench.errors import UsageError
from streambench.results import ResultsDocument, load_results
from streambench.results.report.html import check_html_outputs, report_payload, script_json

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
ARTIFACTS = Path(os.environ.get("STREAMBENCH_ARTIFACTS", ROOT / "test-artifacts"))
HOSTILE = '</script><script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

pytest.importorskip("plotly", reason="HTML reports need plotly: pip install 'streambench[report]'")


def streambench(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streambench", *args],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=cwd,
        timeout=300,
    )


@pytest.fixture(scope="module")
def run_files(tmp_path_factory):
    """A real sweep: 2 input lengths (each with its own output length, as 32-32,256-64 would) x
    2 batch sizes, and one configuration that fails (prompt + new tokens beyond the model's
    context of 4096), written as JSON and as HTML."""
    out = tmp_path_factory.mktemp("report")
    res = streambench(
        "run", "--in-out", "8-4,16-8,4090-8", "--batch-size", "1,2", "--trials", "2",
        "--warmup", "1", "--isolate", "none", "-o", str(out / "run.json"), "-o",
        str(out / "run.html"),
    )  # fmt: skip
    assert res.returncode == 1, res.stderr  # the too-long configurations failed
    return out


def test_script_json_cannot_end_the_element():
    text = script_json({"m": HOSTILE, "sep": "a\u2028b", "amp": "&"})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"m": HOSTILE, "sep": "a\u2028b", "amp": "&"}


def test_payload_numbers_are_the_files(run_files):
    doc = load_results(run_files / "run.json")
    raw = json.loads((run_files / "run.json").read_text())
    data = report_payload([doc], ["run.json"])["documents"][0]
    for entry, shown in zip(raw["configurations"], data["configurations"]):
        assert shown["status"] == entry["status"]
        if entry["status"] != "ok":
            assert shown["stats"]["first_token_ms"] is None and shown["tokens"] is None
            assert shown["peak_memory_gib"] is None and "context" in shown["error"]
            continue
        agg = entry["aggregates"]
        assert shown["stats"]["first_token_ms"]["median"] == agg["first_token_s"]["median"] * 1e3
        p90 = agg["rest_token_mean_s"]["percentiles"]["90"]
        assert shown["stats"]["rest_token_ms"]["p90"] == p90 * 1e3
        tokens = shown["tokens"]
        assert tokens["index"] == list(range(1, entry["settings"]["output_tokens"] + 1))
        first = [t["token_latencies_s"][0] * 1e3 for t in entry["trials"]]
        assert tokens["low_ms"][0] == min(first) and tokens["high_ms"][0] == max(first)


def test_html_needs_plotly_says_which_extra(monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "plotly" else real(name, *a)
    )
    hint = f"pip install -e '{'.' if Path.cwd() == ROOT else ROOT}[report]'"  # from this clone
    with pytest.raises(UsageError, match=r"-o r\.html: .*" + re.escape(hint)):
        check_html_outputs(["r.json", "r.html"], "-o")
    check_html_outputs(["r.json"], "-o")  # no HTML asked: nothing needed


def test_report_cli_bad_input_one_line(tmp_path, run_files):
    bad = streambench("report", str(run_files / "run.json"), "-o", str(tmp_path / "r.txt"))
    assert bad.returncode == 2 and "-o" in bad.stderr and ".html" in bad.stderr
    missing = streambench("report", str(tmp_path / "nope.json"), "-o", str(tmp_path / "r.html"))
    assert missing.returncode == 2 and "nope.json" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


def _slower(path: Path, out: Path, factor: float) -> Path:
    data = json.loads(path.read_text())
    for entry in data["configurations"]:
        if entry["status"] == "ok":
            scale_trials(entry, "first_token_s", factor)
    out.write_text(json.dumps(data))
    return out


def test_compare_writes_markdown(run_files, tmp_path):
    new = _slower(run_files / "run.json", tmp_path / "new.json", 2.0)
    res = streambench(
        "compare", str(run_files / "run.json"), str(new), "-o", str(tmp_path / "d.md"), "--strict"
    )
    assert res.returncode == 1  # 2 trials per side: no interval, unclear, which --strict fails
    md = (tmp_path / "d.md").read_text()
    assert md.startswith("### streambench compare:") and "**Regression" in md
    rows = [line for line in md.splitlines() if line.startswith("| streambench/tiny-llama 8-4 bs1")]
    assert len(rows) == 1 and "2.000× [no interval]" in rows[0] and "| 2/2 |" in rows[0]
    assert "unclear" in rows[0]  # the verdicts with an interval: tests/test_html_verdicts.py


def _hostile_copy(path: Path, out: Path) -> Path:
    """The run with text from a hostile file: model names, labels, errors, server text."""
    data = json.loads(path.read_text())
    data["environment"]["device_name"] = HOSTILE
    for entry in data["configurations"]:
        entry["label"] = HOSTILE + entry["label"]
        if entry["status"] != "ok":
            entry["error"] = HOSTILE
    out.write_text(json.dumps(data))
    return out


def _endpoint_with_two_load_points(out: Path) -> Path:
    data = json.loads((FIXTURES / "results-v1-endpoint.json").read_text())
    second = copy.deepcopy(data["configurations"][0])
    second["id"], second["label"] = "stub|8-4|bs1|c2", "stub 8-4 c2"
    second["config"]["concurrency"] = 2
    second["aggregates"]["endpoint"]["output_tokens_per_s"] *= 1.8
    data["configurations"].append(second)
    out.write_text(json.dumps(data))
    return out


@pytest.fixture(scope="module")
def browser():
    chromium = find_chromium()
    if chromium is None:
        pytest.skip(INSTALL_HINT)
    b = Browser(chromium)
    yield b
    b.close()


def _open(browser: Browser, page: Path) -> None:
    browser.open(page)
    browser.settle(0.5)
    assert browser.evaluate("document.body.getAttribute('data-rendered')") == "true"
    assert browser.requests() == [page.resolve().as_uri()]  # nothing but the file itself
    assert browser.console_problems() == []


def _drawn(browser: Browser) -> dict[str, int]:
    """Chart id -> traces plotly drew into it (SVG groups, after the scripts ran)."""
    return browser.evaluate(
        "Object.fromEntries(Array.from(document.querySelectorAll('.chart')).map(c => [c.id, "
        "c.querySelectorAll('.scatterlayer .trace, .boxlayer .trace').length]))"
    )


def test_run_html_output_in_browser(browser, run_files):
    page = run_files / "run.html"
    _open(browser, page)
    drawn = _drawn(browser)
    # 4 ok configurations: a line and a band each; the failed ones are not drawn as zeros
    assert drawn["chart-latency"] == 8 and drawn["chart-memory"] == 4
    for chart in ("chart-ttft-input", "chart-ttft-batch", "chart-decode-batch"):
        assert drawn[chart] >= 2
    rows = browser.evaluate(
        "Array.from(document.querySelectorAll('table.configs tbody tr[data-config]')).map(r => ({"
        "status: r.querySelector('.status').textContent, cls: r.className, cells: "
        "Object.fromEntries(Array.from(r.querySelectorAll('td[data-key]')).map(td => "
        "[td.dataset.key, [td.dataset.value === undefined ? null : Number(td.dataset.value), "
        "td.textContent]]))}))"
    )
    raw = json.loads((run_files / "run.json").read_text())["configurations"]
    assert len(rows) == len(raw) == 6
    for row, entry in zip(rows, raw):
        assert row["status"] == entry["status"]
        if entry["status"] == "ok":
            median = entry["aggregates"]["first_token_s"]["median"] * 1e3
            value, text = row["cells"]["first_token_ms.median"]
            assert value == pytest.approx(median, rel=1e-12) and text == f"{median:.3f}"
        else:  # failed: marked, and no number at all (never a zero)
            assert "not-ok" in row["cls"]
            assert all(v is None and t == "—" for v, t in row["cells"].values())
    errors = browser.evaluate(
        "Array.from(document.querySelectorAll('td.error')).map(td => td.textContent)"
    )
    assert len(errors) == 2 and all("exceeds the model's context" in e for e in errors)
    hover = browser.evaluate(
        "document.getElementById('chart-latency').data[0].hovertemplate"
    )  # hover: token index, latency, memory
    assert "token %{x}" in hover and "ms" in hover and "MiB" in hover


def test_first_token_trend_and_unbroken_in_out(browser, run_files):
    """ "First token against input length": one line per model and batch size through every
    input length (8-4 and 16-8 are one trend, not two single points); the in-out cell is one
    line even in a narrow window."""
    browser.open(run_files / "run.html", width=900)
    browser.settle(0.5)
    traces = browser.evaluate(
        "document.getElementById('chart-ttft-input').data.map(t => [t.name, Array.from(t.x), "
        "Array.from(t.y)])"
    )
    raw = json.loads((run_files / "run.json").read_text())["configurations"]
    ok = [e for e in raw if e["status"] == "ok"]
    assert len(traces) == 2, traces  # batch 1 and batch 2
    for name, xs, ys in traces:
        batch = int(name.split("bs")[-1])
        mine = sorted(
            (e["settings"]["input_tokens"], e["aggregates"]["first_token_s"]["median"] * 1e3)
            for e in ok
            if e["settings"]["batch_size"] == batch
        )
        assert xs == [8, 16] and ys == pytest.approx([y for _, y in mine], rel=1e-12)
    cells = browser.evaluate(
        "Array.from(document.querySelectorAll('table.configs td.in-out')).map(td => { const r = "
        "document.createRange(); r.selectNodeContents(td); return [td.textContent, "
        "new Set(Array.from(r.getClientRects()).map(q => Math.round(q.top))).size]; })"
    )
    assert len(cells) == 6 and {t for t, _ in cells} == {"8-4", "16-8", "4090-8"}
    assert all(lines == 1 for _, lines in cells), cells


def test_report_comparison_hostile_text_and_screenshot(browser, run_files, tmp_path):
    hostile = _hostile_copy(run_files / "run.json", tmp_path / "hostile.json")
    served = _endpoint_with_two_load_points(tmp_path / "served.json")
    page = tmp_path / "report.html"
    res = streambench(
        "report", str(run_files / "run.json"), str(hostile), str(served), "-o", str(page)
    )
    assert res.returncode == 0, res.stderr
    size = page.stat().st_size
    assert size < 6e6, size
    _open(browser, page)
    assert browser.evaluate("window.__pwned === undefined")
    assert browser.evaluate("document.querySelectorAll('#report img, #report script').length") == 0
    assert browser.evaluate("document.scripts.length") == 3  # data, plotly.js, the page's own
    text = browser.evaluate("document.getElementById('report').textContent")
    assert HOSTILE in text  # shown as text, as it is
    drawn = _drawn(browser)
    assert drawn["chart-endpoint-dist"] == 2 and drawn["chart-endpoint-load"] == 2
    # local against served: matched by shape (8-4, batch 1, concurrency 1), a ratio computed
    ratios = browser.evaluate(
        'Array.from(document.querySelectorAll(\'table.compare[data-comparison="1"] '
        'td[data-key^="ratio."][data-value]\')).map(td => Number(td.dataset.value))'
    )
    assert ratios and all(r > 0 for r in ratios)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report.png"
    browser.screenshot(shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_loaded_document_round_trip_stays_typed(run_files):
    doc = load_results(run_files / "run.json")
    assert isinstance(doc, ResultsDocument)
    assert [c.status for c in doc.configurations].count("failed") == 2


def test_slo_and_capacity_data_from_a_hostile_file():
    """What a file's capacity search gives the page: only finite thresholds under text keys (in
    ms) and only points with a text id; a point's verdict is a pass only when ``passed`` is true."""
    from streambench.results.report.html import capacity_points, slo_thresholds_ms

    doc = load_results(FIXTURES / "results-v1-endpoint.json")
    doc.extra["capacity"] = {
        "slo_s": {"ttft": "x", "itl": float("nan"), "tpot": 0.05, 3: 1.0, "e2e": 1e400},
        "points": [{"id": 5}, "x", {"id": "a", "passed": "yes"}, {"id": "b", "passed": True,
                   "slo_attained": 0.96}],
    }  # fmt: skip
    assert slo_thresholds_ms(doc) == {"tpot": [50.0]}
    assert capacity_points(doc) == {
        "a": {"order": 3, "passed": False, "slo_attained": None},
        "b": {"order": 4, "passed": True, "slo_attained": 0.96},
    }
    doc.extra["capacity"] = ["not", "a", "table"]
    assert slo_thresholds_ms(doc) == {} and capacity_points(doc) == {}
