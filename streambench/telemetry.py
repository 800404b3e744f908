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

Readings use units in their keys: ``energy_j`` (a monotonically increasing counter in joules,
arbitrary origin), ``power_w``, ``utilization_pct``, ``memory_used_bytes``, ``sm_clock_mhz``,
``temperature_c``, ``throttle_reasons`` (a list of names). ``Source.resolution_s`` maps a key to the
time resolution the hardware states for it (the counter's update period, or the window a gauge is
averaged over); energy per phase refuses phases shorter than that rather than report noise.

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

import bisect
import math
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType, TracebackType
from typing import Any, NamedTuple, Optional, Protocol, Union, runtime_checkable

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
    "aggregate_over_trials",
    "discover",
    "energy_per_phase",
]

ENERGY = "energy_j"
POWER = "power_w"
UTILIZATION = "utilization_pct"

#: NVML clock throttle (since NVML 12.2 "clocks event") reason bits and their names
NVML_THROTTLE_REASONS: tuple[tuple[int, str], ...] = (
    (0x1, "gpu_idle"),
    (0x2, "applications_clocks_setting"),
    (0x4, "sw_power_cap"),
    (0x8, "hw_slowdown"),
    (0x10, "sync_boost"),
    (0x20, "sw_thermal_slowdown"),
    (0x40, "hw_thermal_slowdown"),
    (0x80, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
)

# how each quantity is named in a "shorter than the ...'s resolution" reason
_WHAT = {
    ENERGY: "energy counter's",
    POWER: "power reading's",
    UTILIZATION: "utilization reading's",
}


def throttle_reason_names(mask: int) -> list[str]:
    """Names of the bits set in an NVML throttle-reason bitmask (unknown bits as ``0x...``).

    >>> throttle_reason_names(0x4 | 0x40 | 0x1000)
    ['sw_power_cap', 'hw_thermal_slowdown', '0x1000']
    """
    names = [name for bit, name in NVML_THROTTLE_REASONS if mask & bit]
    known = 0
    for bit, _ in NVML_THROTTLE_REASONS:
        known |= bit
    if mask & ~known:
        names.append(hex(mask & ~known))
    return names


def _ms(seconds: float) -> str:
    """``0.012`` → ``"12 ms"``, ``1.0`` → ``"1 s"``."""
    if seconds >= 1.0:
        return f"{seconds:.3g} s"
    return f"{seconds * 1000:.3g} ms"


# ----------------------------------------------------------------------------------- sources


@runtime_checkable
class Source(Protocol):
    """What the :class:`Sampler` polls.

    Attributes:
        name: unique label, e.g. ``"nvml:0"``, ``"rapl"``.
        resolution_s: per reading key, the time resolution in seconds the hardware states.
    """

    name: str
    resolution_s: Mapping[str, float]

    def available(self) -> tuple[bool, str]:
        """``(True, "")``, or ``(False, reason)`` saying why it cannot be read here."""
        ...

    def read(self) -> dict[str, Any]:
        """One reading: keys with units (``energy_j``, ``power_w`` ...); keys it cannot read are
        left out (never 0)."""
        ...

    def warnings(self) -> list[str]:
        """Conditions that make the readings doubtful (other processes on the GPU ...)."""
        ...

    def close(self) -> None:
        """Release what :meth:`available` / :meth:`read` opened."""
        ...


class UnavailableSource:
    """A source that exists only to say why nothing is measured (e.g. XPU without ``xpu-smi``)."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        self.resolution_s: Mapping[str, float] = {}

    def available(self) -> tuple[bool, str]:
        return False, self.reason

    def read(self) -> dict[str, Any]:
        raise RuntimeError(f"{self.name} unavailable: {self.reason}")

    def warnings(self) -> list[str]:
        return []

    def close(self) -> None:
        return None


class NvmlSource:
    """One NVIDIA GPU through NVML.

    Readings: ``energy_j`` (``nvmlDeviceGetTotalEnergyConsumption``, mJ → J, energy since the
    driver loaded; Volta and newer), ``power_w`` (``nvmlDeviceGetPowerUsage``, mW → W; a ~1 s
    average on Ampere and newer), ``utilization_pct`` and ``memory_utilization_pct`` (percent of
    the last sample period, 1/6 s to 1 s by product, with a kernel running / memory being read or
    written), ``memory_used_bytes`` (device memory in use by all processes), ``sm_clock_mhz``,
    ``temperature_c`` (GPU die) and ``throttle_reasons`` (names of the reasons clocks are held
    down now). The energy counter is read first, right after the sample's timestamp.

    ``device_index`` is the NVML index (PCI bus order), which is the CUDA index only when
    ``CUDA_VISIBLE_DEVICES`` is unset and ``CUDA_DEVICE_ORDER=PCI_BUS_ID``; pass ``uuid`` (from
    ``torch.cuda.get_device_properties(i).uuid``) to be sure. ``energy_resolution_s`` is the
    counter's update period (tens of ms; 50 ms assumed), ``power_resolution_s`` the power
    average's window. ``own_pids``: processes not to warn about (default: this one).
    """

    def __init__(
        self,
        device_index: int = 0,
        *,
        uuid: Optional[str] = None,
        own_pids: Optional[Sequence[int]] = None,
        energy_resolution_s: float = 0.05,
        power_resolution_s: float = 1.0,
        utilization_resolution_s: float = 1.0,
    ) -> None:
        self.device_index = int(device_index)
        self.uuid = uuid
        self.name = f"nvml:{uuid or self.device_index}"
        self.own_pids = frozenset(own_pids if own_pids is not None else (os.getpid(),))
        self.resolution_s: Mapping[str, float] = {
            ENERGY: energy_resolution_s,
            POWER: power_resolution_s,
            UTILIZATION: utilization_resolution_s,
            "memory_utilization_pct": utilization_resolution_s,
        }
        self._nvml: Optional[ModuleType] = None
        self._handle: Any = None
        self._error: Optional[str] = None
        #: reading key -> why NVML refused it (first refusal), filled by :meth:`read`
        self.unsupported: dict[str, str] = {}

    def _open(self) -> bool:
        if self._handle is not None:
            return True
        if self._error is not None:
            return False
        try:
            import pynvml
        except ImportError as exc:
            self._error = f"pynvml not importable (pip install nvidia-ml-py): {exc}"
            return False
        try:
            pynvml.nvmlInit()
        except Exception as exc:  # noqa: BLE001 - NVMLError_* (no driver, no GPU ...)
            self._error = f"nvmlInit failed: {exc}"
            return False
        try:
            if self.uuid is not None:
                handle = pynvml.nvmlDeviceGetHandleByUUID(self.uuid)
            else:
                handle = pynvml.nvmlDeviceGetHandleByIndex(self.device_index)
        except Exception as exc:  # noqa: BLE001
            self._error = f"no NVML device {self.uuid or self.device_index}: {exc}"
            pynvml.nvmlShutdown()
            return False
        self._nvml, self._handle = pynvml, handle
        return True

    def available(self) -> tuple[bool, str]:
        return (True, "") if self._open() else (False, self._error or "NVML unavailable")

    def _get(self, out: dict[str, Any], key: str, fn: Any) -> None:
        if key in self.unsupported:
            return
        try:
            out.update(fn())
        except Exception as exc:  # noqa: BLE001 - NVMLError_NotSupported and kin
            self.unsupported[key] = f"{type(exc).__name__}: {exc}"

    def read(self) -> dict[str, Any]:
        if not self._open():
            raise RuntimeError(f"{self.name} unavailable: {self._error}")
        nv, h = self._nvml, self._handle
        assert nv is not None
        out: dict[str, Any] = {}
        self._get(out, ENERGY, lambda: {ENERGY: nv.nvmlDeviceGetTotalEnergyConsumption(h) / 1e3})
        self._get(out, POWER, lambda: {POWER: nv.nvmlDeviceGetPowerUsage(h) / 1e3})

        def util() -> dict[str, Any]:
            rates = nv.nvmlDeviceGetUtilizationRates(h)
            return {UTILIZATION: float(rates.gpu), "memory_utilization_pct": float(rates.memory)}

        self._get(out, UTILIZATION, util)
        self._get(
            out,
            "memory_used_bytes",
            lambda: {"memory_used_bytes": int(nv.nvmlDeviceGetMemoryInfo(h).used)},
        )
        sm = getattr(nv, "NVML_CLOCK_SM", 1)
        self._get(out, "sm_clock_mhz", lambda: {"sm_clock_mhz": nv.nvmlDeviceGetClockInfo(h, sm)})
        gpu = getattr(nv, "NVML_TEMPERATURE_GPU", 0)
        self._get(
            out, "temperature_c", lambda: {"temperature_c": nv.nvmlDeviceGetTemperature(h, gpu)}
        )
        reasons = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
            nv, "nvmlDeviceGetCurrentClocksThrottleReasons", None
        )
        if reasons is not None:
            self._get(
                out,
                "throttle_reasons",
                lambda: {"throttle_reasons": throttle_reason_names(int(reasons(h)))},
            )
        return out

    def other_processes(self) -> list[tuple[int, Optional[int]]]:
        """``(pid, used_bytes)`` of compute processes on this GPU other than ``own_pids``
        (``used_bytes`` ``None`` where NVML does not say). Inside a container NVML may report
        host PIDs, so the list can name this process under another PID."""
        if not self._open():
            return []
        assert self._nvml is not None
        procs = self._nvml.nvmlDeviceGetComputeRunningProcesses(self._handle)
        out = []
        for p in procs:
            if int(p.pid) in self.own_pids:
                continue
            used = getattr(p, "usedGpuMemory", None)
            out.append((int(p.pid), int(used) if isinstance(used, int) else None))
        return out

    def warnings(self) -> list[str]:
        try:
            others = self.other_processes()
        except Exception as exc:  # noqa: BLE001
            return [f"{self.name}: could not list the GPU's processes ({exc})"]
        if not others:
            return []
        pids = ", ".join(str(pid) for pid, _ in others)
        used = sum(u for _, u in others if u is not None)
        mem = f", {used / 2**30:.1f} GiB" if used else ""
        return [
            f"{self.name}: {len(others)} other process(es) on this GPU (pid {pids}{mem}): "
            "they share its power, energy, utilization and memory readings and may slow the run"
        ]

    def close(self) -> None:
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:  # noqa: BLE001
                pass
        self._nvml, self._handle = None, None


_RAPL_ZONE = re.compile(r"^intel-rapl:\d+$")


class RaplSource:
    """CPU package energy from Linux powercap RAPL (Intel, and AMD on Linux >= 5.8).

    Reads ``<root>/intel-rapl:N/energy_uj`` (µJ) of every top-level zone (one per CPU package;
    the ``psys`` platform zone is left out, as it contains the packages) and reports ``energy_j``,
    their sum in joules, plus ``<zone name>_energy_j`` per zone. The counters wrap at
    ``max_energy_range_uj``; a reading lower than the previous one is taken as one wrap (the
    sampler reads far more often than a counter can wrap, minutes to hours). The counters update
    about every millisecond (``resolution_s``). Since Linux 5.10 ``energy_uj`` is readable by
    root only (CVE-2020-8694); inside most VMs the interface does not exist.
    """

    def __init__(self, root: str = "/sys/class/powercap", *, resolution_s: float = 0.001) -> None:
        self.root = root
        self.name = "rapl"
        self.resolution_s: Mapping[str, float] = {ENERGY: resolution_s}
        self._last: dict[str, int] = {}
        self._total_uj: dict[str, int] = {}

    def zones(self) -> list[str]:
        """Paths of the top-level zones (package counters), sorted."""
        try:
            entries = sorted(os.listdir(self.root))
        except OSError:
            return []
        out = []
        for entry in entries:
            path = os.path.join(self.root, entry)
            if not _RAPL_ZONE.match(entry) or not os.path.isdir(path):
                continue
            if _read_text(os.path.join(path, "name")) == "psys":
                continue
            out.append(path)
        return out

    def available(self) -> tuple[bool, str]:
        zones = self.zones()
        if not zones:
            return False, (
                f"no {self.root}/intel-rapl:* (no RAPL powercap interface here: a VM, "
                "a CPU without RAPL, or the intel_rapl driver not loaded)"
            )
        for zone in zones:
            path = os.path.join(zone, "energy_uj")
            try:
                with open(path) as f:
                    int(f.read().strip())
            except PermissionError:
                return False, (
                    f"permission denied reading {path} (root only since Linux 5.10, "
                    "CVE-2020-8694; run as root or make it readable)"
                )
            except (OSError, ValueError) as exc:
                return False, f"cannot read {path}: {exc}"
        return True, ""

    def read(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        total = 0
        for zone in self.zones():
            raw = int(_read_text(os.path.join(zone, "energy_uj"), strict=True))
            last = self._last.get(zone)
            acc = self._total_uj.get(zone, 0)
            if last is not None:
                if raw >= last:
                    acc += raw - last
                else:  # wrapped at max_energy_range_uj
                    top = int(_read_text(os.path.join(zone, "max_energy_range_uj"), strict=True))
                    acc += top - last + raw
            self._last[zone], self._total_uj[zone] = raw, acc
            name = _read_text(os.path.join(zone, "name")) or os.path.basename(zone)
            out[f"{name}_energy_j"] = acc / 1e6
            total += acc
        if not out:
            raise RuntimeError(f"rapl unavailable: no {self.root}/intel-rapl:*")
        out[ENERGY] = total / 1e6
        return out

    def warnings(self) -> list[str]:
        return []

    def close(self) -> None:
        return None


def _read_text(path: str, strict: bool = False) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        if strict:
            raise
        return ""


def discover(device: str, *, nvml_index: Optional[int] = None) -> list[Source]:
    """Telemetry sources for a streambench device string (``"cuda"``, ``"cuda:1"``, ``"cpu"``,
    ``"xpu"``, ``"mps"``). Every device gets a list; a source that cannot be read here is an
    :class:`UnavailableSource` (or reports itself unavailable) that says why.

    ``cuda:N`` → :class:`NvmlSource` for NVML index ``nvml_index`` (default: ``N`` mapped through
    an all-integer ``CUDA_VISIBLE_DEVICES``, else ``N``); ``cpu`` → :class:`RaplSource`;
    ``xpu`` → unavailable (only whether ``xpu-smi`` exists is reported; it is not read).
    """
    kind, _, index_text = device.partition(":")
    index = int(index_text) if index_text.isdigit() else 0
    if kind == "cuda":
        if nvml_index is None:
            nvml_index = index
            visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
            if all(v.strip().isdigit() for v in visible) and index < len(visible):
                nvml_index = int(visible[index])
        try:
            import pynvml  # noqa: F401
        except ImportError as exc:
            reason = f"pynvml not importable (pip install nvidia-ml-py): {exc}"
            return [UnavailableSource(f"nvml:{nvml_index}", reason)]
        return [NvmlSource(nvml_index)]
    if kind == "cpu":
        return [RaplSource()]
    if kind == "xpu":
        smi = shutil.which("xpu-smi")
        if smi is None:
            reason = "xpu-smi not found on PATH (Intel GPU telemetry is read through it)"
        else:
            reason = f"xpu-smi found at {smi}, but streambench does not read it"
        return [UnavailableSource("xpu-smi", reason)]
    return [UnavailableSource(kind or device, f"no telemetry source for device {device!r}")]


# ----------------------------------------------------------------------------------- sampling


class Sample(NamedTuple):
    """One reading: ``t`` is ``time.perf_counter()`` seconds just before ``read()``;
    ``readings`` the source's values (units in the keys)."""

    t: float
    readings: Mapping[str, Any]


@dataclass
class Trace:
    """The samples of one source, with what is needed to judge them. A sequence of
    :class:`Sample` (``len``, indexing, iteration), oldest first."""

    source: str
    resolution_s: Mapping[str, float]
    samples: list[Sample] = field(default_factory=list)
    #: read errors, first few kept (``"t=12.345: RuntimeError: ..."``)
    errors: list[str] = field(default_factory=list)
    #: polls that came later than their period (the machine was busy)
    late_polls: int = 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Sample:
        return self.samples[i]

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)


class Sampler:
    """Polls ``sources`` every ``period_s`` seconds on a daemon thread.

    :meth:`start` checks each source's :meth:`~Source.available` (an unavailable one is recorded in
    :attr:`unavailable` with its reason and not polled), collects its warnings, takes one sample of
    each synchronously, then starts the thread; :meth:`stop` stops the thread, takes one final
    sample synchronously (so a trace covers everything between start and stop) and collects the
    warnings again. Polls are scheduled on a fixed grid (no drift); a poll that comes late is
    counted in :attr:`Trace.late_polls` and the grid skips ahead. Also a context manager. The
    sampler does not close its sources (the caller may reuse them).
    """

    def __init__(self, sources: Sequence[Source], period_s: float = 0.1) -> None:
        if not period_s > 0:
            raise ValueError(f"period_s must be > 0, got {period_s!r}")
        self.sources = list(sources)
        self.period_s = float(period_s)
        #: source name -> why it is not polled
        self.unavailable: dict[str, str] = {}
        #: warning texts from the sources, without repeats
        self.warnings: list[str] = []
        self._active: list[Source] = []
        self._traces: dict[str, Trace] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def _collect_warnings(self) -> None:
        for source in self._active:
            try:
                texts = source.warnings()
            except Exception as exc:  # noqa: BLE001
                texts = [f"{source.name}: warnings() failed: {exc}"]
            for text in texts:
                if text not in self.warnings:
                    self.warnings.append(text)

    def _poll(self) -> None:
        for source in self._active:
            t = time.perf_counter()
            try:
                readings = source.read()
            except Exception as exc:  # noqa: BLE001 - a failed read must not kill the thread
                trace = self._traces[source.name]
                if len(trace.errors) < 5:
                    trace.errors.append(f"t={t:.3f}: {type(exc).__name__}: {exc}")
                continue
            with self._lock:
                self._traces[source.name].samples.append(Sample(t, readings))

    def _run(self) -> None:
        next_t = time.perf_counter() + self.period_s
        while True:
            delay = next_t - time.perf_counter()
            if self._stop.wait(max(delay, 0.0)):
                return
            self._poll()
            next_t += self.period_s
            now = time.perf_counter()
            if next_t < now:
                skipped = math.ceil((now - next_t) / self.period_s)
                next_t += skipped * self.period_s
                with self._lock:
                    for trace in self._traces.values():
                        trace.late_polls += 1

    def start(self) -> Sampler:
        """Check the sources, take a first sample, start polling. Returns ``self``."""
        if self._thread is not None:
            raise RuntimeError("Sampler already started")
        for source in self.sources:
            try:
                ok, reason = source.available()
            except Exception as exc:  # noqa: BLE001
                ok, reason = False, f"available() failed: {type(exc).__name__}: {exc}"
            if ok:
                self._active.append(source)
                self._traces[source.name] = Trace(source.name, dict(source.resolution_s))
            else:
                self.unavailable[source.name] = reason
        self._collect_warnings()
        self._poll()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="streambench-telemetry", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop polling (joins the thread), take a last sample, collect warnings again."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        self._poll()
        self._collect_warnings()

    @property
    def running(self) -> bool:
        return self._thread is not None

    def traces(self) -> dict[str, Trace]:
        """A snapshot: source name → :class:`Trace` (safe to call while running)."""
        with self._lock:
            return {
                name: Trace(t.source, t.resolution_s, list(t.samples), list(t.errors), t.late_polls)
                for name, t in self._traces.items()
            }

    def trace(self, name: Optional[str] = None) -> Trace:
        """The trace of source ``name`` (default: the only polled source)."""
        traces = self.traces()
        if name is None:
            if len(traces) != 1:
                raise ValueError(f"name one of {sorted(traces)}")
            return next(iter(traces.values()))
        return traces[name]

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.stop()


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
    values: dict[str, Optional[float]] = {}
    for phase, a, b in (("prefill", t_prompt, t_first), ("decode", t_first, t_last)):
        if method is None:
            values[phase] = None
            reasons[f"{phase}_energy_j"] = "no energy counter and no power readings in the samples"
        else:
            values[phase], why = _measure(
                points,
                a,
                b,
                phase=phase,
                key=key,
                resolution=resolution,
                counter=key == ENERGY,
            )
            if why:
                reasons[f"{phase}_energy_j"] = why
    decode_j = values["decode"]
    per_token = None
    if decode_j is not None:
        if decode_tokens:
            per_token = decode_j / decode_tokens
        else:
            reasons["decode_energy_j_per_token"] = "no decode tokens (new_tokens <= 1)"
    util = _series(samples, UTILIZATION)
    mean_util: dict[str, Optional[float]] = {}
    for phase, a, b in (("prefill", t_prompt, t_first), ("decode", t_first, t_last)):
        if not util:
            mean_util[phase] = None
            reasons[f"{phase}_mean_utilization_pct"] = "no utilization readings"
            continue
        integral, why = _measure(
            util,
            a,
            b,
            phase=phase,
            key=UTILIZATION,
            resolution=res.get(UTILIZATION),
            counter=False,
        )
        mean_util[phase] = None if integral is None else integral / (b - a)
        if why:
            reasons[f"{phase}_mean_utilization_pct"] = why
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

    def mean_or_none(values: list[Optional[float]]) -> Optional[float]:
        if any(v is None for v in values):
            return None
        return math.fsum(v for v in values if v is not None) / n

    prefill_j = mean_or_none([e.prefill_energy_j for e in each])
    decode_j = mean_or_none([e.decode_energy_j for e in each])
    prefill_util = mean_or_none([e.prefill_mean_utilization_pct for e in each])
    decode_util = mean_or_none([e.decode_mean_utilization_pct for e in each])
    stderr = None
    note = f"{method}, each trial's phases resolved alone, summed over {n} trials"
    for field_name, value in (
        ("prefill_mean_utilization_pct", prefill_util),
        ("decode_mean_utilization_pct", decode_util),
    ):
        if value is None:
            reasons[field_name] = next(
                (e.reasons[field_name] for e in each if field_name in e.reasons),
                "not resolved in every trial",
            )
    if method is None:
        note = ""
        reasons["prefill_energy_j"] = reasons["decode_energy_j"] = (
            "no energy counter and no power readings in the samples"
        )
    elif prefill_j is None or decode_j is None:
        first_reason = next(
            (
                e.reasons.get("prefill_energy_j") or e.reasons.get("decode_energy_j")
                for e in each
                if "prefill_energy_j" in e.reasons or "decode_energy_j" in e.reasons
            ),
            "",
        )
        if key != ENERGY:
            prefill_j = decode_j = None
            why = (
                f"power readings are ~{_ms(resolution or 1.0)} averages: phases too short alone "
                f"cannot be separated by pooling trials ({first_reason})"
            )
            reasons["prefill_energy_j"] = reasons["decode_energy_j"] = why
            note = "power integration; not pooled"
        else:
            fit = _fit_phase_powers(points, trials, resolution)
            if isinstance(fit, str):
                prefill_j = decode_j = None
                reasons["prefill_energy_j"] = reasons["decode_energy_j"] = (
                    f"{fit} (alone: {first_reason})"
                )
                note = "energy counter; least squares over trials not possible"
            else:
                (p_pre, p_dec, _p_other), (se_pre, _se_dec, _se_other), n_int = fit
                prefill_j = p_pre * prefill_s
                decode_j = p_dec * decode_s
                stderr = se_pre * prefill_s
                note = (
                    f"energy counter; phases too short alone ({first_reason}), so mean power per "
                    f"phase fitted by least squares over {n_int} sampling intervals of {n} trials "
                    "(energy = fitted power × mean phase time)"
                )
    per_token = None
    if decode_j is not None:
        if decode_tokens:
            per_token = decode_j * n / decode_tokens
        else:
            reasons["decode_energy_j_per_token"] = "no decode tokens (new_tokens <= 1)"
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
    for key in ("temperature_c", "sm_clock_mhz", "memory_used_bytes"):
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
