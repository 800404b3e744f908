"""Start-up: ``import streambench`` and ``streambench --help``, in fresh interpreters.

Each command runs N times as a subprocess, the commands interleaved; the median wall time is
reported beside ``python -c pass`` (the interpreter's own start-up), and ``-X importtime`` tells
whether torch or transformers were imported (a CLI that imports torch before it needs it is slow).

Run:  .venv/bin/python benchmarks/startup.py  (about 30 s)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _common as C

HEAVY = ("torch", "transformers", "numpy")


def commands() -> dict[str, list[str]]:
    py = sys.executable
    cmds = {
        "python -c pass": [py, "-c", "pass"],
        "import streambench": [py, "-c", "import streambench"],
        "python -m streambench --help": [py, "-m", "streambench", "--help"],
        "from streambench import TimingStreamer (loads torch + transformers)": [
            py,
            "-c",
            "from streambench import TimingStreamer",
        ],
    }
    script = shutil.which("streambench", path=str(Path(py).parent))
    if script:
        cmds["streambench --help"] = [script, "--help"]
    return cmds


def environments(cache_dir: str) -> dict[str, dict[str, str]]:
    """Two ways to start: with compiled bytecode cached (as after ``pip install``; written to a
    temporary ``PYTHONPYCACHEPREFIX``, not into the repository) and with none (every module
    compiled from source at each start, as under ``PYTHONDONTWRITEBYTECODE=1`` in a source
    checkout; the standard library keeps its own cached bytecode)."""
    base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {
        "cached": dict(base, PYTHONPYCACHEPREFIX=cache_dir),
        "no_pyc": dict(base, PYTHONDONTWRITEBYTECODE="1"),
    }


def heavy_imports(cmd: list[str], env: dict[str, str]) -> list[str]:
    """Top-level heavy packages imported by ``cmd`` (from ``-X importtime``)."""
    env = dict(env, PYTHONPROFILEIMPORTTIME="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    found = set()
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        name = line.rsplit("|", 1)[-1].strip()
        if name.split(".")[0] in HEAVY:
            found.add(name.split(".")[0])
    return sorted(found)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--quick", action="store_true", help="3 repetitions: a smoke test")
    ap.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeat = 3
    import tempfile

    cmds = commands()
    with tempfile.TemporaryDirectory() as cache:
        envs = environments(cache)
        times = {(k, e): [] for k in cmds for e in envs}
        rc: dict[str, int] = {}
        for k, cmd in cmds.items():  # fill the bytecode cache and the page cache once
            rc[k] = subprocess.run(
                cmd, capture_output=True, check=False, env=envs["cached"]
            ).returncode
        for _ in range(args.repeat):
            for (k, e), v in times.items():
                t0 = time.perf_counter()
                subprocess.run(cmds[k], capture_output=True, check=False, env=envs[e])
                v.append(time.perf_counter() - t0)
        res = {
            k: {
                "median_s": statistics.median(times[(k, "cached")]),
                "min_s": min(times[(k, "cached")]),
                "median_no_pyc_s": statistics.median(times[(k, "no_pyc")]),
                "exit_code": rc[k],
                "heavy_imports": heavy_imports(cmd, envs["cached"]),
            }
            for k, cmd in cmds.items()
        }
    data = {"machine": C.machine_info(), "repeat": args.repeat, "commands": res}
    data["load_average_after"] = C.load_average()
    base = res["python -c pass"]["median_s"]
    rows = [
        [
            f"`{k}`" if "(" not in k else k,
            f"{v['median_s'] * 1e3:.0f}",
            f"{(v['median_s'] - base) * 1e3:+.0f}" if k != "python -c pass" else "",
            f"{v['median_no_pyc_s'] * 1e3:.0f}",
            ", ".join(v["heavy_imports"]) or "none",
            v["exit_code"],
        ]
        for k, v in res.items()
    ]
    md = "\n".join(
        [
            f"### Start-up (median of {args.repeat} fresh processes)",
            "",
            C.md_table(
                [
                    "command",
                    "wall ms",
                    "ms over `python -c pass`",
                    "wall ms without .pyc files",
                    "heavy imports",
                    "exit code",
                ],
                rows,
            ),
            "",
            f"Machine: {C.machine_line(data['machine'])} · load after {data['load_average_after']}",
        ]
    )
    C.write_results("startup", data, md, C.out_dir(args.out, args.quick))
    print(md)
    return data


if __name__ == "__main__":
    main()
