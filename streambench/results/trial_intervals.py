"""The 95 % interval of every median over trials in a results document (``ci95``).

The unit of replication is the *trial*: one whole ``generate()`` call of ``streambench run``, one
measured request of ``streambench endpoint`` (never a token: the tokens of one run are
correlated). Each statistic of ``aggregates`` that is over trials gets ``ci95: [low, high]``
(:func:`streambench.intervals.median_ci`, a distribution-free order-statistic interval) or
``ci95: null`` with the reason in ``ci95_note``. The values come from the configuration's
``trials`` list, so an older file without ``ci95`` gains it when read; a statistic whose trials
do not reproduce its ``n`` (an edited file) gets no interval, and the note says so.

Pure Python, no torch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from ..intervals import median_ci, why_no_interval
from .percentiles import Statistics
from .values import is_number

__all__ = [
    "POOLED_NOTE",
    "TRIAL_STATISTICS",
    "add_interval",
    "fill_intervals",
    "half_width",
    "interval_fields",
    "trial_values",
]

#: ``aggregates`` statistics over trials; each is the run key of the same name over ``trials``
TRIAL_STATISTICS = (
    "first_token_s",
    "rest_token_mean_s",
    "decode_tokens_per_s",
    "decode_throughput_tokens_per_s",
    "prefill_tokens_per_s",
    "pre_prompt_s",
)

#: why a statistic pooled over tokens has no interval
POOLED_NOTE = "pooled over tokens: no interval (the tokens of one request are correlated)"


def interval_fields(values: Iterable[float]) -> dict[str, Any]:
    """``{"ci95": [low, high] | None, "ci95_note": str | None}`` for the median of ``values``
    (one per trial, finite)."""
    data = [float(v) for v in values]
    ci = median_ci(data)
    if ci is None:
        return {"ci95": None, "ci95_note": why_no_interval(len(data))}
    return {"ci95": ci.to_list(), "ci95_note": None}


def add_interval(stats: Any, values: Iterable[float]) -> None:
    """Add :func:`interval_fields` to a statistics dict (in place; anything else is left)."""
    if isinstance(stats, dict):
        stats.update(interval_fields(values))


def trial_values(trials: Iterable[Any], key: str) -> list[Any]:
    """The non-null values of ``key`` over ``trials`` (:class:`RunRecord` or dicts), as read."""
    out = []
    for run in trials:
        if isinstance(run, Mapping):
            value = run.get(key)
        elif hasattr(run, "to_dict"):
            value = getattr(run, key, None) if key in run._TYPED else run.other.get(key)
        else:
            continue
        if value is not None:
            out.append(value)
    return out


def _usable(values: list[Any]) -> bool:
    return all(is_number(v) and math.isfinite(v) for v in values)


def fill_intervals(aggregates: Any, trials: list[Any]) -> None:
    """Give each statistic of :data:`TRIAL_STATISTICS` in ``aggregates`` (an
    :class:`~streambench.results.schema.Aggregates`) that has no ``ci95`` yet its interval from
    ``trials``; never raises on a malformed file (no interval, and a note, instead)."""
    if aggregates is None:
        return
    for name in TRIAL_STATISTICS:
        stats = getattr(aggregates, name, None)
        if not isinstance(stats, Statistics) or stats.has_interval_fields:
            continue
        values = trial_values(trials, name)
        if not _usable(values) or not is_number(stats.n) or len(values) != stats.n:
            stats.ci95_note = "no interval: the trials in the file do not match this statistic"
            continue
        fields = interval_fields(values)
        stats.ci95, stats.ci95_note = fields["ci95"], fields["ci95_note"]


def half_width(stats: Statistics | None) -> float | None:
    """The larger distance from the median to an end of ``ci95`` (so ``median ± half_width``
    holds the whole interval; it is asymmetric in general), ``None`` without an interval."""
    if stats is None or not isinstance(stats.ci95, list) or len(stats.ci95) != 2:
        return None
    low, high = stats.ci95
    if not (is_number(low) and is_number(high) and is_number(stats.median)):
        return None
    return max(stats.median - low, high - stats.median, 0.0)
