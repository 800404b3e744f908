"""Telemetry sources: what is read (NVML, RAPL), its units and stated resolution, and why a
source is unavailable. See :mod:`streambench.telemetry`."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any, Optional, Protocol, runtime_checkable

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
    """A source that only says why nothing is measured (e.g. MPS, or CUDA without pynvml)."""

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
    ``xpu:N`` → :class:`~streambench.telemetry.xpu_smi.XpuSmiSource` for xpu-smi device ``N``
    (it says so when ``xpu-smi`` is not on ``PATH``).
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
        # STREAMBENCH_POWERCAP_ROOT: another powercap tree (tests, or a bind-mounted host tree)
        return [RaplSource(os.environ.get("STREAMBENCH_POWERCAP_ROOT") or "/sys/class/powercap")]
    if kind == "xpu":
        from .xpu_smi import XpuSmiSource

        return [XpuSmiSource(index)]
    return [UnavailableSource(kind or device, f"no telemetry source for device {device!r}")]
