"""Descriptive statistics over latencies and over runs (pure Python, no torch).

Percentiles use linear interpolation between closest ranks (the same as ``numpy.percentile``'s
default and ``statistics.quantiles(method="inclusive")``); the standard deviation is the sample
standard deviation (``n - 1``), ``0.0`` for a single value.

Example:
    >>> from streambench.stats import describe
    >>> d = describe([0.010, 0.011, 0.012, 0.050])
    >>> round(d.median, 4), round(d.p90, 4)
    (0.0115, 0.0386)
"""

from __future__ import annotations

import math
import numbers
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

__all__ = ["RunsSummary", "Stats", "aggregate", "describe", "percentile"]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of already sorted values, linearly interpolated."""
    if not sorted_values:
        raise ValueError("percentile of an empty sequence")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be within 0..100, got {q}")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac


@dataclass(frozen=True)
class Stats:
    """Summary of one series of numbers, all in the series' own unit (seconds for latencies).

    ``n`` values; ``mean``; ``median`` (= p50); ``p90``/``p99`` percentiles; ``stdev`` the sample
    standard deviation (0.0 when ``n == 1``); ``min``/``max``.
    """

    n: int
    mean: float
    median: float
    p90: float
    p99: float
    stdev: float
    min: float
    max: float

    @property
    def p50(self) -> float:
        return self.median

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def describe(values: Iterable[float]) -> Stats | None:
    """:class:`Stats` of ``values``, or ``None`` when there are none. O(n log n)."""
    data = sorted(values)
    n = len(data)
    if n == 0:
        return None
    mean = math.fsum(data) / n
    stdev = statistics.stdev(data, xbar=mean) if n > 1 else 0.0
    return Stats(
        n=n,
        mean=mean,
        median=percentile(data, 50),
        p90=percentile(data, 90),
        p99=percentile(data, 99),
        stdev=stdev,
        min=data[0],
        max=data[-1],
    )


@dataclass(frozen=True)
class RunsSummary:
    """Statistics over several ``generate()`` runs of one configuration (warm-up runs excluded).

    Each field describes one per-run number across the measured runs:

    - ``first_token_s``: time to first token of each run, seconds.
    - ``rest_token_mean_s``: each run's mean latency per token after the first, seconds/token
      (runs that produced fewer than two tokens do not contribute).
    - ``decode_tokens_per_s``: each run's decode speed per sequence, tokens/s.
    - ``peak_memory_bytes``: the largest per-run peak (``None`` when no run measured memory).
    - ``runs``: measured runs used; ``warmup``: runs skipped at the start; ``incomplete``: measured
      runs whose ``generate()`` never ended (excluded from the statistics).
    """

    runs: int
    warmup: int
    incomplete: int
    first_token_s: Stats | None
    rest_token_mean_s: Stats | None
    decode_tokens_per_s: Stats | None
    peak_memory_bytes: int | None
    new_tokens: int | None
    batch_size: int | None
    prompt_tokens: int | None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in self.__dataclass_fields__:
            value = getattr(self, key)
            out[key] = value.to_dict() if isinstance(value, Stats) else value
        return out


class RunLike(Protocol):
    """What :func:`aggregate` reads of a run: :class:`streambench.timing.RunResult` has it
    (a Protocol, so that this lower module does not import the one above it)."""

    @property
    def complete(self) -> bool: ...
    @property
    def first_token_s(self) -> float | None: ...
    @property
    def rest_token_mean_s(self) -> float | None: ...
    @property
    def decode_tokens_per_s(self) -> float | None: ...
    @property
    def peak_memory_bytes(self) -> int | None: ...
    @property
    def new_tokens(self) -> int: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def prompt_tokens(self) -> int | None: ...


def aggregate(runs: Sequence[RunLike], warmup: int = 0) -> RunsSummary:
    """Statistics over ``runs[warmup:]``, counting only complete runs that produced a token.

    Raises ``TypeError`` when ``warmup`` is not a whole number (an ``int``), ``ValueError``
    when it is negative or leaves no run to measure.
    """
    if isinstance(warmup, bool) or not isinstance(warmup, numbers.Integral):
        raise TypeError(
            f"warmup is a number of runs to skip, a whole number >= 0 (an int); got {warmup!r}"
        )
    warmup = int(warmup)
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    measured = list(runs[warmup:])
    if not measured:
        raise ValueError(
            f"no run left to measure: {len(runs)} run(s) recorded and warmup={warmup}; "
            "run generate() more times or lower warmup"
        )
    good = [r for r in measured if r.complete and r.first_token_s is not None]
    peaks = [r.peak_memory_bytes for r in good if r.peak_memory_bytes is not None]
    tok = {r.new_tokens for r in good}
    bs = {r.batch_size for r in good}
    pt = {r.prompt_tokens for r in good}
    return RunsSummary(
        runs=len(measured),
        warmup=warmup,
        incomplete=len(measured) - len(good),
        first_token_s=describe(r.first_token_s for r in good if r.first_token_s is not None),
        rest_token_mean_s=describe(
            r.rest_token_mean_s for r in good if r.rest_token_mean_s is not None
        ),
        decode_tokens_per_s=describe(
            r.decode_tokens_per_s for r in good if r.decode_tokens_per_s is not None
        ),
        peak_memory_bytes=max(peaks) if peaks else None,
        new_tokens=tok.pop() if len(tok) == 1 else None,
        batch_size=bs.pop() if len(bs) == 1 else None,
        prompt_tokens=pt.pop() if len(pt) == 1 else None,
    )
