"""Isolation and telemetry check: what a worker process per configuration costs, whether the peak
memory of a configuration depends on what ran before it, and (on an NVIDIA GPU) whether NVML's
energy counter agrees with its power readings integrated over time.

1. Isolation cost: ``streambench run`` of the same 4 configurations (issue 28's sweep) with each
   ``--isolate`` mode (``none``, ``model``, ``config``: forked from the warm process, ``fresh``: a
   fresh Python per configuration), wall and CPU time of the whole command, rotated order per
   round, and ``--interleave`` in this process (``none``) and with forked workers in rotation
   (``config``); the cost per configuration is ``(mode - none) / 4`` of the medians.
2. Order independence: peak memory of batch 1 alone vs batch 1 right after (or, interleaved,
   in rotation with) batch 32, with ``--isolate none`` (one process), ``config`` and ``fresh``,
   and both ``--interleave`` modes; the difference in percent.
3. NVML (``--device cuda`` with ``nvidia-ml-py`` installed): a few seconds of generation sampled
   by :class:`streambench.telemetry.Sampler`; energy from the counter vs the trapezoid integral of
   power over the same window, and energy per phase of one configuration.

Writes ``benchmarks/results/isolation_check.{json,md}`` (``--out DIR`` elsewhere).

Run:  .venv/bin/python benchmarks/isolation_check.py            (CPU, about 3 min on 2 cores)
      python benchmarks/isolation_check.py --device cuda --out $OUT   (GPU machine)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as C


def streambench(*args: str) -> tuple[float, dict[str, Any], float]:
    """Wall seconds of one ``streambench run``, its results document, and the CPU seconds
    (user + system) of its whole process tree (every descendant is reaped by its parent, so
    ``RUSAGE_CHILDREN`` counts the warm process and its workers too): on a shared machine the
    CPU time moves less than the wall time."""
    import resource

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "streambench", "run", *args, "-o", str(out)],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if proc.returncode != 0:
            raise RuntimeError(f"streambench run {' '.join(args)} failed: {proc.stderr[-2000:]}")
        return wall, json.loads(out.read_text()), cpu


#: the sweep of issue 28: four configurations of the embedded tiny model, one trial each
COST_SWEEP = ["--in-out", "8-4,12-4,16-4,20-4", "--trials", "1", "--warmup", "0"]
MODES = ("none", "model", "config", "fresh", "none --interleave", "config --interleave")


def mode_args(mode: str) -> list[str]:
    """``"config --interleave"`` -> ``["--isolate", "config", "--interleave"]``."""
    isolate, *rest = mode.split()
    return ["--isolate", isolate, *rest]


def isolation_cost(device: str, rounds: int) -> dict[str, Any]:
    """Each ``--isolate`` mode on :data:`COST_SWEEP`, in rotated order per round; the cost per
    configuration is ``(mode - none) / N`` of the medians."""
    base = ["--device", device, *COST_SWEEP, "--no-telemetry"]
    n = 4
    walls: dict[str, list[float]] = {m: [] for m in MODES}
    cpus: dict[str, list[float]] = {m: [] for m in MODES}
    for r in range(rounds):
        for mode in MODES[r % len(MODES) :] + MODES[: r % len(MODES)]:
            wall, _doc, cpu = streambench(*base, *mode_args(mode))
            walls[mode].append(wall)
            cpus[mode].append(cpu)
    med = {k: statistics.median(v) for k, v in walls.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpus.items()}
    return {
        "configurations": n,
        "rounds": rounds,
        "wall_s": walls,
        "cpu_s": cpus,
        "median_wall_s": med,
        "median_cpu_s": med_cpu,
        "cost_per_configuration_s": {k: (med[k] - med["none"]) / n for k in MODES[1:]},
        "cpu_cost_per_configuration_s": {k: (med_cpu[k] - med_cpu["none"]) / n for k in MODES[1:]},
    }


def order_independence(device: str) -> dict[str, Any]:
    """Batch 1's peak memory alone and right after batch 32, per mode (``model`` shares one
    process per model, like ``none``)."""
    args = ["--device", device, "--in-out", "256-32", "--warmup", "0", "--trials", "2"]
    out: dict[str, Any] = {}
    for mode in ("none", "config", "fresh", "none --interleave", "config --interleave"):

        def peak(batches: str, mode: str = mode) -> int:
            _, doc, _cpu = streambench(*args, "--batch-size", batches, *mode_args(mode))
            (bs1,) = [e for e in doc["configurations"] if e["settings"]["batch_size"] == 1]
            return int(bs1["aggregates"]["peak_memory_bytes"])

        alone, after = peak("1"), peak("32,1")
        out[mode] = {
            "batch1_alone_bytes": alone,
            "batch1_after_batch32_bytes": after,
            "difference_pct": 100.0 * (after - alone) / alone,
        }
    return out


def nvml_energy(seconds: float) -> dict[str, Any] | None:
    """Counter energy vs integrated power over a window of sustained generation (CUDA)."""
    try:
        import pynvml  # noqa: F401
        import torch
    except ImportError:
        return None
    from streambench.telemetry import NvmlSource, Sampler
    from streambench.tiny import build_model, tiny_llama_config

    model = build_model(
        tiny_llama_config(hidden_size=2048, intermediate_size=5632, num_hidden_layers=16)
    ).to("cuda", torch.bfloat16)
    ids = torch.randint(3, 200, (8, 256), device="cuda")
    sampler = Sampler([NvmlSource(torch.cuda.current_device())], period_s=0.05).start()
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        model.generate(ids, max_new_tokens=64, min_new_tokens=64, do_sample=False)
        torch.cuda.synchronize()
    sampler.stop()
    trace = next(iter(sampler.traces().values()))
    points = [(s.t, s.readings) for s in trace]
    energy = [(t, r["energy_j"]) for t, r in points if "energy_j" in r]
    power = [(t, r["power_w"]) for t, r in points if "power_w" in r]
    counter_j = energy[-1][1] - energy[0][1] if len(energy) > 1 else None
    integral_j = sum((b[0] - a[0]) * (a[1] + b[1]) / 2 for a, b in zip(power, power[1:]))
    return {
        "window_s": points[-1][0] - points[0][0] if points else None,
        "samples": len(points),
        "counter_energy_j": counter_j,
        "integrated_power_j": integral_j,
        "ratio": counter_j / integral_j if counter_j and integral_j else None,
        "warnings": sampler.warnings,
    }


def render(data: dict[str, Any]) -> str:
    iso = data["isolation_cost"]
    lines = [
        "### Isolation cost",
        "",
        f"`streambench run {' '.join(COST_SWEEP)}`, {iso['rounds']} rounds, medians",
        "",
        C.md_table(
            ["--isolate", "wall (s)", "per configuration vs none (s)", "CPU (s)", "CPU vs none"],
            [
                [
                    k,
                    C.fmt(v, 2),
                    C.fmt(iso["cost_per_configuration_s"].get(k), 2),
                    C.fmt(iso["median_cpu_s"][k], 2),
                    C.fmt(iso["cpu_cost_per_configuration_s"].get(k), 2),
                ]
                for k, v in iso["median_wall_s"].items()
            ],
        ),
        "",
        "### Peak memory of batch 1: alone vs after batch 32",
        "",
        C.md_table(
            ["--isolate", "alone (MiB)", "after batch 32 (MiB)", "difference"],
            [
                [
                    k,
                    C.fmt(v["batch1_alone_bytes"] / 2**20, 1),
                    C.fmt(v["batch1_after_batch32_bytes"] / 2**20, 1),
                    f"{v['difference_pct']:+.2f} %",
                ]
                for k, v in data["order_independence"].items()
            ],
        ),
    ]
    if data.get("nvml"):
        n = data["nvml"]
        lines += [
            "",
            "### NVML energy counter vs integrated power",
            "",
            f"window {C.fmt(n['window_s'], 2)} s, {n['samples']} samples: counter "
            f"{C.fmt(n['counter_energy_j'], 1)} J, power integral "
            f"{C.fmt(n['integrated_power_j'], 1)} J, ratio {C.fmt(n['ratio'], 3)}",
        ]
    return "\n".join(lines) + "\n\n" + C.machine_line(data["machine"]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=None)
    parser.add_argument("--quick", action="store_true", help="one round (a smoke test)")
    args = parser.parse_args(argv)
    data: dict[str, Any] = {"machine": C.machine_info()}
    data["isolation_cost"] = isolation_cost(args.device, 1 if args.quick else args.rounds)
    data["order_independence"] = order_independence(args.device)
    if args.device.startswith("cuda"):
        data["nvml"] = nvml_energy(5.0 if args.quick else 20.0)
    C.write_results("isolation_check", data, render(data), C.out_dir(args.out, args.quick))
    print(render(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
