"""Intel GPU telemetry through ``xpu-smi dump``, the command line of Intel XPU Manager.

``xpu-smi dump -d N -m 0,1,2,3,18 -i 1`` prints a CSV header, then one row a second (``-i``
counts whole seconds; the faster ``--ims`` writes only to a file)::

    Timestamp, DeviceId, GPU Utilization (%), GPU Power (W), GPU Frequency (MHz), ...
    06:14:46.000,    0, 0.00, 14.61,    0, ...

:class:`XpuSmiSource` keeps that one process running while it is polled, reads its rows on a
thread, and hands each row to the :class:`~streambench.telemetry.Sampler` once: a poll with no
new row reads nothing. A row's values are averages over the second before it was printed, so
its keys have a stated resolution of 1 s, and energy per phase (power integrated over time) is
``None`` for phases shorter than that. Columns are found by their header names, values that
are not finite non-negative numbers (``N/A``, blanks) are left out, and a line is read at most
4 KiB long.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import threading
from collections.abc import Mapping
from typing import IO, Any, Optional

__all__ = ["XPU_SMI_COLUMNS", "XpuSmiSource"]

#: xpu-smi dump's metric ids read here, and per header name: (reading key, factor to its unit)
METRIC_IDS = "0,1,2,3,18"
XPU_SMI_COLUMNS: dict[str, tuple[str, float]] = {
    "GPU Utilization (%)": ("utilization_pct", 1.0),
    "GPU Power (W)": ("power_w", 1.0),
    "GPU Frequency (MHz)": ("gpu_clock_mhz", 1.0),
    "GPU Core Temperature (Celsius Degree)": ("temperature_c", 1.0),
    "GPU Memory Used (MiB)": ("memory_used_bytes", float(2**20)),
}
MAX_LINE = 4096


class XpuSmiSource:
    """One Intel GPU (``xpu:N`` → xpu-smi device ``N``) through a running ``xpu-smi dump``.

    Readings: ``utilization_pct`` (GPU utilization), ``power_w``, ``gpu_clock_mhz`` (GPU
    frequency), ``temperature_c`` (GPU core) and ``memory_used_bytes`` (device memory used, MiB →
    bytes), each the device-level value xpu-smi prints (tiles averaged or summed as it
    documents). No energy counter is read: energy per phase comes from integrating power.
    ``executable``: the ``xpu-smi`` to run (default: the one on ``PATH``).
    """

    def __init__(
        self,
        device_index: int = 0,
        *,
        executable: Optional[str] = None,
        start_timeout_s: float = 5.0,
    ) -> None:
        self.device_index = int(device_index)
        self.name = f"xpu-smi:{self.device_index}"
        self.resolution_s: Mapping[str, float] = {key: 1.0 for key, _ in XPU_SMI_COLUMNS.values()}
        self.executable = executable
        self.start_timeout_s = start_timeout_s
        self._proc: Optional[subprocess.Popen[str]] = None
        self._lock = threading.Lock()
        self._header = threading.Event()
        self._columns: dict[int, tuple[str, float]] = {}
        self._latest: Optional[dict[str, Any]] = None
        self._error: Optional[str] = None
        self._skipped: list[str] = []

    # -- the process --------------------------------------------------------------------------
    def available(self) -> tuple[bool, str]:
        if self._proc is not None:
            return (False, self._error) if self._error else (True, "")
        exe = self.executable or shutil.which("xpu-smi")
        if exe is None:
            return False, "xpu-smi not found on PATH (Intel GPU telemetry is read through it)"
        cmd = [exe, "dump", "-d", str(self.device_index), "-m", METRIC_IDS, "-i", "1"]
        try:
            self._proc = subprocess.Popen(
                cmd,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
                errors="replace",
            )
        except OSError as exc:
            self._error = f"could not start {exe}: {exc}"
            return False, self._error
        threading.Thread(target=self._reader, name="streambench-xpu-smi", daemon=True).start()
        if not self._header.wait(self.start_timeout_s):
            self._fail(f"xpu-smi dump printed no header within {self.start_timeout_s:g} s")
        if self._error:
            self.close()  # e.g. a header without the columns read: the process is of no use
            return False, self._error
        return True, ""

    def _reader(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        out: IO[str] = proc.stdout
        while True:
            line = out.readline(MAX_LINE)
            if not line:
                break
            fields = [f.strip() for f in line.strip().split(",")]
            if not self._header.is_set():
                if fields and fields[0] == "Timestamp":
                    self._columns = {
                        i: XPU_SMI_COLUMNS[name]
                        for i, name in enumerate(fields)
                        if name in XPU_SMI_COLUMNS
                    }
                    if not self._columns:
                        self._fail(f"xpu-smi dump header has none of the columns read: {line!r}")
                        return
                    self._header.set()
                continue
            row = self._parse(fields)
            with self._lock:
                self._latest = row
        rc = proc.wait()
        err = proc.stderr.read(MAX_LINE).strip().splitlines() if proc.stderr else []
        self._fail(f"xpu-smi dump exited with code {rc}" + (f": {err[0]}" if err else ""))

    def _fail(self, why: str) -> None:
        with self._lock:
            if self._error is None:
                self._error = why
        self._header.set()  # wake available() if it still waits

    def _parse(self, fields: list[str]) -> dict[str, Any]:
        row: dict[str, Any] = {}
        for i, (key, factor) in self._columns.items():
            if i >= len(fields):
                continue
            try:
                value = float(fields[i]) * factor
            except ValueError:
                value = math.nan
            if math.isfinite(value) and value >= 0:
                row[key] = int(value) if key == "memory_used_bytes" else value
            elif key not in self._skipped:
                self._skipped.append(key)
        return row

    # -- Source -------------------------------------------------------------------------------
    def read(self) -> dict[str, Any]:
        """The row printed since the last read (``{}`` when none came)."""
        with self._lock:
            if self._error is not None and self._latest is None:
                raise RuntimeError(f"{self.name}: {self._error}")
            row, self._latest = self._latest, None
        return row or {}

    def warnings(self) -> list[str]:
        if not self._skipped:
            return []
        return [f"{self.name}: xpu-smi printed no number for {', '.join(self._skipped)}"]

    def close(self) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(2.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
