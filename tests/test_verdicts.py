"""How sure a number is: ``ci95`` on every median over trials, and ``streambench compare``'s
verdicts (slower, faster, same, unclear), exit codes, ``--ignore``, ``--strict`` and the refusal
of pairs that silently differ. Exact cases use synthetic documents with known trials
(tests/verdict_docs.py); the interval arithmetic is checked against enumeration and simulation."""

from __future__ import annotations

import itertools
import json
import math
import random
import statistics
from pathlib import Path
from types import SimpleNamespace

import pytest
from verdict_docs import synthetic_doc, synthetic_entry

from streambench import report
from streambench.cli.run import main
from streambench.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from streambench.results.schema import ResultsDocument
from streambench.results.verdicts import (
    _u_lower_tail,
    compare_trials,
    ratio_interval,
    trials_to_settle,
    verdict,
)

BASE = [0.0100, 0.0101, 0.0102]  # s: three steady trials


@pytest.fixture(autouse=True)
def _wide(monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")


def sb(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def files(tmp_path: Path, old: dict, new: dict) -> tuple[str, str]:
    a, b = tmp_path / "old.json", tmp_path / "new.json"
    a.write_text(json.dumps(synthetic_doc(old) if "settings" in old else old))
    b.write_text(json.dumps(synthetic_doc(new) if "settings" in new else new))
    return str(a), str(b)


# -- the interval arithmetic ---------------------------------------------------------------------
@pytest.mark.parametrize(("n", "m"), [(1, 1), (2, 3), (3, 3), (3, 4), (4, 5)])
def test_mann_whitney_tail_against_enumeration(n, m):
    counts = [0] * (n * m + 1)
    for first in itertools.combinations(range(n + m), n):
        # U: pairs (x of the first sample, y of the second) with y ranked below x
        u = sum(1 for i in first for j in range(i) if j not in first)
        counts[u] += 1
    total, running, expected = math.comb(n + m, n), 0, []
    for c in counts:
        running += c
        expected.append(running / total)
    assert _u_lower_tail(n, m) == pytest.approx(expected)


def test_three_trials_per_side_give_the_widest_interval_at_90_percent():
    old, new = [10.0, 11.0, 12.0], [13.0, 14.0, 15.0]
    low, high, coverage = ratio_interval(old, new)
    assert (low, high, coverage) == pytest.approx((13 / 12, 15 / 10, 0.9))
    assert ratio_interval([1.0, 2.0], [1.0, 2.0]) is None  # 2 against 2: no interval at 90 %
    low, high, coverage = ratio_interval([1.0] * 4, [2.0] * 4)
    assert (low, high) == pytest.approx((2.0, 2.0)) and coverage == pytest.approx(1 - 2 / 70)


def test_ten_trials_per_side_95_percent_from_the_pairwise_ratios():
    old = [float(v) for v in range(10, 20)]
    new = [v * 1.2 for v in old]
    low, high, coverage = ratio_interval(old, new)
    ratios = sorted(b / a for a in old for b in new)
    k = 24  # Mann-Whitney, n = m = 10: P(U <= 23) <= 0.025 < P(U <= 24)
    assert (low, high) == pytest.approx((ratios[k - 1], ratios[-k]))
    assert coverage >= 0.95 and low < 1.2 < high


def test_many_trials_use_the_normal_approximation():
    rng = random.Random(1)
    old = [rng.lognormvariate(0, 0.1) for _ in range(300)]
    new = [v * 1.5 for v in old]
    low, high, coverage = ratio_interval(old, new)
    assert coverage == 0.95 and 1.4 < low < 1.5 < high < 1.6


def test_verdict_bounds():
    assert verdict(1.051, 1.3, 0.05) == "slower"
    assert verdict(1.05, 1.3, 0.05) == "unclear"  # on the bound: not beyond it
    assert verdict(0.7, 0.94, 0.05) == "faster"
    assert verdict(0.95, 1.05, 0.05) == "same"
    assert verdict(None, None, 0.05) == "unclear"


@pytest.mark.parametrize("trials", [3, 5])
def test_identical_runs_are_not_slower_more_than_5_percent_of_the_time(trials):
    """A/A: OLD and NEW drawn from the same skewed distribution (lognormal, 30 % spread); the
    gate's default threshold (5 %) says 'slower' at most 5 % of the time."""
    rng = random.Random(7)
    slower = 0
    runs = 2000
    for _ in range(runs):
        old = [rng.lognormvariate(0, 0.3) for _ in range(trials)]
        new = [rng.lognormvariate(0, 0.3) for _ in range(trials)]
        ratio = statistics.median(new) / statistics.median(old)
        slower += compare_trials(old, new, ratio, 0.05).verdict == "slower"
    assert slower / runs <= 0.05, slower / runs


def test_a_clear_slowdown_is_found_with_three_trials():
    rng = random.Random(3)
    caught = 0
    for _ in range(200):
        old = [rng.lognormvariate(0, 0.02) for _ in range(3)]
        new = [1.5 * rng.lognormvariate(0, 0.02) for _ in range(3)]
        ratio = statistics.median(new) / statistics.median(old)
        caught += compare_trials(old, new, ratio, 0.05).verdict == "slower"
    assert caught == 200


def test_trials_to_settle_grows_with_the_spread():
    tight = trials_to_settle([1.0, 1.01, 0.99], [1.02, 1.03, 1.01], 1.02, 0.05)
    loose = trials_to_settle([1.0, 1.2, 0.8], [1.02, 1.2, 0.85], 1.02, 0.05)
    assert tight is not None and loose is not None and 3 < tight < loose
    assert trials_to_settle([1.0, 1.1], [1.05, 1.15], 1.05, 0.05) is None  # right on the bound


# -- ci95 in results documents -------------------------------------------------------------------
def test_results_gain_ci95_from_their_trials():
    values = [0.010, 0.011, 0.012, 0.013, 0.014, 0.015, 0.016, 0.017, 0.018, 0.019]
    entry = synthetic_entry(values)
    for key in ("first_token_s", "rest_token_mean_s"):  # as an older file: no ci95 written
        del entry["aggregates"][key]["ci95"], entry["aggregates"][key]["ci95_note"]
    doc = ResultsDocument.from_dict(synthetic_doc(entry))
    stats = doc.configurations[0].aggregates.first_token_s
    assert stats.ci95 == pytest.approx([0.011, 0.018]) and stats.ci95_note is None
    assert doc.to_dict()["configurations"][0]["aggregates"]["first_token_s"]["ci95"] == stats.ci95
    few = ResultsDocument.from_dict(synthetic_doc(synthetic_entry(BASE)))
    stats = few.configurations[0].aggregates.first_token_s
    assert stats.ci95 is None and stats.ci95_note.startswith("3 trial(s)")


def test_a_bad_ci95_in_a_file_is_refused(capsys, tmp_path):
    entry = synthetic_entry(BASE * 2)
    entry["aggregates"]["first_token_s"]["ci95"] = [0.02, 0.01]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(synthetic_doc(entry)))
    code, _, err = sb(capsys, "compare", str(path), str(path))
    assert code == EXIT_USAGE and "first_token_s.ci95" in err and len(err.splitlines()) == 1


def test_endpoint_requests_get_intervals_and_itl_says_why_not():
    from streambench.endpoint.results import _request_intervals

    records = [
        SimpleNamespace(warmup=i == 0, ok=i != 3, ttft_s=0.01 * i, tpot_s=0.001 * i, e2e_s=0.1 * i)
        for i in range(9)
    ]  # a warm-up and a failed request are left out: 7 requests
    summary = {key: {"median": 0.0} for key in ("ttft_s", "tpot_s", "e2e_s", "itl_s")}
    _request_intervals(summary, records)
    assert summary["ttft_s"]["ci95"] == pytest.approx([0.01, 0.08])  # ranks 1 and 7 of 7
    assert (
        summary["itl_s"]["ci95"] is None and "pooled over tokens" in summary["itl_s"]["ci95_note"]
    )


# -- verdicts and exit codes ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("factor", "expected", "code"),
    [(1.5, "slower", EXIT_FAILED), (0.5, "faster", EXIT_OK), (1.0, "same", EXIT_OK)],
)
def test_verdict_and_exit_code(capsys, tmp_path, factor, expected, code):
    old = synthetic_entry(BASE)
    new = synthetic_entry([v * factor for v in BASE])
    got, out, _ = sb(capsys, "compare", *files(tmp_path, old, new))
    assert got == code, out
    rows, _ = report.compare_documents(synthetic_doc(old), synthetic_doc(new), 0.05)
    assert rows[0].verdict == expected and rows[0].n == (3, 3)
    assert "3/3" in out and f" {expected}" in out


def test_unclear_passes_with_a_warning_and_fails_with_strict(capsys, tmp_path):
    old = synthetic_entry([0.010, 0.011, 0.012])
    new = synthetic_entry([0.0102, 0.0112, 0.0122])  # +2 %, trials spread 10 %
    paths = files(tmp_path, old, new)
    code, out, _ = sb(capsys, "compare", *paths)
    assert code == EXIT_OK, out
    assert "unclear" in out and "trials per side would settle it" in out
    assert "--strict fails on it" in out
    code, out, _ = sb(capsys, "compare", *paths, "--strict")
    assert code == EXIT_FAILED and "unclear (--strict)" in out


def test_two_trials_per_side_are_unclear_never_slower(capsys, tmp_path):
    old, new = synthetic_entry(BASE[:2]), synthetic_entry([v * 3 for v in BASE[:2]])
    code, out, _ = sb(capsys, "compare", *files(tmp_path, old, new))
    assert code == EXIT_OK and "no interval" in out and "unclear" in out, out


def test_busy_machine_makes_a_slowdown_unclear(capsys, tmp_path):
    busy = "the machine was busy: other processes used 41 % of the CPU during 3 of 3 trials"
    old = synthetic_entry(BASE)
    new = synthetic_entry([v * 1.5 for v in BASE], warnings=[busy])
    paths = files(tmp_path, old, new)
    code, out, _ = sb(capsys, "compare", *paths)
    assert code == EXIT_OK and "slower only beside other load" in out and "41 %" in out, out
    assert sb(capsys, "compare", *paths, "--strict")[0] == EXIT_FAILED


def test_an_edited_median_fails_closed(capsys, tmp_path):
    old = synthetic_entry(BASE)
    new = synthetic_entry(BASE)
    new["aggregates"]["first_token_s"]["median"] *= 2  # the trials say otherwise
    code, out, _ = sb(capsys, "compare", *files(tmp_path, old, new))
    assert code == EXIT_FAILED and "not the median of its 3 trial(s)" in out, out


def test_a_bad_trial_value_fails_closed():
    old = synthetic_entry(BASE)
    new = synthetic_entry(BASE)
    new["trials"][1]["first_token_s"] = float("nan")
    rows, failed = report.compare_documents(synthetic_doc(old), synthetic_doc(new), 0.05)
    assert failed and "NEW trial 2 is NaN" in rows[0].problem


# -- pairing: --ignore, and refusing what differs silently ---------------------------------------
def test_ignore_pairs_an_intended_ab_and_names_the_difference(capsys, tmp_path):
    eager = synthetic_entry(BASE, further={"attn_implementation": "eager"})
    sdpa = synthetic_entry([v * 0.5 for v in BASE], further={"attn_implementation": "sdpa"})
    paths = files(tmp_path, eager, sdpa)
    code, out, _ = sb(capsys, "compare", *paths)
    assert code == EXIT_FAILED and "missing in NEW" in out, out
    rows, _ = report.compare_documents(synthetic_doc(eager), synthetic_doc(sdpa), 0.05)
    assert "attn_implementation eager vs sdpa; --ignore attn_implementation pairs them" in (
        rows[0].problem
    )
    code, out, _ = sb(capsys, "compare", *paths, "--ignore", "attn_implementation")
    assert code == EXIT_OK, out
    assert "attn_implementation eager → sdpa" in out and "faster" in out
    assert "ignoring attn_implementation" in out


def test_a_dtype_change_is_refused_unless_ignored(capsys, tmp_path):
    old = synthetic_entry(BASE, dtype="float32")
    new = synthetic_entry(BASE, dtype="bfloat16")
    paths = files(tmp_path, old, new)
    code, out, _ = sb(capsys, "compare", *paths)
    assert code == EXIT_FAILED, out
    rows, _ = report.compare_documents(synthetic_doc(old), synthetic_doc(new), 0.05)
    assert rows[0].problem.startswith("dtype differs (float32 in OLD, bfloat16 in NEW)")
    assert "--ignore dtype" in rows[0].problem and not rows[0].intervals
    code, out, _ = sb(capsys, "compare", *paths, "--ignore", "dtype")
    assert code == EXIT_OK and "dtype float32 → bfloat16" in out, out


def test_an_unknown_dtype_is_not_a_difference_and_a_served_model_may_differ_in_device():
    old = synthetic_entry(BASE, dtype=None)
    new = synthetic_entry(BASE, device="endpoint", dtype=None)
    rows, failed = report.compare_documents(synthetic_doc(old), synthetic_doc(new), 0.05)
    assert not failed and rows[0].differs == ["device cpu → endpoint"]


def test_ignore_an_unknown_setting_is_a_usage_error(capsys, tmp_path):
    paths = files(tmp_path, synthetic_entry(BASE), synthetic_entry(BASE))
    code, _, err = sb(capsys, "compare", *paths, "--ignore", "atn_implementation")
    assert code == EXIT_USAGE and "--ignore atn_implementation" in err
    assert len(err.strip().splitlines()) == 1


def test_markdown_carries_the_same_verdicts(capsys, tmp_path):
    old = synthetic_entry(BASE)
    new = synthetic_entry([v * 1.5 for v in BASE])
    md = tmp_path / "diff.md"
    code, _, _ = sb(capsys, "compare", *files(tmp_path, old, new), "-o", str(md))
    assert code == EXIT_FAILED
    text = md.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| m 8-4 bs1"))
    assert "| 3/3 |" in row and "**1.500× [1.471, 1.530] 90% slower**" in row
    assert row.rstrip(" |").endswith("slower")


def test_compare_at_80_columns_wraps_lines_and_cuts_no_number(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    model = "a-model-with-a-rather-long-name/and-a-long-path"
    old = synthetic_entry(BASE, model=model)
    new = synthetic_entry([v * 1.5 for v in BASE], model=model)
    code, out, _ = sb(capsys, "compare", *files(tmp_path, old, new))
    assert code == EXIT_FAILED
    lines = out.splitlines()
    assert all(len(line) <= 80 for line in lines), out
    assert any("first token median 10.10 → 15.15 ms 1.500× [1.471, 1.530] 90%" in x for x in lines)
    assert "a-model-with-a-rather-long-name/and-a-long-path 8-4 bs1" in lines
    assert "  verdict: slower" in lines and "…" not in out


def test_trials_that_vary_wildly_are_never_judged_slower():
    """Trials 6 to 102 ms apart (a busy machine) on OLD: NEW 5x slower is unclear, named."""
    old = synthetic_entry([0.006, 0.030, 0.102])
    new = synthetic_entry([0.470, 0.472, 0.485])
    rows, failed = report.compare_documents(synthetic_doc(old), synthetic_doc(new), 0.05)
    assert not failed and rows[0].verdict == "unclear"
    assert "OLD's first token median trials vary from 6 to 102 ms" in rows[0].noisy
    rows, failed = report.compare_documents(
        synthetic_doc(old), synthetic_doc(new), 0.05, strict=True
    )
    assert failed


def test_an_outlier_trial_alone_does_not_silence_the_gate():
    """A warning that names an outlier trial (no trial ran beside other load) leaves a clear
    slowdown *slower*; a busy-machine warning makes it *unclear*."""
    old = synthetic_entry([0.0100, 0.0101, 0.0102])
    new = synthetic_entry([0.0200, 0.0201, 0.0202])
    new["warnings"] = ["trial 3 is an outlier: first token 20.2 ms against a median of 20.1 ms"]
    new["interference"] = {"busy_threshold": 0.2, "busy_trials": []}
    rows, failed = report.compare_documents(synthetic_doc(old), synthetic_doc(new), 0.05)
    assert failed and rows[0].regressed and rows[0].noisy is None
    new["warnings"] = ["the machine was busy: other processes used 60 % of the CPU during 1 of 3"]
    new["interference"] = {"busy_threshold": 0.2, "busy_trials": [2]}
    rows, failed = report.compare_documents(synthetic_doc(old), synthetic_doc(new), 0.05)
    assert not failed and rows[0].verdict == "unclear" and "busy" in rows[0].noisy
