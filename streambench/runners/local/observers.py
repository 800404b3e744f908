"""What is observed around a configuration's runs besides the streamer: hardware telemetry
(:mod:`streambench.telemetry`, sampled off the hot path), the process's RSS before and after
loading, and in streambench's own worker processes the kernel's exact peak RSS of the trials
(:mod:`streambench.peak_memory`). Used by
:func:`streambench.runners.local.configuration.run_configuration`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Observers", "power_trace"]


class Observers:
    """What is observed around a configuration's runs besides the streamer: hardware telemetry
    (:mod:`streambench.telemetry`, sampled off the hot path) and, in streambench's own worker
    processes, the kernel's exact peak RSS of the trials (:mod:`streambench.peak_memory`)."""

    def __init__(self, settings: Any, loaded: Any) -> None:
        self.settings, self.loaded = settings, loaded
        self.sampler: Any = None
        self.peak: Any = None
        self.rss_before_trials: int | None = None

    def __enter__(self) -> Observers:
        if self.settings.telemetry:
            from ...telemetry import Sampler, discover

            self.sampler = Sampler(discover(str(self.loaded.device))).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.sampler is not None:
            self.sampler.stop()
            for source in self.sampler.sources:  # e.g. the xpu-smi process
                source.close()

    def before_trials(self) -> None:
        if getattr(self.loaded.device, "type", str(self.loaded.device)) != "cpu":
            return
        from ...peak_memory import PeakRSS, rss_bytes

        self.rss_before_trials = rss_bytes()
        if self.settings.exact_peak:
            self.peak = PeakRSS()
            self.peak.reset()

    def record(self, result: Any, measured: list[Any]) -> None:
        """``memory`` (CPU: RSS before loading, after loading, peak of the trials, and where the
        peak comes from) and ``telemetry`` (energy per phase, or why not) in ``result.extra``
        (a :class:`~streambench.results.schema.ConfigurationResult`)."""
        from ...results.percentiles import statistics_tree

        loaded = self.loaded
        if self.rss_before_trials is not None:
            memory: dict[str, Any] = {
                "rss_before_load_bytes": loaded.rss_before_load_bytes,
                "rss_after_load_bytes": loaded.rss_after_load_bytes,
                "rss_before_trials_bytes": self.rss_before_trials,
                "peak_rss_bytes": None,
                "peak_source": "largest per-token RSS reading (not reset: in-process run)",
            }
            peaks = [r.peak_memory_bytes for r in measured if r.peak_memory_bytes]
            memory["peak_rss_bytes"] = max(peaks) if peaks else None
            if self.peak is not None:
                # the kernel's mark, never below a reading the streamer took (the kernel syncs
                # its per-thread RSS counters lazily: the mark can lag a reading by a page or so)
                reading = self.peak.read()
                memory["peak_rss_bytes"] = max([reading.peak_bytes, *peaks])
                memory["peak_source"] = reading.source
            result.extra["memory"] = memory
        if self.sampler is not None:
            from ...telemetry import Telemetry

            phases = [(*r.phase_clock_s, r.new_tokens) for r in measured if r.phase_clock_s]
            telemetry = Telemetry.from_sampler(self.sampler, phases).to_dict()
            if phases:
                telemetry["power_trace"] = power_trace(self.sampler, phases[0][0])
            result.extra["telemetry"] = statistics_tree(telemetry)  # as a file reads back


def power_trace(sampler: Any, origin: float, limit: int = 2000) -> dict[str, Any]:
    """Per source, power (W) over time (s from ``origin``, the first measured prompt; from an
    energy counter's differences where the source has no power reading), at most ``limit``
    points (every k-th sample): what the plot draws beside latency."""
    out: dict[str, Any] = {}
    for name, trace in sampler.traces().items():
        points = [(s.t - origin, s.readings["power_w"]) for s in trace if "power_w" in s.readings]
        if not points:  # an energy counter only (RAPL): power from consecutive differences
            energy = [
                (s.t - origin, s.readings["energy_j"]) for s in trace if "energy_j" in s.readings
            ]
            points = [
                ((t0 + t1) / 2, (e1 - e0) / (t1 - t0))
                for (t0, e0), (t1, e1) in zip(energy, energy[1:])
                if t1 > t0
            ]
        if not points:
            continue
        step = max(1, -(-len(points) // limit))
        points = points[::step]
        out[name] = {"t_s": [round(t, 4) for t, _ in points], "power_w": [p for _, p in points]}
    return out
