"""Energy per generation phase (prefill, decode per token) from a trace: the energy counter
interpolated at the phase boundaries, or power integrated over time; pooled over trials when one
phase alone is shorter than the resolution. See :mod:`streambench.telemetry`."""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Optional, Union

from .sampler import Sample, Trace
from .sources import _WHAT, ENERGY, POWER, UTILIZATION, _ms

# ----------------------------------------------------------------------------------- energy

Samples = Union[Trace, Sequence[Sample], Sequence[tuple[float, Mapping[str, Any]]]]


def _series(samples: Samples, key: str) -> list[tuple[float, float]]:
    """``(t, value)`` of the samples that have a finite number under ``key``, sorted by ``t``."""
    out = []
    for t, readings in samples:
        value = readings.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out.append((float(t), float(value)))
    out.sort()
    return out


def _interp(points: list[tuple[float, float]], times: list[float], t: float) -> float:
    """Linear interpolation of ``points`` at ``t`` (``points[0] <= t <= points[-1]``)."""
    i = bisect.bisect_right(times, t)
    if i >= len(points):
        return points[-1][1]
    if i == 0:
        return points[0][1]
    (t0, v0), (t1, v1) = points[i - 1], points[i]
    if t1 == t0:
        return v1
    return v0 + (v1 - v0) * (t - t0) / (t1 - t0)


def _integral(points: list[tuple[float, float]], times: list[float], a: float, b: float) -> float:
    """Integral over ``[a, b]`` of the piecewise-linear curve through ``points`` (trapezoids)."""
    knots = [a] + [t for t in times if a < t < b] + [b]
    values = [_interp(points, times, t) for t in knots]
    return math.fsum(
        (knots[i + 1] - knots[i]) * (values[i] + values[i + 1]) / 2 for i in range(len(knots) - 1)
    )


def _spacing(times: list[float], a: float, b: float) -> float:
    """The longest gap between consecutive samples among those that bracket or fall in
    ``[a, b]``: an interpolated value inside such a gap only knows the gap's average."""
    lo = max(bisect.bisect_right(times, a) - 1, 0)
    hi = min(bisect.bisect_left(times, b), len(times) - 1)
    return max((times[i + 1] - times[i] for i in range(lo, hi)), default=0.0)


def _measure(
    points: list[tuple[float, float]],
    a: float,
    b: float,
    *,
    phase: str,
    key: str,
    resolution: Optional[float],
    counter: bool,
) -> tuple[Optional[float], Optional[str]]:
    """The counter's change over ``[a, b]`` (``counter=True``) or the gauge's integral over it;
    or ``None`` and why."""
    duration = b - a
    if len(points) < 2:
        return None, f"{phase}: fewer than 2 samples with {key}"
    times = [t for t, _ in points]
    if a < times[0] or b > times[-1]:
        return None, (
            f"{phase}: the samples ({times[0]:.3f}..{times[-1]:.3f} s) do not cover "
            f"{a:.3f}..{b:.3f} s (start the sampler before the prompt, stop it after the last "
            "token)"
        )
    if duration <= 0:
        return None, f"{phase}: no time between its boundaries"
    if resolution is not None and duration < resolution:
        return None, (
            f"{phase} {_ms(duration)} is shorter than the {_WHAT.get(key, key)} "
            f"~{_ms(resolution)} resolution"
        )
    gap = _spacing(times, a, b)
    if duration < gap:
        return None, f"{phase} {_ms(duration)} is shorter than the {_ms(gap)} between samples"
    if counter:
        return _interp(points, times, b) - _interp(points, times, a), None
    return _integral(points, times, a, b), None


@dataclass(frozen=True)
class PhaseEnergy:
    """Energy and mean readings of one source over the prefill and decode phases.

    Attributes (``None`` where not measurable; :attr:`reasons` says why, keyed by field name):
        source: the source's name (``"nvml:0"``, ``"rapl"``).
        method: ``"energy counter"`` (the counter interpolated linearly at the phase boundaries),
            ``"power integration"`` (power readings integrated over time), or for
            :func:`aggregate_over_trials` one of those followed by how trials were pooled;
            ``None`` when neither exists.
        resolution_s: the stated time resolution of the quantity ``method`` used, in seconds.
        trials: how many trials the numbers pool (1 for :func:`energy_per_phase`).
        prefill_s: prefill duration in seconds (``t_first - t_prompt``; mean per trial).
        prefill_energy_j: energy the source measured over prefill, joules (mean per trial).
        prefill_mean_power_w: ``prefill_energy_j / prefill_s``, watts.
        prefill_mean_utilization_pct: time-weighted mean utilization over prefill, percent.
        decode_s: decode duration in seconds (``t_last - t_first``; mean per trial).
        decode_tokens: tokens decode produced (``new_tokens - 1``; total over trials).
        decode_energy_j: energy over decode, joules (mean per trial).
        decode_energy_j_per_token: decode energy per decode token, joules per token.
        decode_mean_power_w: ``decode_energy_j / decode_s``, watts.
        decode_mean_utilization_pct: time-weighted mean utilization over decode, percent.
        prefill_energy_j_stderr: standard error of ``prefill_energy_j`` when it was estimated by
            least squares (:func:`aggregate_over_trials`), else ``None``.
        note: how the numbers were obtained, in words.
    """

    source: str
    method: Optional[str]
    resolution_s: Optional[float]
    trials: int
    prefill_s: float
    prefill_energy_j: Optional[float]
    prefill_mean_power_w: Optional[float]
    prefill_mean_utilization_pct: Optional[float]
    decode_s: float
    decode_tokens: int
    decode_energy_j: Optional[float]
    decode_energy_j_per_token: Optional[float]
    decode_mean_power_w: Optional[float]
    decode_mean_utilization_pct: Optional[float]
    reasons: Mapping[str, str] = field(default_factory=dict)
    prefill_energy_j_stderr: Optional[float] = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, units in the key names; ``reasons`` as a plain dict."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["reasons"] = dict(self.reasons)
        return out


def _resolution(samples: Samples, override: Optional[Mapping[str, float]]) -> Mapping[str, float]:
    if override is not None:
        return override
    return getattr(samples, "resolution_s", {}) or {}


def _pick_method(
    samples: Samples, res: Mapping[str, float]
) -> tuple[Optional[str], str, list[tuple[float, float]], Optional[float]]:
    energy = _series(samples, ENERGY)
    if len(energy) >= 2:
        return "energy counter", ENERGY, energy, res.get(ENERGY)
    power = _series(samples, POWER)
    if len(power) >= 2:
        return "power integration", POWER, power, res.get(POWER)
    return None, "", [], None


def energy_per_phase(
    samples: Samples,
    t_prompt: float,
    t_first: float,
    t_last: float,
    new_tokens: int,
    *,
    resolution_s: Optional[Mapping[str, float]] = None,
    source: Optional[str] = None,
) -> PhaseEnergy:
    """Energy of one run's prefill (``t_prompt`` → ``t_first``) and decode (``t_first`` →
    ``t_last``, ``new_tokens - 1`` tokens), from one source's samples (a :class:`Trace`, or
    ``(t, readings)`` pairs with ``resolution_s`` given). Times are ``perf_counter()`` seconds.

    A phase shorter than the stated resolution of the quantity used, or than the spacing of the
    samples around it, gives ``None`` with a reason (e.g. ``"prefill 12 ms is shorter than the
    energy counter's ~50 ms resolution"``); see :func:`aggregate_over_trials` for short phases.
    """
    res = _resolution(samples, resolution_s)
    name = source or getattr(samples, "source", "") or "unknown"
    method, key, points, resolution = _pick_method(samples, res)
    reasons: dict[str, str] = {}
    prefill_s, decode_s = t_first - t_prompt, t_last - t_first
    decode_tokens = max(int(new_tokens) - 1, 0)
    spans = {"prefill": (t_prompt, t_first), "decode": (t_first, t_last)}
    values = _phase_energies(method, key, points, resolution, spans, reasons)
    decode_j = values["decode"]
    per_token = _per_token(decode_j, decode_tokens, reasons)
    mean_util = _mean_utilization(samples, res, spans, reasons)
    prefill_j = values["prefill"]
    return PhaseEnergy(
        source=name,
        method=method,
        resolution_s=resolution,
        trials=1,
        prefill_s=prefill_s,
        prefill_energy_j=prefill_j,
        prefill_mean_power_w=None if prefill_j is None else prefill_j / prefill_s,
        prefill_mean_utilization_pct=mean_util["prefill"],
        decode_s=decode_s,
        decode_tokens=decode_tokens,
        decode_energy_j=decode_j,
        decode_energy_j_per_token=per_token,
        decode_mean_power_w=None if decode_j is None else decode_j / decode_s,
        decode_mean_utilization_pct=mean_util["decode"],
        reasons=reasons,
        note=f"{method} over one run" if method else "",
    )


def _phase_energies(
    method: Optional[str],
    key: str,
    points: list[tuple[float, float]],
    resolution: Optional[float],
    spans: Mapping[str, tuple[float, float]],
    reasons: dict[str, str],
) -> dict[str, Optional[float]]:
    """Joules of each phase (``spans``: phase -> (start, end)) by ``method``; ``None`` with a
    reason in ``reasons`` where not measurable."""
    values: dict[str, Optional[float]] = {}
    for phase, (a, b) in spans.items():
        if method is None:
            values[phase] = None
            reasons[f"{phase}_energy_j"] = "no energy counter and no power readings in the samples"
            continue
        values[phase], why = _measure(
            points, a, b, phase=phase, key=key, resolution=resolution, counter=key == ENERGY
        )
        if why:
            reasons[f"{phase}_energy_j"] = why
    return values


def _mean_utilization(
    samples: Samples,
    res: Mapping[str, float],
    spans: Mapping[str, tuple[float, float]],
    reasons: dict[str, str],
) -> dict[str, Optional[float]]:
    """Time-weighted mean utilization (percent) of each phase; ``None`` with a reason in
    ``reasons`` where not measurable."""
    util = _series(samples, UTILIZATION)
    mean_util: dict[str, Optional[float]] = {}
    for phase, (a, b) in spans.items():
        if not util:
            mean_util[phase] = None
            reasons[f"{phase}_mean_utilization_pct"] = "no utilization readings"
            continue
        integral, why = _measure(
            util, a, b, phase=phase, key=UTILIZATION, resolution=res.get(UTILIZATION), counter=False
        )
        mean_util[phase] = None if integral is None else integral / (b - a)
        if why:
            reasons[f"{phase}_mean_utilization_pct"] = why
    return mean_util


def _per_token(decode_j: Optional[float], decode_tokens: int, reasons: dict[str, str]) -> Any:
    """Joules per decode token from ``decode_j`` joules over ``decode_tokens`` tokens; ``None``
    (with a reason when there are no tokens) otherwise."""
    if decode_j is None:
        return None
    if not decode_tokens:
        reasons["decode_energy_j_per_token"] = "no decode tokens (new_tokens <= 1)"
        return None
    return decode_j / decode_tokens


class TrialPhases(NamedTuple):
    """One trial's boundaries (``perf_counter()`` seconds) and its generated token count."""

    t_prompt: float
    t_first: float
    t_last: float
    new_tokens: int


def _inverse3(m: list[list[float]]) -> Optional[list[list[float]]]:
    """Inverse of the 3x3 matrix ``m``; ``None`` if (near) singular."""
    a, b, c = m[0]
    d, e, f = m[1]
    g, h, i = m[2]
    det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)
    scale = max(abs(x) for row in m for x in row) or 1.0
    if abs(det) <= 1e-12 * scale**3:
        return None
    inv = [
        [e * i - f * h, c * h - b * i, b * f - c * e],
        [f * g - d * i, a * i - c * g, c * d - a * f],
        [d * h - e * g, b * g - a * h, a * e - b * d],
    ]
    return [[x / det for x in row] for row in inv]


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def aggregate_over_trials(
    samples: Samples,
    trials: Sequence[Union[TrialPhases, tuple[float, float, float, int]]],
    *,
    resolution_s: Optional[Mapping[str, float]] = None,
    source: Optional[str] = None,
) -> PhaseEnergy:
    """Energy per phase pooled over several trials recorded in one trace.

    1. When every trial's phases are resolved alone (:func:`energy_per_phase` gives numbers), the
       energies are summed: ``prefill_energy_j`` = total prefill energy / number of trials,
       ``decode_energy_j_per_token`` = total decode energy / total decode tokens.
    2. Otherwise, with an energy counter, by least squares: the counter's change over each
       sampling interval that touches a trial is modelled as ``P_prefill * (prefill time in it) +
       P_decode * (decode time in it) + P_other * (the rest)``; the three mean powers are fitted
       over all intervals of all trials, and ``prefill_energy_j = P_prefill * mean prefill_s``
       (``prefill_energy_j_stderr`` its standard error). Summing the interpolated energies of
       phases shorter than the sampling interval would not be honest — linear interpolation
       charges such a phase the *interval's* mean power, whatever else ran in it, every trial
       alike, so the error does not average out — whereas the fit uses only exact counter
       differences and exact phase times. It assumes each phase's power is the same in every
       trial, and needs the phases to fall at varied positions within the sampling intervals
       (trials not locked to the sampling period); it ignores the counter's update lag (up to
       its resolution). The total prefill time over all trials must reach the counter's
       resolution.
    3. Power readings alone (no counter) are ~1 s averages: short phases cannot be separated by
       pooling, so those fields are ``None`` with that reason.

    ``note`` says which was done. Mean utilization per phase is given only in case 1.
    """
    trials = [TrialPhases(*tr) for tr in trials]
    if not trials:
        raise ValueError("aggregate_over_trials needs at least one trial")
    res = _resolution(samples, resolution_s)
    name = source or getattr(samples, "source", "") or "unknown"
    n = len(trials)
    each = [energy_per_phase(samples, *tr, resolution_s=res, source=name) for tr in trials]
    prefill_s = math.fsum(tr.t_first - tr.t_prompt for tr in trials) / n
    decode_s = math.fsum(tr.t_last - tr.t_first for tr in trials) / n
    decode_tokens = sum(max(tr.new_tokens - 1, 0) for tr in trials)
    method, key, points, resolution = _pick_method(samples, res)
    reasons: dict[str, str] = {}

    prefill_j, decode_j, prefill_util, decode_util = _summed(each, reasons)
    stderr = None
    note = f"{method}, each trial's phases resolved alone, summed over {n} trials"
    if method is None:
        note = ""
        reasons["prefill_energy_j"] = reasons["decode_energy_j"] = (
            "no energy counter and no power readings in the samples"
        )
    elif prefill_j is None or decode_j is None:
        prefill_j, decode_j, stderr, note, why = _pooled(
            key, points, trials, resolution, _first_reason(each), prefill_s, decode_s
        )
        if why:
            reasons["prefill_energy_j"] = reasons["decode_energy_j"] = why
    # mean per trial x trials: the total decode energy, over the total decode tokens
    per_token = _per_token(None if decode_j is None else decode_j * n, decode_tokens, reasons)
    return PhaseEnergy(
        source=name,
        method=method,
        resolution_s=resolution,
        trials=n,
        prefill_s=prefill_s,
        prefill_energy_j=prefill_j,
        prefill_mean_power_w=None if prefill_j is None else prefill_j / prefill_s,
        prefill_mean_utilization_pct=prefill_util,
        decode_s=decode_s,
        decode_tokens=decode_tokens,
        decode_energy_j=decode_j,
        decode_energy_j_per_token=per_token,
        decode_mean_power_w=None if decode_j is None else decode_j / decode_s,
        decode_mean_utilization_pct=decode_util,
        reasons=reasons,
        prefill_energy_j_stderr=stderr,
        note=note,
    )


def _summed(each: list[PhaseEnergy], reasons: dict[str, str]) -> list[Optional[float]]:
    """Case 1 of :func:`aggregate_over_trials`: the mean per trial of prefill and decode energy
    and of prefill and decode utilization, each ``None`` unless every trial resolved it (the
    utilizations' reasons then put in ``reasons``)."""
    n = len(each)

    def mean_or_none(values: list[Optional[float]]) -> Optional[float]:
        if any(v is None for v in values):
            return None
        return math.fsum(v for v in values if v is not None) / n

    out = [
        mean_or_none([e.prefill_energy_j for e in each]),
        mean_or_none([e.decode_energy_j for e in each]),
    ]
    for field_name in ("prefill_mean_utilization_pct", "decode_mean_utilization_pct"):
        value = mean_or_none([getattr(e, field_name) for e in each])
        if value is None:
            reasons[field_name] = next(
                (e.reasons[field_name] for e in each if field_name in e.reasons),
                "not resolved in every trial",
            )
        out.append(value)
    return out


def _first_reason(each: list[PhaseEnergy]) -> str:
    """Why the first trial whose phases were not resolved alone was not."""
    return next(
        (
            e.reasons.get("prefill_energy_j") or e.reasons.get("decode_energy_j")
            for e in each
            if "prefill_energy_j" in e.reasons or "decode_energy_j" in e.reasons
        ),
        "",
    )


def _pooled(
    key: Optional[str],
    points: list[tuple[float, float]],
    trials: list[TrialPhases],
    resolution: Optional[float],
    first_reason: str,
    prefill_s: float,
    decode_s: float,
) -> tuple[Optional[float], Optional[float], Optional[float], str, str]:
    """Cases 2 and 3 of :func:`aggregate_over_trials`: ``(prefill J, decode J, prefill stderr,
    note, reason)``, the energies ``None`` with a reason where pooling cannot give them."""
    n = len(trials)
    if key != ENERGY:
        why = (
            f"power readings are ~{_ms(resolution or 1.0)} averages: phases too short alone "
            f"cannot be separated by pooling trials ({first_reason})"
        )
        return None, None, None, "power integration; not pooled", why
    fit = _fit_phase_powers(points, trials, resolution)
    if isinstance(fit, str):
        note = "energy counter; least squares over trials not possible"
        return None, None, None, note, f"{fit} (alone: {first_reason})"
    (p_pre, p_dec, _p_other), (se_pre, _se_dec, _se_other), n_int = fit
    note = (
        f"energy counter; phases too short alone ({first_reason}), so mean power per "
        f"phase fitted by least squares over {n_int} sampling intervals of {n} trials "
        "(energy = fitted power × mean phase time)"
    )
    return p_pre * prefill_s, p_dec * decode_s, se_pre * prefill_s, note, ""


def _fit_phase_powers(
    points: list[tuple[float, float]],
    trials: list[TrialPhases],
    resolution: Optional[float],
) -> Union[str, tuple[tuple[float, float, float], tuple[float, float, float], int]]:
    """Least-squares mean power (W) of prefill, decode and other time, with standard errors and
    the number of intervals used; or why it cannot be done."""
    rows: list[tuple[float, float, float, float]] = []  # x_prefill, x_decode, x_other, delta_j
    total_prefill = 0.0
    for (t0, e0), (t1, e1) in zip(points, points[1:]):
        if t1 <= t0:
            continue
        x_pre = math.fsum(_overlap(t0, t1, tr.t_prompt, tr.t_first) for tr in trials)
        x_dec = math.fsum(_overlap(t0, t1, tr.t_first, tr.t_last) for tr in trials)
        if x_pre == 0.0 and x_dec == 0.0:
            continue
        rows.append((x_pre, x_dec, max(t1 - t0 - x_pre - x_dec, 0.0), e1 - e0))
        total_prefill += x_pre
    if resolution is not None and total_prefill < resolution:
        return (
            f"the prefill time of all trials together, {_ms(total_prefill)}, is shorter than "
            f"the energy counter's ~{_ms(resolution)} resolution"
        )
    if len(rows) < 4:
        return f"only {len(rows)} sampling intervals touch the trials (need at least 4)"
    xtx = [[math.fsum(r[i] * r[j] for r in rows) for j in range(3)] for i in range(3)]
    xty = [math.fsum(r[i] * r[3] for r in rows) for i in range(3)]
    inv = _inverse3(xtx)
    if inv is None:
        return (
            "the trials' phases fall at the same places in every sampling interval, so their "
            "powers cannot be told apart (vary the sampling period or the pause between trials)"
        )
    beta = [math.fsum(inv[i][j] * xty[j] for j in range(3)) for i in range(3)]
    rss = math.fsum((r[3] - math.fsum(beta[k] * r[k] for k in range(3))) ** 2 for r in rows)
    dof = len(rows) - 3
    sigma2 = rss / dof if dof > 0 else 0.0
    se = [math.sqrt(max(sigma2 * inv[i][i], 0.0)) for i in range(3)]
    return (beta[0], beta[1], beta[2]), (se[0], se[1], se[2]), len(rows)
