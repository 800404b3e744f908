"""Hardware telemetry off the hot path, and energy per generation phase.

A :class:`Sampler` runs one background thread that polls one or more *sources* every ``period_s``
(100 ms by default) and records ``Sample(t, readings)``, ``t`` being ``time.perf_counter()``
seconds just before the source's ``read()`` — the clock the streamer stamps tokens with, so a
trace and a run's ``t_prompt`` / ``t_first`` / ``t_last`` line up without conversion. The generate
loop never waits on it: the thread sleeps between polls, and a poll holds the GIL only to store a
few numbers (NVML and sysfs reads are system calls that release it).

Sources (each says what it measures, at which resolution, and why it is unavailable):

- :class:`NvmlSource`: an NVIDIA GPU through NVML (``pynvml``, package ``nvidia-ml-py``, imported
  on first use): the total energy counter (J), power (W), utilization (%), memory used (bytes),
  SM clock (MHz), temperature (°C), clock throttle reasons, and other processes on the GPU.
- :class:`RaplSource`: CPU package energy (J) from Linux powercap RAPL counters.
- :class:`XpuSmiSource`: an Intel GPU through a running ``xpu-smi dump`` (one row a second):
  power (W), utilization (%), GPU frequency (MHz), temperature (°C), memory used (bytes).

Readings use units in their keys: ``energy_j`` (a monotonically increasing counter in joules,
arbitrary origin), ``power_w``, ``utilization_pct``, ``memory_used_bytes``, ``sm_clock_mhz``,
``gpu_clock_mhz`` (Intel), ``temperature_c``, ``throttle_reasons`` (a list of names).
``Source.resolution_s`` maps a key to the time resolution the hardware states for it (the
counter's update period, or the window a gauge is averaged over); energy per phase refuses phases
shorter than that rather than report noise.

Energy per phase (:func:`energy_per_phase`): *prefill* is ``t_prompt`` → ``t_first`` (the prompt's
forward pass up to the first token), *decode* is ``t_first`` → ``t_last`` (``new_tokens - 1``
tokens). Preferred method: the energy counter, linearly interpolated at the phase boundaries
(``"energy counter"``); without a counter, the power readings integrated over time (trapezoids,
``"power integration"``), which on recent GPUs are ~1 s averages, so only phases of seconds are
resolved. :func:`aggregate_over_trials` handles phases too short alone (prefill is often tens of
ms) by pooling many trials. Nothing unmeasurable is reported as ``0``: it is ``None`` with a
reason.

This module imports nothing from the package and nothing heavy (no torch; pynvml only on use).
"""

from __future__ import annotations

from .energy import PhaseEnergy, TrialPhases, aggregate_over_trials, energy_per_phase
from .result import Telemetry
from .sampler import Sample, Sampler, Trace
from .sources import (
    NVML_THROTTLE_REASONS,
    NvmlSource,
    RaplSource,
    Source,
    UnavailableSource,
    discover,
    throttle_reason_names,
)
from .xpu_smi import XpuSmiSource

__all__ = [
    "NVML_THROTTLE_REASONS",
    "NvmlSource",
    "PhaseEnergy",
    "RaplSource",
    "Sample",
    "Sampler",
    "Source",
    "Telemetry",
    "Trace",
    "TrialPhases",
    "UnavailableSource",
    "XpuSmiSource",
    "aggregate_over_trials",
    "discover",
    "energy_per_phase",
    "throttle_reason_names",
]
