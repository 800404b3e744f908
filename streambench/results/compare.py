"""``streambench compare``: match the configurations of two results documents and gate on
regressions. The gate fails closed: whatever cannot be compared fails it.

Configurations are matched by their settings (:meth:`ConfigurationSettings.match_key`: model,
input/output tokens, batch size, beams, a served model's concurrency, request rate and chat, and
the generation settings of ``further``: attention, cache, compile, sampling, speculative
decoding …; a missing setting as its default; a configuration without a partner names the
settings that differ from the same workload in the other file), by all but the model when the
two documents share no model name; a configuration that appears several times is matched in
order (k-th with k-th).
"""

from __future__ import annotations

import math
from collections import Counter, deque
from typing import Any

from .schema import ConfigurationResult, ResultsDocument
from .values import GiB, is_number, kind, one_line, scaled

__all__ = [
    "COMPARE_METRICS",
    "MAX_THRESHOLD",
    "CompareRow",
    "check_threshold",
    "compare_documents",
]

#: metrics compared (lower is better for all): aggregate statistic, its field, label, scale, unit
COMPARE_METRICS = [
    ("first_token_s", "median", "first token median", 1e3, "ms"),
    ("rest_token_mean_s", "median", "rest tokens median", 1e3, "ms/token"),
]

#: the largest ``threshold`` accepted (10 = 1000 %): beyond it the gate would pass anything
MAX_THRESHOLD = 10.0


def check_threshold(threshold: Any) -> float:
    """``threshold`` (a fraction: 0.05 = 5 %) if it is a finite number in
    ``[0, MAX_THRESHOLD]``, else ``ValueError``: NaN or infinity would switch the gate off.

    >>> check_threshold(0.05)
    0.05
    >>> check_threshold(float("nan"))
    Traceback (most recent call last):
    ...
    ValueError: threshold nan: expected a finite number between 0 and 10 (0% to 1000%)
    """
    if not is_number(threshold) or not 0 <= threshold <= MAX_THRESHOLD:  # NaN fails both
        raise ValueError(
            f"threshold {threshold!r}: expected a finite number between 0 and "
            f"{MAX_THRESHOLD:g} (0% to {MAX_THRESHOLD:.0%})"
        )
    return float(threshold)


class CompareRow:
    """One configuration compared: old and new values per metric (ms, ms/token, GiB), their
    ratio (new / old), the metrics whose ratio is over ``1 + threshold`` (``regressed``), why the
    row could not be (fully) compared (``problem``), and whether the row fails the gate
    (``fails``: a regression, or something that could not be compared: the gate fails closed)."""

    def __init__(self, key: str, label: str) -> None:
        self.key = key
        self.label = label
        self.values: dict[str, tuple[float | None, float | None]] = {}
        self.problem: str | None = None
        self.regressed: list[str] = []
        self.fails = False
        #: at least one metric was compared (a ratio of two usable numbers)
        self.compared = False

    def fail(self, problem: str) -> None:
        self.problem = problem if not self.problem else f"{self.problem}; {problem}"
        self.fails = True

    def ratio(self, metric: str) -> float | None:
        old, new = self.values.get(metric, (None, None))
        if unusable(old, "OLD") or unusable(new, "NEW"):
            return None
        return new / old  # type: ignore[operator]


def unusable(value: Any, side: str) -> str | None:
    """Why ``value`` cannot enter a ratio (``None`` when it can): a positive finite number."""
    if value is None:
        return f"{side} missing"
    if not is_number(value):
        return f"{side} is not a number ({kind(value)})"
    if math.isnan(value):
        return f"{side} is NaN"
    if math.isinf(value):
        return f"{side} is infinite"
    if value < 0:
        return f"{side} is negative ({value:g})"
    if value == 0:
        return f"{side} is 0"
    return None


def _value(entry: ConfigurationResult, name: str, stat: str) -> Any:
    stats = entry.aggregates.statistic(name) if entry.aggregates is not None else None
    return getattr(stats, stat) if stats is not None else None


def _single_token(entry: ConfigurationResult) -> bool:
    """The configuration generates one token per sequence: no "rest tokens" to time."""
    new_tokens = entry.aggregates.new_tokens if entry.aggregates is not None else None
    return entry.settings.output_tokens == 1 or new_tokens == 1


def _not_ok(entry: ConfigurationResult) -> str:
    error = f": {one_line(entry.error)}" if entry.error else ""
    return f"{one_line(entry.status, 40)}{error}"


class _Matcher:
    """Labels and queues of NEW's configurations by match key."""

    def __init__(self, old: ResultsDocument, new: ResultsDocument) -> None:
        models = [{str(e.settings.model) for e in d.configurations} for d in (old, new)]
        self.with_model = bool(models[0] & models[1])
        self.pending: dict[str, deque[ConfigurationResult]] = {}
        for e in new.configurations:
            self.pending.setdefault(self.key(e), deque()).append(e)
        self.seen: Counter[str] = Counter()

    def key(self, entry: ConfigurationResult) -> str:
        return entry.settings.match_key(self.with_model)

    def row(self, entry: ConfigurationResult, key: str) -> CompareRow:
        label = entry.label if entry.label is not None else entry.id
        label = one_line(key if label is None else label)
        self.seen[key] += 1
        n = self.seen[key]
        return CompareRow(key, label if n == 1 else f"{label} #{n}")

    def take(self, key: str) -> ConfigurationResult | None:
        queue = self.pending.get(key)
        return queue.popleft() if queue else None


def _compare_pair(
    row: CompareRow, o: ConfigurationResult, n: ConfigurationResult, threshold: float
) -> None:
    """Fill ``row`` with the metrics of two configurations that are both ``ok``."""
    missing = [side for side, e in (("OLD", o), ("NEW", n)) if e.aggregates is None]
    if missing:
        row.fail(" and ".join(missing) + " has status ok but no aggregates: cannot compare")
        return
    for name, stat, label, scale, _unit in COMPARE_METRICS:
        ov, nv = _value(o, name, stat), _value(n, name, stat)
        row.values[label] = (scaled(ov, scale), scaled(nv, scale))
        if (
            ov is None
            and nv is None
            and name == "rest_token_mean_s"
            and _single_token(o)
            and _single_token(n)
        ):
            continue  # one generated token: nothing after the first to time, on both sides
        why = unusable(ov, "OLD") or unusable(nv, "NEW")
        if why:
            row.fail(f"cannot compare {label}: {why}")
            continue
        row.compared = True
        ratio = nv / ov
        if not math.isfinite(ratio) or ratio > 1.0 + threshold:
            row.regressed.append(label)
            row.fails = True
    po, pn = o.aggregates.peak_memory_bytes, n.aggregates.peak_memory_bytes  # type: ignore[union-attr]
    row.values["peak memory"] = (scaled(po, 1 / GiB), scaled(pn, 1 / GiB))


def _differing(entry: ConfigurationResult, other: ResultsDocument, with_model: bool) -> str:
    """When ``other`` holds the same workload with other generation settings (``further``):
    which settings differ, so that a setting present in one file only is shown."""
    import dataclasses

    def base(e: ConfigurationResult) -> str:
        return dataclasses.replace(e.settings, further={}).match_key(with_model)

    mine = entry.settings.further
    for candidate in other.configurations:
        if base(candidate) != base(entry):
            continue
        theirs = candidate.settings.further
        keys = sorted(set(mine) | set(theirs))
        diff = [
            f"{k} {mine.get(k, '(default)')} vs {theirs.get(k, '(default)')}"
            for k in keys
            if mine.get(k) != theirs.get(k)
        ]
        if diff:
            return f" (other settings there: {'; '.join(diff)})"
    return ""


def compare_documents(
    old: ResultsDocument, new: ResultsDocument, threshold: float
) -> tuple[list[CompareRow], bool]:
    """Compare the configurations of two results documents (see the module docstring for the
    matching). Returns the rows and whether the gate fails, closed: a metric slower than
    ``threshold`` (0.05 = 5 %); a configuration missing, failed or interrupted in NEW (or failed
    in NEW with no baseline); a metric that cannot be compared on either side (missing, not a
    number, NaN, infinite, negative or 0; ``status`` ``ok`` without ``aggregates``); or nothing
    compared at all. ``ValueError`` for a threshold that is not finite in
    ``[0, MAX_THRESHOLD]``."""
    threshold = check_threshold(threshold)
    match = _Matcher(old, new)
    rows: list[CompareRow] = []
    for o in old.configurations:
        key = match.key(o)
        row = match.row(o, key)
        rows.append(row)
        n = match.take(key)
        if o.status != "ok":
            row.problem = f"no baseline (OLD {one_line(o.status, 40)})"
        elif n is None:
            row.fail("missing in NEW" + _differing(o, new, match.with_model))
        elif n.status != "ok":
            row.fail(f"NEW {_not_ok(n)}")
        else:
            _compare_pair(row, o, n, threshold)
    for key, queue in match.pending.items():
        for n in queue:
            row = match.row(n, key)
            if n.status == "ok":
                row.problem = "new in NEW (no baseline)" + _differing(n, old, match.with_model)
            else:
                row.fail(f"new in NEW and {_not_ok(n)}")
            rows.append(row)
    if not any(row.compared for row in rows):
        row = CompareRow("", "(nothing compared)")
        row.fail("no configuration of OLD could be compared with NEW")
        rows.append(row)
    return rows, any(row.fails for row in rows)
