"""``streambench system check``: what on this machine makes timings move, in the spirit of
``pyperf system show`` — each check with what it does to the numbers and how to fix it, or
"not readable here" where the kernel (or a container) does not say.

Cheap by design (a few ``/sys`` and ``/proc`` reads and one 0.15 s sample of the processes'
CPU use): :func:`summary_line` runs at the start of every ``streambench run``.
"""

from __future__ import annotations

import argparse
import glob
import os
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["Check", "add_parser", "checks", "cmd_system", "summary_line"]

_CPU = "/sys/devices/system/cpu"
#: a process using this share of one CPU or more during the sample is "busy"
BUSY_PROCESS = 0.10
SAMPLE_S = 0.15


@dataclass(frozen=True)
class Check:
    """One finding: ``state`` is ``ok``, ``warn`` or ``unknown`` (not readable here)."""

    name: str
    state: str
    value: str
    effect: str
    fix: str


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return None


def _governor() -> Check:
    values = {_read(p) for p in glob.glob(f"{_CPU}/cpu[0-9]*/cpufreq/scaling_governor")} - {None}
    effect = (
        "a governor other than performance changes the clock with the load: early tokens run "
        "at a lower clock than later ones, and trials vary"
    )
    fix = "sudo cpupower frequency-set -g performance"
    if not values:
        return Check("CPU governor", "unknown", "not readable here", effect, fix)
    text = ", ".join(sorted(v for v in values if v))
    return Check("CPU governor", "ok" if values == {"performance"} else "warn", text, effect, fix)


def _turbo() -> Check:
    effect = (
        "turbo clocks depend on temperature and on how many cores are busy: numbers drift as "
        "the machine heats up or neighbours start"
    )
    no_turbo = _read(f"{_CPU}/intel_pstate/no_turbo")
    if no_turbo in ("0", "1"):
        on = no_turbo == "0"
        fix = f"echo 1 | sudo tee {_CPU}/intel_pstate/no_turbo (stable, not fastest numbers)"
        return Check("turbo boost", "warn" if on else "ok", "on" if on else "off", effect, fix)
    boost = _read(f"{_CPU}/cpufreq/boost")
    if boost in ("0", "1"):
        on = boost == "1"
        fix = f"echo 0 | sudo tee {_CPU}/cpufreq/boost (stable, not fastest numbers)"
        return Check("turbo boost", "warn" if on else "ok", "on" if on else "off", effect, fix)
    return Check("turbo boost", "unknown", "not readable here", effect, "-")


def _smt() -> Check:
    effect = (
        "hyper-threads share a core: a process on the sibling thread slows the benchmark's "
        "threads without showing as load on their CPU"
    )
    fix = "keep the machine otherwise idle, or pin with taskset to one thread per core"
    control = _read(f"{_CPU}/smt/control")
    if control is None:
        return Check("SMT (hyper-threading)", "unknown", "not readable here", effect, fix)
    state = "ok" if control in ("off", "forceoff", "notsupported", "notimplemented") else "warn"
    return Check("SMT (hyper-threading)", state, control, effect, fix)


def _thermal() -> Check:
    effect = "a CPU that throttled for heat runs slower until it cools: trials drift downwards"
    fix = "improve cooling, lower the load, or leave time between runs"
    counts = [_read(p) for p in glob.glob(f"{_CPU}/cpu[0-9]*/thermal_throttle/core_throttle_count")]
    numbers = [int(c) for c in counts if c and c.isdigit()]
    if not numbers:
        return Check("thermal throttling", "unknown", "not readable here", effect, fix)
    total = sum(numbers)
    state = "warn" if total else "ok"
    return Check("thermal throttling", state, f"{total} event(s) since boot", effect, fix)


def _cgroup() -> Check:
    effect = "a CPU quota stops this container for the rest of each period once it is used up"
    fix = "raise the container's CPU limit, or use fewer threads (OMP_NUM_THREADS)"
    text = _read("/sys/fs/cgroup/cpu.max")
    if text is None:
        return Check("cgroup CPU quota", "unknown", "not readable here", effect, fix)
    quota, _, period = text.partition(" ")
    if quota == "max":
        return Check("cgroup CPU quota", "ok", "none", effect, fix)
    try:
        cpus = int(quota) / int(period)
    except ValueError:
        return Check("cgroup CPU quota", "unknown", text, effect, fix)
    state = "warn" if cpus < (os.cpu_count() or 1) else "ok"
    return Check("cgroup CPU quota", state, f"{cpus:g} CPU(s)", effect, fix)


def _sample() -> tuple[list[tuple[str, float]], float | None, float | None]:
    """Over :data:`SAMPLE_S`: the other busy processes (name, share of one CPU), the share of
    all CPUs they used together, and the steal share; ``None`` where not readable."""
    from ..runners.local.interference import Snapshot, TrialLoad

    try:
        import psutil
    except ImportError:  # pragma: no cover - a dependency
        psutil = None
    mine = {os.getpid()}
    procs = []
    if psutil is not None:
        mine |= {c.pid for c in psutil.Process().children(recursive=True)}
        for p in psutil.process_iter(["name"]):
            try:
                p.cpu_percent(None)
                procs.append(p)
            except psutil.Error:
                continue
    a = Snapshot.take()
    time.sleep(SAMPLE_S)
    load = TrialLoad.between(a, Snapshot.take())
    busy = []
    for p in procs:
        try:
            share = p.cpu_percent(None) / 100
        except psutil.Error:
            continue
        if p.pid not in mine and share >= BUSY_PROCESS:
            busy.append((f"{p.info.get('name') or '?'}[{p.pid}]", share))
    busy.sort(key=lambda item: -item[1])
    return busy, load.other_cpu_share, load.steal_share


def _busy(busy: list[tuple[str, float]], other: float | None) -> Check:
    effect = "other processes take CPU time, caches and memory bandwidth from the benchmark"
    fix = (
        "close them, or measure with --interleave and --trials auto so that both sides of a "
        "comparison see the same load"
    )
    if other is None:
        return Check("other busy processes", "unknown", "not readable here", effect, fix)
    names = ", ".join(f"{n} {s:.2f} CPU" for n, s in busy[:3]) + (" …" if len(busy) > 3 else "")
    value = f"{len(busy)} using {other * 100:.0f} % of all CPUs" + (f" ({names})" if busy else "")
    return Check("other busy processes", "warn" if other >= 0.10 else "ok", value, effect, fix)


def _steal(steal: float | None) -> Check:
    effect = "a virtual machine whose host lends its CPUs to other guests runs slower at random"
    fix = "use a dedicated or larger instance"
    if steal is None:
        return Check("CPU steal (VM)", "unknown", "not readable here", effect, fix)
    return Check(
        "CPU steal (VM)", "warn" if steal >= 0.02 else "ok", f"{steal * 100:.0f} %", effect, fix
    )


def checks() -> list[Check]:
    """Every check, in a fixed order (about 0.15 s)."""
    busy, other, steal = _sample()
    return [_governor(), _turbo(), _smt(), _thermal(), _cgroup(), _busy(busy, other), _steal(steal)]


def summary_line(found: list[Check] | None = None) -> str:
    """One line for the start of ``streambench run``: what to worry about, or that all is well."""
    found = checks() if found is None else found
    warn = [f"{c.name}: {c.value.split(' (')[0]}" for c in found if c.state == "warn"]
    unknown = sum(1 for c in found if c.state == "unknown")
    head = "system: " + ("; ".join(warn) if warn else "nothing that moves timings found")
    tail = f" ({unknown} check(s) not readable here)" if unknown else ""
    return head + tail + " — details: streambench system check"


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """``streambench system check``."""
    system = sub.add_parser(
        "system",
        parents=[common],
        help="check this machine for what makes timings move",
        description="Check this machine for what makes timings move (governor, turbo, SMT, "
        "thermal throttling, CPU quota, other busy processes, steal).",
    )
    what = system.add_subparsers(dest="system_command", metavar="check")
    check = what.add_parser("check", parents=[common], help="run the checks")
    check.set_defaults(func=cmd_system)
    system.set_defaults(func=cmd_system)


def cmd_system(args: argparse.Namespace) -> int:
    """Print every check (a plain layout that reads at any width and in CI logs); exit 0: the
    findings are advice, not failures."""
    from ..terminal import console as inert_console
    from ..terminal import inert_markup as escape  # process names come from /proc: shown inert

    # no hard wrap: a CI log or a pipe gets whole lines, the terminal wraps them itself
    console = inert_console(highlight=False, soft_wrap=True)
    marks = {"ok": "[green]ok  [/green]", "warn": "[yellow]warn[/yellow]", "unknown": "?   "}
    found = checks()
    console.print("[bold]streambench system check[/bold]")
    for c in found:
        console.print(f"{marks[c.state]}  [bold]{c.name}[/bold]: {escape(c.value)}")
        console.print(f"      what it does: {escape(c.effect)}")
        if c.state != "ok" and c.fix != "-":
            console.print(f"      fix: {escape(c.fix)}")
    console.print(summary_line(found))
    return 0
