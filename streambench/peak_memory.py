"""Exact peak CPU memory (resident set size) of this process, without sampling.

Linux keeps the process's resident-set high-water mark in ``VmHWM`` of ``/proc/self/status``:
the largest ``VmRSS`` the process has had, updated by the kernel on every page-table change, so a
peak that lasted a microsecond is not missed (no sampling thread, no polling). Writing ``5`` to
``/proc/self/clear_refs`` resets ``VmHWM`` to the current ``VmRSS`` (Linux >= 4.0), so the peak
can be measured per configuration: :meth:`PeakRSS.reset` before it, :meth:`PeakRSS.read` after.

Units and sources: every number is bytes. ``/proc`` reports kB (KiB), so the resolution is 1 KiB;
the values are RSS (anonymous + file-backed + shared memory pages resident in RAM), not virtual
size, and they count the whole process (every thread, the Python heap, the model weights).

Where the reset is not permitted (some hardened kernels, seccomp sandboxes, a read-only ``/proc``)
:meth:`PeakRSS.reset` returns ``False`` and the peak is the high-water mark *since process start*;
:attr:`PeakRSS.source` and :attr:`MemoryReading.source` say which. Off Linux (macOS, Windows
through ``resource`` where it exists) the peak is ``getrusage().ru_maxrss`` since process start
and cannot be reset.

Side effect of the reset: on Linux ``getrusage(RUSAGE_SELF).ru_maxrss`` is derived from the same
high-water mark, so resetting it also lowers the process's ``ru_maxrss`` (and what ``time -v``,
``psutil`` or a parent's ``wait4()`` report for it). Only streambench's own worker processes, which
exist to measure, should call :meth:`PeakRSS.reset`; a library user's process (the streamer used
inside someone else's program) must never be reset unless they ask for it. (The reset cannot lower
``ru_maxrss`` below what the process inherited: Linux carries the parent's high-water mark across
fork + exec, so a child's ``ru_maxrss`` starts at least at its parent's peak. ``VmHWM`` does not
inherit it, one more reason it is the number reported here.)

This module imports nothing from the package and nothing heavy (no torch, no psutil at import).

>>> reading = PeakRSS().read()
>>> reading.peak_bytes >= reading.current_bytes > 0
True
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass
from typing import Any, Optional

__all__ = [
    "SOURCE_HWM_RESET",
    "SOURCE_HWM_SINCE_START",
    "SOURCE_HWM_UNRESET",
    "SOURCE_PEAK_WSET",
    "SOURCE_RU_MAXRSS",
    "MemoryReading",
    "PeakRSS",
    "rss_bytes",
]

#: the peak is ``VmHWM`` since the last successful :meth:`PeakRSS.reset`
SOURCE_HWM_RESET = "VmHWM after clear_refs reset"
#: a reset was tried and refused; the peak is ``VmHWM`` since the process started
SOURCE_HWM_SINCE_START = "VmHWM since process start (reset not permitted)"
#: no reset was tried yet; the peak is ``VmHWM`` since the process started
SOURCE_HWM_UNRESET = "VmHWM since process start (not reset)"
#: not Linux (no ``/proc/self/status``): ``getrusage().ru_maxrss`` since process start
SOURCE_RU_MAXRSS = "ru_maxrss since process start"

#: Windows: psutil's ``peak_wset`` (peak working set) since process start
SOURCE_PEAK_WSET = "peak working set since process start"

STATUS_PATH = "/proc/self/status"
CLEAR_REFS_PATH = "/proc/self/clear_refs"
KIB = 1024


@dataclass(frozen=True)
class MemoryReading:
    """One reading of this process's memory.

    Attributes:
        peak_bytes: the resident-set high-water mark in bytes (``VmHWM``, or ``ru_maxrss`` off
            Linux), since the reference point that ``source`` names; resolution 1 KiB.
        current_bytes: the resident set size now in bytes (``VmRSS``), or ``None`` where it cannot
            be read (off Linux without psutil).
        source: where ``peak_bytes`` comes from and since when (one of the ``SOURCE_*`` texts).
        since_reset: ``True`` when the peak counts from a successful reset, ``False`` when it
            counts from process start.
    """

    peak_bytes: int
    current_bytes: Optional[int]
    source: str
    since_reset: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``peak_bytes``, ``current_bytes``, ``source``, ``since_reset``."""
        return asdict(self)


def _read_status(path: str) -> Optional[dict[str, int]]:
    """``VmHWM`` and ``VmRSS`` in bytes from a ``/proc/<pid>/status`` file; ``None`` when the
    file cannot be read or lacks them."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            parts = rest.split()
            if parts and parts[0].isdigit():
                unit = parts[1].lower() if len(parts) > 1 else "kb"
                out[key] = int(parts[0]) * (KIB if unit == "kb" else 1)
    return out if "VmHWM" in out and "VmRSS" in out else None


def _ru_maxrss_bytes() -> Optional[int]:
    """``getrusage(RUSAGE_SELF).ru_maxrss`` in bytes (KiB on Linux/BSD, bytes on macOS)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    value = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return value if sys.platform == "darwin" else value * KIB


def _psutil_rss() -> Optional[int]:
    try:
        import psutil
    except ImportError:
        return None
    try:
        return int(psutil.Process().memory_info().rss)
    except Exception:  # noqa: BLE001 - any psutil failure means "unknown"
        return None


def _psutil_peak_wset() -> Optional[int]:
    try:
        import psutil

        return int(psutil.Process().memory_info().peak_wset)
    except Exception:  # noqa: BLE001 - not Windows, or no psutil
        return None


def rss_bytes(status_path: str = STATUS_PATH) -> Optional[int]:
    """The resident set size of this process now, in bytes (``VmRSS``, 1 KiB resolution); off
    Linux from psutil (imported lazily); ``None`` when neither can be read."""
    status = _read_status(status_path)
    if status is not None:
        return status["VmRSS"]
    return _psutil_rss()


class PeakRSS:
    """Peak resident memory of this process between :meth:`reset` and :meth:`read`.

    ``status_path`` and ``clear_refs_path`` default to this process's ``/proc`` files; tests point
    them elsewhere to exercise the fallbacks. The object holds only whether the last reset
    succeeded; the high-water mark itself lives in the kernel, per process (so two ``PeakRSS``
    objects in one process share it, and a reset through one is seen by the other).
    """

    def __init__(
        self, status_path: str = STATUS_PATH, clear_refs_path: str = CLEAR_REFS_PATH
    ) -> None:
        self.status_path = status_path
        self.clear_refs_path = clear_refs_path
        #: ``None`` before any reset, then whether the last reset succeeded
        self.reset_ok: Optional[bool] = None
        #: why the last reset failed (``"PermissionError: ..."``), or ``None``
        self.reset_error: Optional[str] = None

    @property
    def linux(self) -> bool:
        """Whether ``VmHWM`` can be read (``status_path`` exists and has it)."""
        return _read_status(self.status_path) is not None

    @property
    def source(self) -> str:
        """What :meth:`read` reports as the peak, and since when (a ``SOURCE_*`` text)."""
        if not self.linux:
            return SOURCE_PEAK_WSET if sys.platform == "win32" else SOURCE_RU_MAXRSS
        if self.reset_ok:
            return SOURCE_HWM_RESET
        if self.reset_ok is False:
            return SOURCE_HWM_SINCE_START
        return SOURCE_HWM_UNRESET

    def reset(self) -> bool:
        """Reset the high-water mark to the current RSS by writing ``5`` to ``clear_refs``.

        Returns ``True`` when the kernel accepted it, ``False`` where it is not permitted or not
        available (the peak then counts from process start; :attr:`source` says so and
        :attr:`reset_error` says why). Also lowers this process's ``ru_maxrss``: see the module
        docstring, and call it only in a process that exists to be measured.
        """
        if not self.linux:
            self.reset_ok = False
            self.reset_error = f"no VmHWM in {self.status_path}"
            return False
        try:
            fd = os.open(self.clear_refs_path, os.O_WRONLY)
            try:
                os.write(fd, b"5")
            finally:
                os.close(fd)
        except OSError as exc:
            self.reset_ok = False
            self.reset_error = f"{type(exc).__name__}: {exc}"
            return False
        self.reset_ok = True
        self.reset_error = None
        return True

    def read(self) -> MemoryReading:
        """The peak (``VmHWM``) and current (``VmRSS``) resident set, in bytes, now."""
        status = _read_status(self.status_path)
        if status is not None:
            return MemoryReading(
                peak_bytes=status["VmHWM"],
                current_bytes=status["VmRSS"],
                source=self.source,
                since_reset=bool(self.reset_ok),
            )
        current = _psutil_rss()
        peak = _ru_maxrss_bytes()
        source = SOURCE_RU_MAXRSS
        if peak is None:  # Windows: no getrusage; psutil's peak working set is the same idea
            peak, source = _psutil_peak_wset(), SOURCE_PEAK_WSET
        if peak is None:
            raise OSError("no peak memory source here (no /proc, no getrusage, no psutil)")
        return MemoryReading(
            peak_bytes=peak, current_bytes=current, source=source, since_reset=False
        )
