"""The HTML report carries the intervals and ``compare``'s verdicts: error bars (the 95 % interval
of each median over trials) on the sweep charts, and the comparison table's interval and verdict
per metric — rendered in a real headless Chromium (skipped, saying what to install, without one).
Documents with known trials (tests/verdict_docs.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from browser import INSTALL_HINT, Browser, find_chromium
from verdict_docs import stats_of, synthetic_doc, synthetic_entry

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
SIX = [0.010, 0.011, 0.012, 0.013, 0.014, 0.015]  # s: 6 trials, the interval is [10, 15] ms

pytest.importorskip("plotly", reason="HTML reports need plotly: pip install 'streambench[report]'")


@pytest.fixture(scope="module")
def browser():
    chromium = find_chromium()
    if chromium is None:
        pytest.skip(INSTALL_HINT)
    b = Browser(chromium)
    yield b
    b.close()


def _sweep(factor: float) -> dict:
    """Two input lengths (a sweep chart), 6 trials each, first token times ``factor``."""
    entries = []
    for n_in in (8, 16):
        entry = synthetic_entry([v * factor * n_in / 8 for v in SIX])
        entry["settings"]["input_tokens"] = n_in
        entry["label"] = f"m {n_in}-4 bs1"
        entries.append(entry)
    return synthetic_doc(*entries)


def test_error_bars_and_verdicts_in_the_report(browser, tmp_path):
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(_sweep(1.0)))
    new.write_text(json.dumps(_sweep(2.0)))
    page = tmp_path / "r.html"
    proc = subprocess.run(
        [sys.executable, "-m", "streambench", "report", str(old), str(new), "-o", str(page)],
        capture_output=True, text=True, env=ENV, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    browser.open(page)
    browser.settle(0.5)
    assert browser.evaluate("document.body.getAttribute('data-rendered')") == "true"
    assert browser.console_problems() == []
    bars = browser.evaluate(
        "document.getElementById('chart-ttft-input').data.map(t => [t.y, t.error_y.array, "
        "t.error_y.arrayminus, t.error_y.visible])"
    )
    # OLD's line: medians 12.5 and 25 ms, intervals [10, 15] and [20, 30] ms
    y, plus, minus, visible = bars[0]
    assert visible and y == pytest.approx([12.5, 25.0])
    assert plus == pytest.approx([2.5, 5.0]) and minus == pytest.approx([2.5, 5.0])
    drawn = browser.evaluate(
        "document.querySelectorAll('#chart-ttft-input .errorbar').length"
    )  # plotly drew them
    assert drawn >= 4
    cells = browser.evaluate(
        "Array.from(document.querySelectorAll('table.compare td.interval')).map(td => "
        "[td.dataset.key, td.dataset.verdict, td.textContent])"
    )
    first = [c for c in cells if c[0] == "interval.first token median"]
    # 6 against 6 trials, NEW twice OLD: every pairwise ratio is above 1.05
    assert len(first) == 2 and all(c[1] == "slower" for c in first), cells
    verdicts = browser.evaluate(
        "Array.from(document.querySelectorAll('table.compare td.problem')).map(td => "
        "td.textContent)"
    )
    assert verdicts == ["slower", "slower"]


def test_configuration_table_shows_the_interval(browser, tmp_path):
    doc = _sweep(1.0)
    doc["configurations"][1]["trials"] = doc["configurations"][1]["trials"][:3]  # too few
    doc["configurations"][1]["aggregates"] = {
        **doc["configurations"][1]["aggregates"],
        "first_token_s": stats_of([v * 2 for v in SIX[:3]]),
        "rest_token_mean_s": stats_of([v / 5 for v in SIX[:3]]),
    }
    src, page = tmp_path / "r.json", tmp_path / "r.html"
    src.write_text(json.dumps(doc))
    proc = subprocess.run(
        [sys.executable, "-m", "streambench", "report", str(src), "-o", str(page)],
        capture_output=True, text=True, env=ENV, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    browser.open(page)
    browser.settle(0.5)
    cells = browser.evaluate(
        "Array.from(document.querySelectorAll('td[data-key=\"first_token_ms.ci95\"]'))"
        ".map(td => td.textContent)"
    )
    assert cells == ["[10.000, 15.000]", "n<6: none"]
