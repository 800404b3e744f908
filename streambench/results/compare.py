"""``streambench compare``: match the configurations of two results documents and gate on
regressions. The gate fails closed: whatever cannot be compared fails it.

Configurations are matched by their settings (:meth:`ConfigurationSettings.match_key`: model,
input/output tokens, batch size, beams, a served model's concurrency, request rate and chat, and
the generation settings of ``further``: attention, cache, compile, sampling, speculative
decoding …; a missing setting as its default; a configuration without a partner names the
settings that differ from the same workload in the other file), by all but the model when the
two documents share no model name; a configuration that appears several times is matched in
order (k-th with k-th). ``ignore`` names settings to leave out of the matching (an intended A/B:
``attn_implementation``, ``dtype``, ``engine`` …): such pairs name what differs. A pair that
differs in how it ran (``dtype``, ``low_bit``, ``device``) without ``ignore`` naming it is refused.

Each metric gets the ratio NEW/OLD of the medians, an interval for it over the trials and a
verdict (:mod:`.verdicts`): *slower* fails the gate, *unclear* passes with a warning (fails with
``strict``), *same* and *faster* pass. A configuration with ``warnings`` on either side (another
process busy beside it, …) never gets *slower* or *faster*: *unclear*, with the warning named.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter, deque
from typing import Any

from ..stats import percentile
from .schema import SETTINGS_KEYS, ConfigurationResult, ResultsDocument
from .trial_intervals import trial_values
from .values import GiB, is_number, kind, one_line, scaled
from .verdicts import MAX_SPREAD, RatioInterval, compare_trials, spread

__all__ = [
    "COMPARE_METRICS",
    "MAX_THRESHOLD",
    "SETUP_KEYS",
    "CompareRow",
    "check_threshold",
    "compare_documents",
    "interval_text",
    "known_settings",
    "verdict_text",
]

#: how a configuration ran that changes its numbers: a pair that differs here is refused unless
#: ``ignore`` names the setting (``device`` may differ from a served model's ``endpoint``)
SETUP_KEYS = ("dtype", "low_bit", "device")

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
    """One configuration compared: old and new medians per metric (ms, ms/token, GiB), their
    ratio (new / old), the interval and verdict of each metric (``intervals``), the metrics
    found slower (``regressed``), ignored settings that differ (``differs``, e.g.
    ``"attn_implementation eager → sdpa"``), why a would-be verdict became *unclear* (``noisy``),
    why the row could not be (fully) compared (``problem``), the trials per side (``n``), and
    whether the row fails the gate (``fails``: slower, or something that could not be compared:
    the gate fails closed; *unclear* too with ``strict``)."""

    def __init__(self, key: str, label: str) -> None:
        self.key = key
        self.label = label
        self.values: dict[str, tuple[float | None, float | None]] = {}
        self.intervals: dict[str, RatioInterval] = {}
        self.problem: str | None = None
        self.regressed: list[str] = []
        self.differs: list[str] = []
        self.noisy: str | None = None
        self.n: tuple[int, int] | None = None
        self.fails = False
        #: at least one metric was compared (a ratio of two usable numbers)
        self.compared = False
        #: what worsened beyond ``--max-quality-drop`` (:mod:`.compare_quality`)
        self.worse: list[str] = []

    def fail(self, problem: str) -> None:
        self.problem = problem if not self.problem else f"{self.problem}; {problem}"
        self.fails = True

    def ratio(self, metric: str) -> float | None:
        old, new = self.values.get(metric, (None, None))
        if unusable(old, "OLD") or unusable(new, "NEW"):
            return None
        return new / old  # type: ignore[operator]

    @property
    def verdict(self) -> str:
        """``slower``, ``unclear``, ``faster``, ``same`` (the worst of its metrics), ``not
        comparable`` (it fails without a slower metric) or ``""`` (nothing compared, no fault)."""
        if self.regressed:
            return "slower"
        if self.worse:
            return "worse quality"
        if self.fails and self.problem:
            return "not comparable"
        found = {iv.verdict for iv in self.intervals.values()}
        for name in ("unclear", "faster", "same"):
            if name in found:
                return name if name != "faster" or found <= {"faster", "same"} else "unclear"
        return ""

    @property
    def settle(self) -> int | None:
        """About how many trials per side would settle an *unclear* row (the most of its
        metrics; ``None``: unknown)."""
        needs = [iv.settle for iv in self.intervals.values() if iv.verdict == "unclear"]
        known = [n for n in needs if n is not None]
        return max(known) if known and len(known) == len(needs) else None


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


def _reduced(entry: ConfigurationResult, ignore: frozenset[str]) -> Any:
    """The settings of ``entry`` with the ``ignore``d ones left out (for matching)."""
    further = {k: v for k, v in entry.settings.further.items() if k not in ignore}
    blank = {k: None for k in SETTINGS_KEYS if k in ignore and k != "model"}
    return dataclasses.replace(entry.settings, further=further, **blank)


class _Matcher:
    """Labels and queues of NEW's configurations by match key."""

    def __init__(
        self, old: ResultsDocument, new: ResultsDocument, ignore: frozenset[str] = frozenset()
    ) -> None:
        models = [{str(e.settings.model) for e in d.configurations} for d in (old, new)]
        self.ignore = ignore
        self.with_model = bool(models[0] & models[1]) and "model" not in ignore
        self.pending: dict[str, deque[ConfigurationResult]] = {}
        for e in new.configurations:
            self.pending.setdefault(self.key(e), deque()).append(e)
        self.seen: Counter[str] = Counter()

    def key(self, entry: ConfigurationResult) -> str:
        return _reduced(entry, self.ignore).match_key(self.with_model)

    def row(self, entry: ConfigurationResult, key: str) -> CompareRow:
        label = entry.label if entry.label is not None else entry.id
        label = one_line(key if label is None else label)
        self.seen[key] += 1
        n = self.seen[key]
        return CompareRow(key, label if n == 1 else f"{label} #{n}")

    def take(self, key: str) -> ConfigurationResult | None:
        queue = self.pending.get(key)
        return queue.popleft() if queue else None


def known_settings(*docs: ResultsDocument) -> set[str]:
    """Every setting name ``ignore`` may name for these documents: the identity's keys, the
    generation settings of ``further`` found in them, and :data:`SETUP_KEYS`."""
    names = set(SETTINGS_KEYS) | set(SETUP_KEYS)
    for doc in docs:
        for e in doc.configurations:
            names |= set(e.settings.further)
    return names


def _setting(entry: ConfigurationResult, name: str) -> Any:
    if name in SETUP_KEYS:
        return getattr(entry.config, name)
    if name in SETTINGS_KEYS:
        value = getattr(entry.settings, name)
        # as match_key: a local generate() is concurrency 1, no beams setting is greedy
        return 1 if name in ("concurrency", "num_beams") and value is None else value
    return entry.settings.further.get(name, "(default)")


def _pair_settings(
    row: CompareRow, o: ConfigurationResult, n: ConfigurationResult, match: _Matcher
) -> None:
    """Name the settings in which a matched pair differs (``row.differs``), and refuse the pair
    (``row.fail``) when it differs in how it ran without ``ignore`` naming it."""
    names = [*SETTINGS_KEYS, *sorted(set(o.settings.further) | set(n.settings.further))]
    for name in [*names, *SETUP_KEYS]:
        a, b = _setting(o, name), _setting(n, name)
        if a == b or (name in SETUP_KEYS and (a is None or b is None)):
            continue  # unknown (an older file, a served model's dtype) is not a difference
        text = f"{name} {one_line(a, 40)} → {one_line(b, 40)}"
        served = name == "device" and "endpoint" in (a, b)
        if name in match.ignore or name not in SETUP_KEYS or served:
            row.differs.append(text)  # ignored, the model across files, or local vs served
        else:
            row.fail(
                f"{name} differs ({one_line(a, 40)} in OLD, {one_line(b, 40)} in NEW): not the "
                f"same configuration; add --ignore {name} to compare them anyway"
            )


def _warning(entry: ConfigurationResult) -> str | None:
    """The configuration's busy-machine warning, if its trials ran beside other load: the first
    of its ``warnings`` when ``interference.busy_trials`` names any trial, or, in a file
    without ``interference``, the first warning. An outlier trial alone is no reason: the
    distribution-free interval already allows for it (with 3 trials a robust z-score names one
    in most runs, and the gate would never say *slower*)."""
    warnings = entry.extra.get("warnings")
    if not (isinstance(warnings, list) and warnings):
        return None
    record = entry.extra.get("interference")
    if isinstance(record, dict):
        if not record.get("busy_trials"):
            return None
        busy = [w for w in warnings if isinstance(w, str) and "busy" in w]
        return one_line((busy or warnings)[0], 120)
    return one_line(warnings[0], 120)


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


def _trials_of(entry: ConfigurationResult, name: str, side: str) -> tuple[list[float], str | None]:
    """The per-trial values of ``name`` and, when they cannot be used, why: a value that is not
    a positive finite number, or values whose median is not the file's median (an edited file)."""
    values = trial_values(entry.trials, name)
    for i, value in enumerate(values):
        why = unusable(value, f"{side} trial {i + 1}")
        if why:
            return [], why
    stats = entry.aggregates.statistic(name) if entry.aggregates is not None else None
    if values and stats is not None:
        median = percentile(sorted(values), 50)
        if stats.n != len(values) or not math.isclose(median, stats.median, rel_tol=1e-9):
            return [], (
                f"{side}'s median is not the median of its {len(values)} trial(s) "
                "(an edited or damaged file)"
            )
    return values, None


def _compare_pair(
    row: CompareRow, o: ConfigurationResult, n: ConfigurationResult, threshold: float
) -> None:
    """Fill ``row`` with the metrics of two configurations that are both ``ok``."""
    missing = [side for side, e in (("OLD", o), ("NEW", n)) if e.aggregates is None]
    if missing:
        row.fail(" and ".join(missing) + " has status ok but no aggregates: cannot compare")
        return
    row.n = (len(o.trials), len(n.trials))
    busy = [f"{side}: {w}" for side, w in (("OLD", _warning(o)), ("NEW", _warning(n))) if w]
    unstable: dict[str, list[str]] = {}
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
        to, why_o = _trials_of(o, name, "OLD") if not why else ([], None)
        tn, why_n = _trials_of(n, name, "NEW") if not why else ([], None)
        why = why or why_o or why_n
        if why:
            row.fail(f"cannot compare {label}: {why}")
            continue
        row.compared = True
        unstable[label] = _unstable(label, scale, _unit, (("OLD", to), ("NEW", tn)))
        row.intervals[label] = compare_trials(to, tn, nv / ov, threshold)
    for label, iv in list(row.intervals.items()):
        why = busy + unstable.get(label, [])  # a metric's own spread spoils only that metric
        if why and iv.verdict in ("slower", "faster"):
            more = f"; {len(why) - 2} more" if len(why) > 2 else ""
            note = f"{iv.verdict} only beside other load ({'; '.join(why[:2])}{more})"
            row.noisy = f"{row.noisy}; {note}" if row.noisy else note
            iv = row.intervals[label] = dataclasses.replace(iv, verdict="unclear", settle=None)
        if iv.verdict == "slower":
            row.regressed.append(label)
            row.fails = True
    po, pn = o.aggregates.peak_memory_bytes, n.aggregates.peak_memory_bytes  # type: ignore[union-attr]
    row.values["peak memory"] = (scaled(po, 1 / GiB), scaled(pn, 1 / GiB))


def _unstable(label: str, scale: float, unit: str, sides: Any) -> list[str]:
    """Why a side's trials of a metric look measured beside other load: their interquartile range
    is over :data:`~.verdicts.MAX_SPREAD` of their median (e.g. ``"OLD's first token median
    trials vary from 6.0 to 101.7 ms"``)."""
    out = []
    for side, values in sides:
        s = spread(values)
        if s is not None and s > MAX_SPREAD:
            low, high = min(values) * scale, max(values) * scale
            out.append(
                f"{side}'s {label} trials vary from {low:.3g} to {high:.3g} {unit} "
                f"(interquartile range {s:.0%} of the median)"
            )
    return out


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
            names = ",".join(k for k in keys if mine.get(k) != theirs.get(k))
            return f" (other settings there: {'; '.join(diff)}; --ignore {names} pairs them)"
    return ""


def compare_documents(
    old: ResultsDocument,
    new: ResultsDocument,
    threshold: float,
    ignore: frozenset[str] | set[str] | tuple[str, ...] = (),
    strict: bool = False,
    max_quality_drop: float | None = None,
) -> tuple[list[CompareRow], bool]:
    """Compare the configurations of two results documents (see the module docstring for the
    matching and the verdicts). Returns the rows and whether the gate fails, closed: a metric
    *slower* beyond ``threshold`` (0.05 = 5 %; the whole interval of the ratio above
    ``1 + threshold``); *unclear* with ``strict``; a pair that differs in a setting ``ignore``
    does not name; a configuration missing, failed or interrupted in NEW (or failed in NEW with
    no baseline); a metric that cannot be compared on either side (missing, not a number, NaN,
    infinite, negative or 0, in the aggregates or a trial; trials that do not give the median;
    ``status`` ``ok`` without ``aggregates``); or nothing compared at all. ``ValueError`` for a
    threshold that is not finite in ``[0, MAX_THRESHOLD]``. Quality (``--quality``) is shown
    beside speed; ``max_quality_drop`` gates on it (:mod:`.compare_quality`)."""
    from .compare_quality import compare_quality

    threshold = check_threshold(threshold)
    match = _Matcher(old, new, frozenset(ignore))
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
            _pair_settings(row, o, n, match)
            if not row.fails:
                _compare_pair(row, o, n, threshold)
                compare_quality(row, o, n, max_quality_drop)
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
    if strict:
        for row in rows:
            row.fails = row.fails or row.verdict == "unclear"
    return rows, any(row.fails for row in rows)


def interval_text(row: CompareRow, metric: str) -> str:
    """``"1.032× [0.981, 1.090]"`` (the coverage added when below 95 %, e.g. ``90%`` with 3
    trials per side), ``"1.032× [no interval]"`` with too few trials, ``""`` without a ratio."""
    r = row.ratio(metric)
    if r is None:
        return ""
    text = f"{r:.3f}×"
    iv = row.intervals.get(metric)
    if iv is None:
        return text
    if iv.low is None or iv.high is None:
        return f"{text} [no interval]"
    cover = f" {iv.coverage:.0%}" if iv.coverage is not None and iv.coverage < 0.9495 else ""
    return f"{text} [{iv.low:.3f}, {iv.high:.3f}]{cover}"


def verdict_text(row: CompareRow) -> str:
    """The row's verdict in words: ``slower``, ``faster``, ``same``, ``unclear (~12 trials per
    side would settle it)``, or the problem; plain text (Markdown and the terminal)."""
    verdict = row.verdict
    if verdict == "unclear":
        settle = row.settle
        if settle is not None and settle > 1000:
            verdict += (
                " (over 1000 trials per side would be needed: the ratio is too close to the "
                "threshold for the spread of the trials)"
            )
        elif settle is not None:
            verdict += f" (~{settle} trials per side would settle it)"
        if row.noisy:
            verdict += f"; {row.noisy}"
    if row.worse:
        verdict += ": " + "; ".join(row.worse)
    if row.problem:
        return f"{verdict}; {row.problem}" if verdict not in ("", "not comparable") else row.problem
    return verdict
