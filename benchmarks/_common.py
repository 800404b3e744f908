"""Shared helpers of the benchmark scripts: machine facts, result files, markdown tables, and a
known-latency model (forward passes that sleep a set time, timed by forward hooks).

Every script writes ``benchmarks/results/NAME.json`` (numbers + the machine they ran on) and
``benchmarks/results/NAME.md`` (the same as markdown tables). Times are seconds in JSON unless a
key says otherwise (``_us``, ``_ms``).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (``None`` where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def cpu_model() -> str:
    try:
        from streambench.devices import cpu_model as from_proc
    except ImportError:  # a peer's venv without streambench

        def from_proc() -> None:
            return None

    return from_proc() or platform.processor() or platform.machine()


def cpu_details() -> dict[str, Any]:
    """CPU family/model (identifies the generation when the model name is generic, as in many
    VMs), whether it runs under a hypervisor, and the memory size (Linux)."""
    out: dict[str, Any] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key in ("cpu family", "model", "stepping") and key not in out:
                    out[key] = value
                elif key == "flags" and "hypervisor" not in out:
                    out["hypervisor"] = "hypervisor" in value.split()
                elif not key and out:
                    break
        with open("/proc/meminfo") as f:
            out["memory_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return out


def _version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # noqa: BLE001 - not installed is an answer
        return None


def importable(name: str) -> bool:
    """Whether ``import name`` would find a module (without importing it)."""
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info() -> dict[str, Any]:
    """What the numbers ran on: CPU, cores, versions, date, load. Imports torch if installed."""
    info: dict[str, Any] = {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu_model": cpu_model(),
        "cpu_details": cpu_details(),
        "logical_cpus": os.cpu_count(),
        "load_average_1_5_15": load_average(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "torch": _version("torch"),
        "transformers": _version("transformers"),
        "streambench": _version("streambench"),
        "git_commit": git_commit(),
    }
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; numbers are written as given (format them first)."""
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        out.append("| " + " | ".join("" if v is None else str(v) for v in row) + " |")
    return "\n".join(out)


def machine_line(info: dict[str, Any]) -> str:
    load = info.get("load_average_1_5_15")
    d = info.get("cpu_details") or {}
    fam = f" (family {d['cpu family']} model {d['model']})" if "cpu family" in d else ""
    vm = ", VM" if d.get("hypervisor") else ""
    return (
        f"{info['date_utc']} · {info['cpu_model']}{fam}{vm} · {info['logical_cpus']} logical CPUs"
        f" · {d.get('memory_gib', '?')} GiB"
        f" · torch threads {info.get('torch_threads')} · load {load}"
        f" · Python {info['python']} · torch {info['torch']}"
        f" · transformers {info['transformers']} · streambench {info['streambench']}"
        f" ({info.get('git_commit')})"
    )


def out_dir(out: str | None, quick: bool) -> Path:
    """Where results go: ``--out``, else benchmarks/results — except quick smoke runs, whose
    numbers mean nothing and go to a temporary folder."""
    if out:
        return Path(out)
    if quick:
        import tempfile

        return Path(tempfile.gettempdir()) / "streambench-bench-quick"
    return RESULTS


def write_results(
    name: str, data: dict[str, Any], markdown: str, out_dir: Path | None = None
) -> Path:
    """Write ``NAME.json`` and ``NAME.md`` under ``out_dir`` (default benchmarks/results)."""
    out_dir = out_dir or RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    (out_dir / f"{name}.md").write_text(markdown.rstrip() + "\n")
    return path


def fmt(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


class KnownLatency:
    """Makes a model's forward pass sleep a set time and records when each forward began/ended.

    ``prefill_s`` for a forward over more than one position (the prompt), ``decode_s`` for a
    one-position step. ``starts``/``ends`` are ``time.perf_counter()`` stamps taken by a forward
    pre-hook (before the sleep) and a forward hook (after the forward returned): the ground truth.
    Same mechanism as ``tests/conftest.py``'s ``KnownLatency``.
    """

    def __init__(self, model: Any, prefill_s: float = 0.050, decode_s: float = 0.010) -> None:
        self.prefill_s, self.decode_s = prefill_s, decode_s
        self.starts: list[float] = []
        self.ends: list[float] = []
        self._pre = model.register_forward_pre_hook(self._before, with_kwargs=True)
        self._post = model.register_forward_hook(self._after)

    def clear(self) -> None:
        self.starts.clear()
        self.ends.clear()

    def _before(self, module: Any, args: Any, kwargs: Any) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.starts.append(time.perf_counter())
        length = ids.shape[-1] if ids is not None else 1
        time.sleep(self.prefill_s if length > 1 else self.decode_s)

    def _after(self, module: Any, args: Any, output: Any) -> None:
        self.ends.append(time.perf_counter())

    def remove(self) -> None:
        self._pre.remove()
        self._post.remove()
