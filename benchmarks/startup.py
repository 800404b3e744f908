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


def heavy_imports(cmd: list[str]) -> list[str]:
    """Top-level heavy packages imported by ``cmd`` (from ``-X importtime``)."""
    env = dict(os.environ, PYTHONPROFILEIMPORTTIME="1")
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
    cmds = commands()
    times: dict[str, list[float]] = {k: [] for k in cmds}
    rc: dict[str, int] = {}
    for k, cmd in cmds.items():  # warm the page cache once
        rc[k] = subprocess.run(cmd, capture_output=True, check=False).returncode
    for _ in range(args.repeat):
        for k, cmd in cmds.items():
            t0 = time.perf_counter()
            subprocess.run(cmd, capture_output=True, check=False)
            times[k].append(time.perf_counter() - t0)
    res = {
        k: {
            "median_s": statistics.median(v),
            "min_s": min(v),
            "exit_code": rc[k],
            "heavy_imports": heavy_imports(cmds[k]),
        }
        for k, v in times.items()
    }
    data = {"machine": C.machine_info(), "repeat": args.repeat, "commands": res}
    data["load_average_after"] = C.load_average()
    base = res["python -c pass"]["median_s"]
    rows = [
        [
            f"`{k}`" if "(" not in k else k,
            f"{v['median_s'] * 1e3:.0f}",
            f"{(v['median_s'] - base) * 1e3:+.0f}" if k != "python -c pass" else "",
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
                ["command", "wall ms", "ms over `python -c pass`", "heavy imports", "exit code"],
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
