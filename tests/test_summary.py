"""The summary at the end of ``streambench run`` (and ``endpoint``: the same driver), and the
intervals a real run writes: a real run of the embedded tiny model with 6 trials (the fewest that
give a 95 % interval), its stdout piped (not a terminal) at 80 columns; then the same summary on
a terminal of 80 and of 200 columns."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console
from verdict_docs import synthetic_entry

from streambench.results import load_results
from streambench.results.report.summary import print_summary, summary_rows
from streambench.results.schema import ConfigurationResult

ROOT = Path(__file__).resolve().parent.parent
NAMES = ("streambench/tiny-llama 8-2 bs1", "streambench/tiny-llama 8-3 bs1")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("summary")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "80"}
    cmd = [sys.executable, "-m", "streambench", "run", "--in-out", "8-2,8-3", "--trials", "6"]
    cmd += ["--warmup", "0", "--isolate", "none"]
    for ext in ("json", "csv", "md"):
        cmd += ["-o", str(out / f"r.{ext}")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return out, proc.stdout


def test_piped_summary_at_80_columns_cuts_nothing(run):
    _, stdout = run
    summary = stdout[stdout.index("summary (one line per configuration") :].splitlines()
    assert all(len(line) <= 80 for line in summary), summary
    for name in NAMES:  # each name whole, on its own line (no "streambench/tiny-l…")
        assert name in summary
    numbers = "\n".join(summary)
    assert numbers.count("first token (ms): ") == 2 and numbers.count("±") >= 4
    assert "…" not in numbers and "trials: 6" in numbers
    assert "±95%" in stdout and " GiB " in stdout and " GB " not in stdout  # per configuration


def test_a_real_run_writes_intervals_everywhere(run):
    out, _ = run
    doc = json.loads((out / "r.json").read_text())
    for entry in doc["configurations"]:
        for key in ("first_token_s", "rest_token_mean_s", "decode_tokens_per_s"):
            stats = entry["aggregates"][key]
            low, high = stats["ci95"]
            assert low <= stats["median"] <= high and stats["ci95_note"] is None
            values = sorted(t[key] for t in entry["trials"])
            assert (low, high) == (values[0], values[-1])  # 6 trials: ranks 1 and 6
    rows = list(csv.DictReader(io.StringIO((out / "r.csv").read_text())))
    for row in rows:
        low = float(row["1st token median ci95 low (ms)"])
        high = float(row["1st token median ci95 high (ms)"])
        assert low <= float(row["1st token median (ms)"]) <= high
        assert float(row["2+ median ci95 low (ms/token)"]) <= float(row["2+ median (ms/token)"])
    md = (out / "r.md").read_text()
    assert "1st token median ±95% (ms)" in md and "peak mem (GiB)" in md and "mean" not in md
    firsts = [e["aggregates"]["first_token_s"]["median"] for e in doc["configurations"]]
    medians = [f"{m * 1e3:.2f} ±" for m in firsts]
    assert all(m in md for m in medians)


@pytest.mark.parametrize("width", [80, 200])
def test_summary_on_a_terminal(run, width):
    out, _ = run
    entries = load_results(out / "r.json").configurations
    console = Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)
    print_summary(console, entries)
    text = console.file.getvalue()
    assert all(len(line) <= width for line in text.splitlines())
    for name in NAMES:
        assert name in text
    if width == 200:  # wide enough: the table
        assert "┃ configuration" in text and text.count("±") >= 4
    else:
        assert "┃" not in text and "summary (one line per configuration" in text


def test_noisy_and_failed_configurations():
    noisy = ConfigurationResult.from_dict(
        synthetic_entry([0.01] * 6, warnings=["the machine was busy"])
    )
    failed = ConfigurationResult.from_dict({**synthetic_entry([0.01] * 3), "status": "failed"})
    rows = summary_rows([noisy, failed])
    assert rows[0][-1] == "noisy" and rows[0][1] == "10.00 ±0.00" and rows[0][5] == "1.000"
    assert rows[1][1] == "failed"
