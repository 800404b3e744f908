"""The verdict of ``streambench compare`` on one metric: the ratio NEW/OLD of the medians over
trials, a distribution-free interval for it, and *slower*, *faster*, *same* or *unclear*.

The interval is the Hodges–Lehmann/Moses interval for a shift, on the logarithm of the per-trial
values (so a shift is a ratio): of the ``n_old × n_new`` pairwise ratios ``new_j / old_i``, the
``k``-th smallest and the ``k``-th largest, with ``k`` from the exact null distribution of the
Mann–Whitney statistic (a normal approximation beyond :data:`EXACT_LIMIT` pairs). It assumes
nothing about the shape of the distribution (latencies are skewed, with outliers) and, when OLD
and NEW are the same, the chance that the whole interval lies above 1 is at most 2.5 % — or, with
3 trials per side, where a 95 % interval does not exist, the widest interval (the smallest and the
largest pairwise ratio: 90 %, so at most 5 % on each side), with its coverage said. Fewer trials
give no interval (:data:`MIN_COVERAGE`) and the verdict *unclear*. The interval is widened to hold
the ratio of the medians when it does not (the point shown and the interval then agree; wider only
ever makes a verdict more careful).

Verdicts for a ``threshold`` ``t`` (0.05 = 5 %): **slower** when the whole interval is above
``1 + t``; **faster** when it is below ``1 - t``; **same** when it lies within ``[1 - t, 1 + t]``;
**unclear** when it straddles a bound (or there is no interval). Pure Python, no torch.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from ..stats import percentile

__all__ = [
    "EXACT_LIMIT",
    "LEVEL",
    "MAX_PER_SIDE",
    "MAX_SPREAD",
    "METHOD",
    "MIN_COVERAGE",
    "RatioInterval",
    "compare_trials",
    "ratio_interval",
    "spread",
    "trials_to_settle",
    "verdict",
]

#: the coverage asked for (two-sided)
LEVEL = 0.95
#: the least coverage accepted where ``LEVEL`` cannot be had (3 trials per side: 90 %, i.e. a
#: false "slower" at most 5 % of the time on identical runs); below it there is no interval
MIN_COVERAGE = 0.90
#: pairs (``n_old * n_new``) up to which the Mann–Whitney distribution is counted exactly
EXACT_LIMIT = 2_500
#: trials that vary more than this (``(max - min) / median``) were measured beside other load:
#: a quiet machine repeats a ``generate()`` within a few percent; such a configuration is never
#: judged slower or faster (its runs as a whole may have been slowed too, which no interval over
#: its trials can see)
MAX_SPREAD = 0.5
#: per-trial values per side used for the interval (more are thinned to evenly spaced order
#: statistics: ``endpoint`` runs of thousands of requests)
MAX_PER_SIDE = 500
#: what the interval is, for docs and reports
METHOD = (
    "Hodges-Lehmann/Moses distribution-free interval for the ratio NEW/OLD (pairwise ratios of "
    "per-trial values, Mann-Whitney ranks)"
)


@dataclass(frozen=True)
class RatioInterval:
    """NEW/OLD for one metric: ``ratio`` of the medians, ``low``/``high`` its interval
    (``None``: too few trials), ``coverage`` reached (>= 0.95, or 0.90 with 3 trials per side),
    ``n_old``/``n_new`` trials, ``verdict`` (``slower``, ``faster``, ``same``, ``unclear``) and,
    when unclear, ``settle``: about how many trials per side would settle it (``None``: unknown)."""

    ratio: float
    low: float | None
    high: float | None
    coverage: float | None
    n_old: int
    n_new: int
    verdict: str
    settle: int | None = None


def _u_lower_tail(n: int, m: int) -> list[float]:
    """``P(U <= u)`` for ``u = 0 .. n*m`` (Mann–Whitney U, no ties), from the Gaussian binomial
    coefficient ``[n+m choose n]_q`` whose coefficients count the orderings with ``U = u``."""
    size = n * m + 1
    counts = [0] * size
    counts[0] = 1
    for i in range(1, n + 1):
        step = m + i
        for u in range(size - 1, step - 1, -1):  # multiply by (1 - q^(m+i))
            counts[u] -= counts[u - step]
        for u in range(i, size):  # divide by (1 - q^i)
            counts[u] += counts[u - i]
    total = math.comb(n + m, n)
    out, running = [], 0
    for c in counts:
        running += c
        out.append(running / total)
    return out


def _rank_k(n: int, m: int) -> tuple[int, float] | None:
    """``k`` (1-based) and the coverage of the interval between the ``k``-th smallest and the
    ``k``-th largest pairwise difference; ``None`` when even ``k = 1`` covers less than
    :data:`MIN_COVERAGE`."""
    alpha = 1 - LEVEL
    if n * m <= EXACT_LIMIT:
        tail = _u_lower_tail(n, m)
        k = 0
        while k < len(tail) and tail[k] <= alpha / 2:
            k += 1
        if k >= 1:
            return k, 1 - 2 * tail[k - 1]
        coverage = 1 - 2 * tail[0]
        return (1, coverage) if coverage >= MIN_COVERAGE - 1e-12 else None
    mean, sd = n * m / 2, math.sqrt(n * m * (n + m + 1) / 12)
    k = max(1, math.floor(mean - 1.959963984540054 * sd))
    return k, LEVEL


def ratio_interval(old: Sequence[float], new: Sequence[float]) -> tuple[float, float, float] | None:
    """``(low, high, coverage)`` for NEW/OLD from positive per-trial values, ``None`` with too
    few trials (fewer than 3 per side, or 2 against fewer than 5)."""
    old, new = _thin(old, MAX_PER_SIDE), _thin(new, MAX_PER_SIDE)
    n, m = len(old), len(new)
    if n == 0 or m == 0:
        return None
    ranks = _rank_k(n, m)
    if ranks is None:
        return None
    k, coverage = ranks
    lo_old, lo_new = [math.log(v) for v in old], [math.log(v) for v in new]
    diffs = sorted(b - a for a in lo_old for b in lo_new)
    return math.exp(diffs[k - 1]), math.exp(diffs[-k]), coverage


def _thin(values: Sequence[float], most: int) -> list[float]:
    """At most ``most`` evenly spaced order statistics of ``values`` (all of them when fewer):
    the pairwise ratios of thousands of requests per side would take minutes; the interval of
    the thinned sample is a little wider, never narrower in expectation."""
    data = sorted(values)
    if len(data) <= most:
        return data
    return [data[round(i * (len(data) - 1) / (most - 1))] for i in range(most)]


def spread(values: Sequence[float]) -> float | None:
    """The interquartile range of positive per-trial values over their median (``None`` for
    fewer than 2). Not the range: the range grows with the number of trials, so ``--trials
    auto``'s 30 trials would look noisy where 6 did not.

    >>> spread([10.0, 11.0, 12.0])
    0.09090909090909091
    """
    if len(values) < 2:
        return None
    data = sorted(values)
    median = percentile(data, 50)
    return (percentile(data, 75) - percentile(data, 25)) / median if median > 0 else None


def verdict(low: float | None, high: float | None, threshold: float) -> str:
    """``slower``, ``faster``, ``same`` or ``unclear`` for an interval of NEW/OLD (module
    docstring); no interval is ``unclear``.

    >>> verdict(1.07, 1.2, 0.05), verdict(0.97, 1.02, 0.05), verdict(0.98, 1.09, 0.05)
    ('slower', 'same', 'unclear')
    """
    if low is None or high is None:
        return "unclear"
    if low > 1 + threshold:
        return "slower"
    if high < 1 - threshold:
        return "faster"
    if low >= 1 - threshold and high <= 1 + threshold:
        return "same"
    return "unclear"


def trials_to_settle(
    old: Sequence[float], new: Sequence[float], ratio: float, threshold: float
) -> int | None:
    """About how many trials per side would make the interval clear of the nearest bound
    (``1 ± threshold``): from the spread of the log-values (pooled standard deviation ``s``),
    the interval's half-width is about ``1.96 s sqrt(2 / n)``. ``None`` when the ratio sits on a
    bound or the spread is unknown (fewer than 2 trials on a side)."""
    if len(old) < 2 or len(new) < 2:
        return None
    logs = [[math.log(v) for v in side] for side in (old, new)]
    var = sum(statistics.variance(side) * (len(side) - 1) for side in logs)
    s = math.sqrt(var / (len(old) + len(new) - 2))
    point = math.log(ratio)
    bounds = [math.log(1 + threshold)]
    if threshold < 1:
        bounds.append(math.log(1 - threshold))
    distance = min(abs(point - b) for b in bounds)
    if distance == 0:
        return None
    need = math.ceil(2 * (1.959963984540054 * s / distance) ** 2)
    return max(need, len(old) + 1, len(new) + 1, 3)


def compare_trials(
    old: Sequence[float], new: Sequence[float], ratio: float, threshold: float
) -> RatioInterval:
    """The :class:`RatioInterval` of one metric: positive finite per-trial values of OLD and NEW
    and the ratio of the medians (as in the files)."""
    found = ratio_interval(old, new)
    low = high = coverage = None
    if found is not None:
        low, high, coverage = found
        low, high = min(low, ratio), max(high, ratio)
    result = verdict(low, high, threshold)
    settle = trials_to_settle(old, new, ratio, threshold) if result == "unclear" else None
    return RatioInterval(ratio, low, high, coverage, len(old), len(new), result, settle)
