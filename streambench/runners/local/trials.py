"""The warm-ups and trials of one configuration of ``streambench run`` (a trial: one
``generate()``, or one pass over a prompt file): how many (a fixed count, or ``--trials auto``
until the answer is clear), what else used the machine around each trial
(:mod:`streambench.runners.local.interference`), and a pause after every trial so that
``--interleave`` can
run the trials of a sweep's configurations in rotation.

:func:`run_trials` is a generator: it yields after each trial (and once after the warm-ups and
the first trial). A caller that wants the configuration whole iterates it to the end; the
interleaving runner advances several of them in turn (A1 B1 C1 A2 B2 C2 …).

``--trials auto`` (:class:`TrialRule`): after each trial from the 6th on (the fewest for a 95 %
interval, :func:`streambench.intervals.min_trials`), the 95 % intervals of the median first-token
time and of the median time per later token (:func:`streambench.intervals.median_ci`) are
checked; the configuration stops once both are within ±``target_ci`` of their median
(``stopped: "target"``), at ``max_trials`` (``"max_trials"``) or once its trials took
``max_time_s`` (``"max_time"``, a hard limit even below 6 trials).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ...intervals import median_ci, min_trials

__all__ = [
    "DEFAULT_MAX_TRIALS",
    "DEFAULT_TARGET_CI",
    "TrialLog",
    "TrialMeans",
    "TrialRule",
    "record_load",
    "run_trials",
    "stop_reason",
]

DEFAULT_TARGET_CI = 0.05
DEFAULT_MAX_TRIALS = 30
#: the per-run statistics whose medians ``--trials auto`` waits for
AUTO_METRICS = ("first_token_s", "rest_token_mean_s")


@dataclass(frozen=True)
class TrialRule:
    """How many trials: ``trials`` exactly, or with ``auto`` up to ``trials`` (``--max-trials``)
    until the 95 % intervals are within ±``target_ci`` (a fraction) of the medians, or the trials
    took ``max_time_s``."""

    trials: int
    auto: bool = False
    target_ci: float = DEFAULT_TARGET_CI
    max_time_s: float | None = None

    @classmethod
    def of(cls, settings: Any) -> TrialRule:
        return cls(
            settings.trials,
            bool(getattr(settings, "trials_auto", False)),
            float(getattr(settings, "target_ci", DEFAULT_TARGET_CI)),
            getattr(settings, "max_time_s", None),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "target_ci": self.target_ci,
            "max_trials": self.trials,
            "max_time_s": self.max_time_s,
        }


@dataclass
class TrialLog:
    """What :func:`run_trials` saw besides the timings: per trial, the machine's load
    (:class:`~streambench.runners.local.interference.TrialLoad`) and the wall-clock start (Unix
    time)."""

    loads: list[Any] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)


def half_widths(runs: list[Any]) -> dict[str, float | None]:
    """Per :data:`AUTO_METRICS`, the 95 % interval's half-width as a fraction of the median
    (``None``: too few trials, or the statistic is missing, e.g. one new token)."""
    out: dict[str, float | None] = {}
    for key in AUTO_METRICS:
        values = [getattr(r, key) for r in runs]
        if any(v is None for v in values) or not values:
            out[key] = None
            continue
        ci = median_ci(values)
        if ci is None:
            out[key] = None
            continue
        s = sorted(values)
        n = len(s)
        med = s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2
        out[key] = ci.half_width_rel(med)
    return out


def stop_reason(rule: TrialRule, runs: list[Any], elapsed_s: float) -> str | None:
    """Why to stop after these measured ``runs`` (objects with the :data:`AUTO_METRICS`
    attributes) and ``elapsed_s`` of trials, or ``None`` to go on."""
    n = len(runs)
    if not rule.auto:
        return "trials" if n >= rule.trials else None
    if n >= min_trials():
        widths = half_widths(runs)
        present = [w for k, w in widths.items() if w is not None or k == "first_token_s"]
        if present and all(w is not None and w <= rule.target_ci for w in present):
            return "target"
    if n >= rule.trials:
        return "max_trials"
    if rule.max_time_s is not None and elapsed_s >= rule.max_time_s:
        return "max_time"
    return None


@dataclass(frozen=True)
class TrialMeans:
    """A trial of several ``generate()`` calls (one pass over a prompt file) as the stop rule
    sees it: per :data:`AUTO_METRICS`, the mean over the trial's runs (s; ``None`` when a run
    lacks it). Prompts differ in length within a pass but not between passes, so the spread
    between trials is the measurement's own."""

    first_token_s: float | None
    rest_token_mean_s: float | None

    @classmethod
    def of(cls, runs: list[Any]) -> Any:
        """The run itself for a trial of one run, else the means of its runs."""
        if len(runs) == 1:
            return runs[0]
        means = []
        for key in AUTO_METRICS:
            values = [getattr(r, key) for r in runs]
            ok = bool(values) and all(v is not None for v in values)
            means.append(sum(values) / len(values) if ok else None)
        return cls(*means)


def run_trials(
    run_pass: Callable[[bool, int], list[Any]],
    result: Any,
    settings: Any,
    print_fn: Callable[[str], None],
    before_trials: Callable[[], None] = lambda: None,
    log: TrialLog | None = None,
) -> Iterator[None]:
    """The warm-ups, ``before_trials()``, then the trials; ``run_pass(is_warmup, i)`` runs
    warm-up or trial ``i`` (from 0: one or more ``generate()`` calls) and returns its runs.
    Yields after each trial. Records ``stopped`` (and ``adaptive`` with ``--trials auto``) in
    ``result.extra`` (a :class:`~streambench.results.schema.ConfigurationResult`); ``log``
    collects each trial's machine load and start (written into the result by
    :func:`record_load`)."""
    import torch

    from .interference import Snapshot, TrialLoad

    rule = TrialRule.of(settings)
    log = log if log is not None else TrialLog()
    loads: list[TrialLoad] = log.loads
    label = str(result.label)
    with torch.inference_mode():
        for i in range(settings.warmup):
            _say(settings, print_fn, label, f"warm-up {i + 1}/{settings.warmup}")
            run_pass(True, i)
    before_trials()
    t0 = time.perf_counter()
    views: list[Any] = []
    reason = None
    while reason is None:
        n = len(loads)
        of = f"{n + 1}/{settings.trials}" + (" (auto)" if rule.auto else "")
        _say(settings, print_fn, label, f"trial {of}")
        log.starts.append(time.time())
        with torch.inference_mode():
            before = Snapshot.take()
            runs = run_pass(False, n)
            loads.append(TrialLoad.between(before, Snapshot.take()))
        views.append(TrialMeans.of(runs))
        reason = stop_reason(rule, views, time.perf_counter() - t0)
        if reason is None:
            yield
    result.extra["stopped"] = reason
    if rule.auto:
        result.extra["adaptive"] = {
            **rule.to_dict(),
            "trials_run": len(views),
            "half_width_rel": {k: _round(v) for k, v in half_widths(views).items()},
        }
    yield


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 5)


def _say(settings: Any, print_fn: Callable[[str], None], label: str, what: str) -> None:
    if settings.verbose:
        print_fn(f"-- {label}: {what}")


def record_load(result: Any, settings: Any, log: TrialLog) -> list[str]:
    """Move the trials' machine loads into ``interference`` of ``result.extra`` (a
    :class:`~streambench.results.schema.ConfigurationResult`) and add the warnings (busy
    machine, outlier trials) to its ``warnings``; returns the new warnings."""
    from .interference import DEFAULT_BUSY_THRESHOLD, assess

    loads, starts = log.loads, log.starts
    if not loads or result.status != "ok":
        return []
    threshold = getattr(settings, "busy_threshold", DEFAULT_BUSY_THRESHOLD)
    record, warnings = assess(loads, [t.to_dict() for t in result.trials], threshold)
    if warnings and int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 and record["busy_trials"]:
        # under torchrun / deepspeed the other ranks are other processes of this machine
        warnings[0] += " (the other ranks of this launch count as other processes)"
    record["trial_started_at"] = [round(t, 6) for t in starts]
    result.extra["interference"] = record
    if warnings:
        result.extra.setdefault("warnings", []).extend(warnings)
    return warnings


def trial_settings(settings: Any) -> dict[str, Any]:
    """What the results' ``settings`` record of the trials: ``busy_threshold``; with ``--trials
    auto`` ``trials: "auto"`` and ``trials_auto``; with ``--interleave`` ``interleave: true``."""
    out: dict[str, Any] = {"busy_threshold": settings.busy_threshold}
    if settings.trials_auto:
        out["trials"] = "auto"
        out["trials_auto"] = TrialRule.of(settings).to_dict()
    if settings.interleave:
        out["interleave"] = True
    return out


def trials_text(settings: Any) -> str:
    """``"3 trials"``, or with ``--trials auto`` ``"auto: 6–30 trials"`` (the run's header)."""
    if not getattr(settings, "trials_auto", False):
        return f"{settings.trials} trials"
    return f"auto: {min_trials()}–{settings.trials} trials"


def settings_from(m: dict[str, Any], workload: Any) -> dict[str, Any]:
    """The trial-rule fields of :class:`~streambench.spec.run.SweepSettings` from the merged
    options (``m``: :func:`streambench.spec.run._merge_config`; ``workload``: its
    :class:`~streambench.workloads.WorkloadSpec` or ``None``): ``trials_auto``, ``target_ci``,
    ``max_time_s``, ``busy_threshold``, ``interleave``, and ``trials`` (``--max-trials``) with
    ``--trials auto``; :class:`~streambench.errors.UsageError` for a combination that cannot
    work."""
    from ...errors import UsageError
    from .interference import DEFAULT_BUSY_THRESHOLD

    auto = m.get("trials") == "auto"
    out: dict[str, Any] = {"trials_auto": auto}
    if auto:
        out["trials"] = m.get("max_trials", DEFAULT_MAX_TRIALS)
        if out["trials"] < min_trials():
            raise UsageError(
                f"--max-trials {out['trials']}: --trials auto needs at least {min_trials()} "
                "trials (the fewest for a 95% interval of the median)"
            )
    else:
        given = [k for k in ("target_ci", "max_trials", "max_time") if k in m]
        if given:
            name = "--" + given[0].replace("_", "-")
            raise UsageError(f"{name} works with --trials auto only: add --trials auto")
    out["target_ci"] = m.get("target_ci", DEFAULT_TARGET_CI)
    out["max_time_s"] = m.get("max_time")
    out["busy_threshold"] = m.get("busy_threshold", DEFAULT_BUSY_THRESHOLD)
    out["interleave"] = bool(m.get("interleave", False))
    return out
