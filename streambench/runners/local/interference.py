"""What else used the machine while a trial ran (pure Python and a few ``/proc`` reads; no torch).

A :class:`Snapshot` is taken right before and right after each trial — never inside the timed
region, never per token. Two snapshots give a :class:`TrialLoad`:

- ``other_cpu_share``: the CPU time of *other* processes as a share of the machine's capacity
  (all CPUs x wall time): the busy time of ``/proc/stat`` minus this process tree's own CPU time
  (this process, its finished children and its live children). 0.41 means other processes kept
  41 % of all CPUs busy during the trial;
- ``steal_share``: time the hypervisor gave this VM's CPUs to someone else (``/proc/stat`` steal),
  as a share of capacity;
- ``own_cpu_share``: this process tree's CPU time, same unit (for reference);
- ``load_avg_1m``: the 1-minute load average at the end of the trial;
- ``throttled_s`` / ``nr_throttled``: where the cgroup's ``cpu.stat`` is readable, how long and
  how often the cgroup's CPU quota stopped this container during the trial;
- ``cpu_mhz``: the mean current CPU frequency at the end, where ``cpufreq`` is readable.

A trial is *busy* when other processes or steal took at least ``threshold`` of the capacity, or
the cgroup was throttled. :func:`assess` turns the trials' loads and timings into the
configuration's ``warnings`` (busy trials, and outlier trials by a robust z-score: median and
MAD over trials).

Inside a container, ``/proc/stat`` may count the whole host: other tenants' load then shows as
other processes' CPU share, which is what it is — load beside the benchmark.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "DEFAULT_BUSY_THRESHOLD",
    "OUTLIER_Z",
    "Snapshot",
    "TrialLoad",
    "assess",
    "outliers",
    "robust_z",
]

#: a trial is busy when other processes (or steal) took this share of all CPUs or more
DEFAULT_BUSY_THRESHOLD = 0.20
#: a trial whose robust z-score (0.6745 (x - median) / MAD) is beyond this is an outlier
#: (Iglewicz and Hoaglin's usual cut-off)
OUTLIER_Z = 3.5

_CGROUP_STATS = ("/sys/fs/cgroup/cpu.stat", "/sys/fs/cgroup/cpu/cpu.stat")
_CPUFREQ = "/sys/devices/system/cpu/cpufreq"


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _proc_stat() -> tuple[int, int, int] | None:
    """``(busy, steal, total)`` jiffies over all CPUs from ``/proc/stat``'s first line."""
    text = _read("/proc/stat")
    if not text or not text.startswith("cpu "):
        return None
    fields = [int(x) for x in text.split("\n", 1)[0].split()[1:]]
    fields += [0] * (8 - len(fields))
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    # guest time is already inside user/nice: not added again
    return user + nice + system + irq + softirq, steal, sum(fields[:8])


def _own_cpu_s() -> float:
    """CPU seconds of this process, its waited-for children and its live children."""
    t = os.times()
    total = t.user + t.system + t.children_user + t.children_system
    try:
        import psutil

        for child in psutil.Process().children(recursive=True):
            try:
                c = child.cpu_times()
                total += c.user + c.system
            except psutil.Error:  # gone meanwhile
                continue
    except (ImportError, OSError):
        pass
    return total


def _cgroup_throttle() -> tuple[int, float] | None:
    """``(nr_throttled, throttled seconds)`` of this cgroup (v2 ``throttled_usec``, v1
    ``throttled_time`` in ns), or ``None`` where not readable."""
    for path in _CGROUP_STATS:
        text = _read(path)
        if text is None:
            continue
        values = dict(line.split()[:2] for line in text.splitlines() if len(line.split()) >= 2)
        try:
            count = int(values["nr_throttled"])
            if "throttled_usec" in values:
                return count, int(values["throttled_usec"]) / 1e6
            return count, int(values["throttled_time"]) / 1e9
        except (KeyError, ValueError):
            continue
    return None


def _cpu_mhz() -> float | None:
    """The mean current frequency over the cpufreq policies (MHz), where readable."""
    try:
        policies = [p for p in os.listdir(_CPUFREQ) if p.startswith("policy")]
    except OSError:
        return None
    khz = []
    for p in policies:
        text = _read(f"{_CPUFREQ}/{p}/scaling_cur_freq")
        if text and text.strip().isdigit():
            khz.append(int(text.strip()))
    return sum(khz) / len(khz) / 1000 if khz else None


@dataclass(frozen=True)
class Snapshot:
    """The machine's counters at one moment (see the module docstring)."""

    t: float
    proc_stat: tuple[int, int, int] | None
    own_cpu_s: float
    throttle: tuple[int, float] | None

    @classmethod
    def take(cls) -> Snapshot:
        return cls(time.perf_counter(), _proc_stat(), _own_cpu_s(), _cgroup_throttle())


@dataclass(frozen=True)
class TrialLoad:
    """What else used the machine during one trial (shares of all CPUs x wall time; see the
    module docstring). ``None`` where the kernel does not say."""

    wall_s: float
    other_cpu_share: float | None
    steal_share: float | None
    own_cpu_share: float | None
    load_avg_1m: float | None
    nr_throttled: int | None
    throttled_s: float | None
    cpu_mhz: float | None

    @classmethod
    def between(cls, a: Snapshot, b: Snapshot) -> TrialLoad:
        other = steal = own = None
        if a.proc_stat is not None and b.proc_stat is not None:
            busy = b.proc_stat[0] - a.proc_stat[0]
            total = b.proc_stat[2] - a.proc_stat[2]
            if total > 0:
                hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
                own_ticks = (b.own_cpu_s - a.own_cpu_s) * hz
                # jiffy counters are coarse (10 ms): a short trial reads 0 or one tick
                other = min(1.0, max(0.0, (busy - own_ticks) / total))
                steal = min(1.0, max(0.0, (b.proc_stat[1] - a.proc_stat[1]) / total))
                own = min(1.0, max(0.0, own_ticks / total))
        nr = thr = None
        if a.throttle is not None and b.throttle is not None:
            nr = b.throttle[0] - a.throttle[0]
            thr = b.throttle[1] - a.throttle[1]
        try:
            load: float | None = os.getloadavg()[0]
        except (OSError, AttributeError):
            load = None
        return cls(b.t - a.t, other, steal, own, load, nr, thr, _cpu_mhz())

    def busy(self, threshold: float) -> bool:
        """Other processes or steal took ``threshold`` of the CPUs or more, or the cgroup's
        quota stopped this container during the trial."""
        taken = (self.other_cpu_share or 0.0) + (self.steal_share or 0.0)
        return taken >= threshold or bool(self.nr_throttled)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, float):
                out[key] = round(value, 4)
        return out


def robust_z(values: list[float]) -> list[float]:
    """``0.6745 (x - median) / MAD`` per value; where more than half the values are equal
    (MAD 0), ``(x - median) / (1.2533 x mean absolute deviation)`` instead; all 0 when every
    value is the median or there are fewer than 3.

    >>> [round(z, 1) for z in robust_z([10.0, 11.0, 10.5, 10.2, 30.0])]
    [-0.7, 0.7, 0.0, -0.4, 26.3]
    """
    if len(values) < 3:
        return [0.0] * len(values)
    med = _median(values)
    deviations = [abs(v - med) for v in values]
    mad = _median(deviations)
    if mad > 0 and math.isfinite(mad):
        return [0.6745 * (v - med) / mad for v in values]
    mean_ad = sum(deviations) / len(deviations)
    if mean_ad == 0 or not math.isfinite(mean_ad):
        return [0.0] * len(values)
    return [(v - med) / (1.2533 * mean_ad) for v in values]


def _median(values: list[float]) -> float:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def outliers(trials: list[dict[str, Any]], limit: float = OUTLIER_Z) -> list[str]:
    """One line per outlier trial (1-based), e.g. ``"trial 3 is an outlier: first token
    238.1 ms against a median of 1.6 ms"``: robust z-score beyond ``limit`` over the trials'
    first-token time or time per later token."""
    lines = []
    for key, what in (("first_token_s", "first token"), ("rest_token_mean_s", "ms/token")):
        values = [t.get(key) for t in trials]
        if len(values) < 3 or any(not isinstance(v, (int, float)) for v in values):
            continue
        med = _median(values)
        for i, z in enumerate(robust_z(values)):
            if abs(z) > limit:
                lines.append(
                    f"trial {i + 1} is an outlier: {what} {values[i] * 1e3:.1f} ms against a "
                    f"median of {med * 1e3:.1f} ms (robust z {z:+.1f})"
                )
    return lines


def assess(
    loads: list[TrialLoad], trials: list[dict[str, Any]], threshold: float
) -> tuple[dict[str, Any], list[str]]:
    """``(entry["interference"], warnings)`` for a configuration's trials."""
    busy = [i for i, load in enumerate(loads) if load.busy(threshold)]
    record = {
        "busy_threshold": threshold,
        "busy_trials": [i + 1 for i in busy],
        "trials": [load.to_dict() for load in loads],
    }
    warnings = []
    if busy:
        shares = [(loads[i].other_cpu_share or 0.0) + (loads[i].steal_share or 0.0) for i in busy]
        text = (
            f"the machine was busy: other processes used {_median(shares) * 100:.0f} % of the CPU "
            f"during {len(busy)} of {len(loads)} trials"
        )
        if any((loads[i].steal_share or 0.0) >= 0.01 for i in busy):
            text += " (hypervisor steal included)"
        if any(loads[i].nr_throttled for i in busy):
            text += "; the cgroup's CPU quota throttled this process"
        warnings.append(text + " — `streambench system check` says what to close or change")
    warnings += outliers(trials)
    return record, warnings
