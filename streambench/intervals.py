"""How sure a median over trials is: a distribution-free 95 % interval (pure Python, no torch).

The unit of replication is a *trial* (one whole ``generate()`` or request set), never a token:
the tokens of one run are correlated, so an interval over tokens would be far too narrow.

The interval is the classic order-statistic (binomial) interval for the median: with ``n``
independent trials, the ``l``-th and ``u``-th smallest values bracket the true median with
probability ``P(l <= B < u)`` for ``B ~ Binomial(n, 1/2)``. It assumes nothing about the shape of
the distribution (latencies are skewed and heavy-tailed), and its coverage is *at least* the
level asked for. A 95 % interval needs at least 6 trials (with 5, even the smallest and largest
value cover only 93.75 %); with fewer, :func:`median_ci` returns ``None`` and
:func:`why_no_interval` says why.

Example:
    >>> from streambench.intervals import median_ci
    >>> ci = median_ci([10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0, 17.0, 18.0, 19.0])
    >>> ci.low, ci.high, round(ci.coverage, 4)
    (11.0, 18.0, 0.9785)
    >>> median_ci([1.0, 2.0, 3.0]) is None
    True
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["METHOD", "Interval", "median_ci", "min_trials", "why_no_interval"]

#: what ``ci95`` means in results files (docs/results-schema.md)
METHOD = "order-statistic interval for the median (distribution-free, binomial)"


@dataclass(frozen=True)
class Interval:
    """``[low, high]`` holds the true median with probability at least ``coverage``.

    ``low``/``high`` are in the unit of the values; ``n`` the number of trials;
    ``level`` the coverage asked for (0.95); ``coverage`` the exact coverage reached (>= level).
    """

    low: float
    high: float
    level: float
    coverage: float
    n: int

    def half_width_rel(self, median: float) -> float | None:
        """Half the interval's width as a fraction of ``median`` (``None`` for a zero median)."""
        if median == 0 or not math.isfinite(median):
            return None
        return (self.high - self.low) / 2 / abs(median)

    def to_list(self) -> list[float]:
        return [self.low, self.high]


def _binom_cdf_half(n: int, k: int) -> float:
    """``P(B <= k)`` for ``B ~ Binomial(n, 1/2)``, exact (integers, then one division)."""
    if k < 0:
        return 0.0
    return sum(math.comb(n, i) for i in range(min(k, n) + 1)) / 2**n


def _ranks(n: int, level: float) -> tuple[int, int, float] | None:
    """1-based ranks ``(l, u)`` of the narrowest symmetric interval with coverage >= level."""
    best = None
    for lo in range(1, n // 2 + 1):
        up = n + 1 - lo
        coverage = 1 - 2 * _binom_cdf_half(n, lo - 1)
        if coverage >= level:
            best = (lo, up, coverage)
        else:
            break
    return best


def min_trials(level: float = 0.95) -> int:
    """The fewest trials for which an interval at ``level`` exists (6 for 95 %)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be within (0, 1), got {level!r}")
    n = 1
    while _ranks(n, level) is None:
        n += 1
    return n


def median_ci(values: Iterable[float], level: float = 0.95) -> Interval | None:
    """The order-statistic interval for the median of ``values``, or ``None`` with too few.

    Non-finite values are refused (``ValueError``): a trial's statistic is always finite.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be within (0, 1), got {level!r}")
    data = sorted(float(v) for v in values)
    if any(not math.isfinite(v) for v in data):
        raise ValueError("median_ci: values must be finite")
    ranks = _ranks(len(data), level)
    if ranks is None:
        return None
    lo, up, coverage = ranks
    return Interval(data[lo - 1], data[up - 1], level, coverage, len(data))


def why_no_interval(n: int, level: float = 0.95) -> str | None:
    """The reason :func:`median_ci` gives no interval for ``n`` trials (``None`` when it does)."""
    need = min_trials(level)
    if n >= need:
        return None
    return f"{n} trial(s): a {level:.0%} interval for the median needs at least {need}"
