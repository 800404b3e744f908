"""The telemetry of one configuration: per-source summaries, energy per phase, what was
unavailable and why; ``to_dict()`` for the results file. See :mod:`streambench.telemetry`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Union

from .energy import (
    PhaseEnergy,
    TrialPhases,
    _series,
    aggregate_over_trials,
    energy_per_phase,
)
from .sampler import Sampler, Trace

# ----------------------------------------------------------------------------------- result


def _summary(trace: Trace) -> dict[str, Any]:
    """Context for the energy numbers: throttle reasons seen, temperature and clock ranges."""
    out: dict[str, Any] = {"samples": len(trace), "late_polls": trace.late_polls}
    seen: list[str] = []
    for _, readings in trace:
        for reason in readings.get("throttle_reasons", ()) or ():
            if reason not in seen:
                seen.append(reason)
    if any("throttle_reasons" in r for _, r in trace):
        out["throttle_reasons_seen"] = seen
    for key in ("temperature_c", "sm_clock_mhz", "gpu_clock_mhz", "memory_used_bytes"):
        values = [v for _, v in _series(trace, key)]
        if values:
            out[f"min_{key}"], out[f"max_{key}"] = min(values), max(values)
    if trace.errors:
        out["read_errors"] = list(trace.errors)
    return out


@dataclass
class Telemetry:
    """Telemetry of one configuration: per polled source its :class:`PhaseEnergy` and a summary
    of the other readings, the sources that could not be read and why, and warnings."""

    phases: dict[str, PhaseEnergy] = field(default_factory=dict)
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def from_sampler(
        cls,
        sampler: Sampler,
        trials: Sequence[Union[TrialPhases, tuple[float, float, float, int]]],
    ) -> Telemetry:
        """Energy per phase of every polled source over ``trials`` (one trial: as
        :func:`energy_per_phase`; several: :func:`aggregate_over_trials`)."""
        out = cls(unavailable=dict(sampler.unavailable), warnings=list(sampler.warnings))
        for name, trace in sampler.traces().items():
            if len(trials) == 1:
                out.phases[name] = energy_per_phase(trace, *TrialPhases(*trials[0]))
            else:
                out.phases[name] = aggregate_over_trials(trace, trials)
            out.summaries[name] = _summary(trace)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"sources": {name: {PhaseEnergy fields..., "summary": {...}}},
        "unavailable": {name: reason}, "warnings": [...]}``."""
        sources = {}
        for name, phase in self.phases.items():
            entry = phase.to_dict()
            entry["summary"] = dict(self.summaries.get(name, {}))
            sources[name] = entry
        return {
            "sources": sources,
            "unavailable": dict(self.unavailable),
            "warnings": list(self.warnings),
        }
