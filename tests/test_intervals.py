"""The median's interval over trials against known tables and against simulation."""

from __future__ import annotations

import random

import pytest

from streambench.intervals import median_ci, min_trials, why_no_interval


@pytest.mark.parametrize(
    ("n", "lo", "up"),
    # 1-based ranks of the 95 % order-statistic interval for the median (standard tables,
    # e.g. Conover, Practical Nonparametric Statistics, table A3 / Hollander & Wolfe)
    [
        (6, 1, 6),
        (7, 1, 7),
        (8, 1, 8),
        (9, 2, 8),
        (10, 2, 9),
        (12, 3, 10),
        (20, 6, 15),
        (30, 10, 21),
    ],
)
def test_ranks_match_the_tables(n, lo, up):
    values = [float(i) for i in range(1, n + 1)]
    random.Random(n).shuffle(values)
    ci = median_ci(values)
    assert (ci.low, ci.high) == (float(lo), float(up))
    assert ci.coverage >= 0.95 and ci.n == n


def test_too_few_trials_give_no_interval_and_say_why():
    assert min_trials() == 6
    assert median_ci([1.0, 2.0, 3.0, 4.0, 5.0]) is None
    assert "needs at least 6" in why_no_interval(5)
    assert why_no_interval(6) is None


def test_non_finite_and_bad_level_refused():
    with pytest.raises(ValueError, match="finite"):
        median_ci([1.0] * 5 + [float("nan")])
    with pytest.raises(ValueError, match="level"):
        median_ci([1.0] * 10, level=1.5)


def test_coverage_holds_on_a_skewed_distribution():
    # lognormal trials (skewed like latencies): the true median is exp(mu) = 1
    rng = random.Random(7)
    hits = 0
    reps = 2000
    for _ in range(reps):
        ci = median_ci([rng.lognormvariate(0.0, 0.5) for _ in range(10)])
        hits += ci.low <= 1.0 <= ci.high
    assert hits / reps >= 0.95 - 0.015  # exact coverage is 97.9 %; allow sampling error


def test_half_width_relative_to_the_median():
    ci = median_ci([float(v) for v in range(90, 111)])
    assert ci.half_width_rel(100.0) == pytest.approx((ci.high - ci.low) / 200)
    assert ci.half_width_rel(0.0) is None
