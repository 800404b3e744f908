"""Prove the regression gate: how often ``streambench compare`` (its defaults) fails identical
runs, and how often it catches a known slowdown.

(a) A/A — false positives: K identical ``streambench run`` commands, each in its own process;
    consecutive result files compared with ``streambench compare OLD NEW`` (default threshold).
    Once on the machine as it is ("quiet"), once with a process spinning a CPU beside every other
    run ("hog": the neighbour comes and goes, the worst case for a gate). A failed pair (exit 1)
    is a false positive.
(b) Power: a baseline run against a run whose model sleeps a fixed extra time in every forward
    pass (a forward pre-hook, busy-waiting for precision), sized as 2 %, 5 %, 10 %, 50 % of the
    baseline's median time per token (measured first). Caught = ``compare`` exits 1. The realised
    slowdown (ratio of the medians) is recorded beside it.

Both with the default trials and with ``--trials auto`` (``--modes``). The gate is read from
``compare``'s exit code only (0 pass, 1 regression or not comparable, 2 bad input), so the script
does not depend on its table's text; ``compare -o x.md`` is kept beside each pair for reading.

Writes ``benchmarks/results/gate_validation.{json,md}`` (``--out DIR`` elsewhere). Sizes are
options: ``--quick`` is a smoke test (K=3, one repetition of 10 % and 50 %, default trials only;
about 2 minutes on 2 cores, results to a temporary folder). A real run (K=20, 10 repetitions,
both modes) takes about an hour on 2 cores: run it on a quiet machine.

Run:  .venv/bin/python benchmarks/gate_validation.py --quick
      .venv/bin/python benchmarks/gate_validation.py --k 20 --reps 10
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as C

#: runs a ``streambench`` command with an extra busy-wait of ``argv[1]`` seconds in every forward
#: pass of every model it loads (``--isolate none``: the patch lives in this process)
SLOWED = """
import sys, time
import streambench.engines.variant_load as vl
delay = float(sys.argv[1])
real = vl.prepare_model
def spin(module, args, kwargs):
    end = time.perf_counter() + delay
    while time.perf_counter() < end:
        pass
def prepare(*a, **k):
    loaded = real(*a, **k)
    loaded.model.register_forward_pre_hook(spin, with_kwargs=True)
    return loaded
vl.prepare_model = prepare
from streambench.cli.run import main
raise SystemExit(main(sys.argv[2:]))
"""
SPIN = "while True: pass\n"


def run(args: argparse.Namespace, out: Path, mode: str, delay: float = 0.0) -> dict[str, Any]:
    """One ``streambench run`` in its own process; its results document."""
    cmd = ["run", "--in-out", args.in_out, "--isolate", "none", "--no-telemetry", "-o", str(out)]
    if mode == "auto":
        cmd += ["--trials", "auto", "--max-trials", str(args.max_trials)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    head = [sys.executable, "-c", SLOWED, str(delay)] if delay else [sys.executable, "-m"]
    full = head + (["streambench"] if not delay else []) + cmd
    proc = subprocess.run(full, capture_output=True, text=True, env=env, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-1500:]}")
    return json.loads(out.read_text())


def compare(old: Path, new: Path) -> int:
    """``streambench compare OLD NEW`` with its defaults: the exit code (0 pass, 1 fail)."""
    md = new.with_suffix(".compare.md")
    proc = subprocess.run(
        [sys.executable, "-m", "streambench", "compare", str(old), str(new), "-o", str(md)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode == 2:
        raise RuntimeError(f"compare {old} {new}: {proc.stderr.strip()}")
    return proc.returncode


def medians(doc: dict[str, Any]) -> dict[str, float | None]:
    entry = doc["configurations"][0]
    out = {}
    for key in ("first_token_s", "rest_token_mean_s"):
        values = [t[key] for t in entry["trials"] if t.get(key) is not None]
        out[key] = statistics.median(values) if values else None
    out["trials"] = len(entry["trials"])
    out["busy_warning"] = any(
        w.startswith("the machine was busy") for w in entry.get("warnings") or []
    )
    return out


class Hog:
    """A process spinning one CPU, outside streambench's process tree."""

    def __enter__(self) -> Hog:
        self.proc = subprocess.Popen([sys.executable, "-c", SPIN])
        return self

    def __exit__(self, *exc: Any) -> None:
        self.proc.kill()
        self.proc.wait()


def aa(args: argparse.Namespace, tmp: Path, mode: str, hog: bool) -> dict[str, Any]:
    """K identical runs (a hog beside every other one when ``hog``); consecutive pairs."""
    docs, paths = [], []
    for i in range(args.k):
        path = tmp / f"aa-{mode}-{'hog' if hog else 'quiet'}-{i}.json"
        if hog and i % 2:
            with Hog():
                docs.append(run(args, path, mode))
        else:
            docs.append(run(args, path, mode))
        paths.append(path)
    codes = [compare(a, b) for a, b in zip(paths, paths[1:])]
    return {
        "mode": mode,
        "hog": hog,
        "pairs": len(codes),
        "false_positives": sum(1 for c in codes if c == 1),
        "exit_codes": codes,
        "runs": [medians(d) for d in docs],
    }


def power(args: argparse.Namespace, tmp: Path, mode: str, per_token_s: float) -> list[dict]:
    """Per slowdown: ``reps`` baseline/slowed pairs (order alternated); how many were caught."""
    rows = []
    for pct in args.slowdowns:
        delay = per_token_s * pct / 100
        caught, ratios = 0, []
        for r in range(args.reps):
            base, slow = (
                tmp / f"p-{mode}-{pct}-{r}-base.json",
                tmp / f"p-{mode}-{pct}-{r}-slow.json",
            )
            order = [(base, 0.0), (slow, delay)] if r % 2 == 0 else [(slow, delay), (base, 0.0)]
            got = {p: medians(run(args, p, mode, d)) for p, d in order}
            caught += int(compare(base, slow) == 1)
            b, s = got[base]["rest_token_mean_s"], got[slow]["rest_token_mean_s"]
            ratios.append(s / b if b and s else None)
        rows.append(
            {
                "mode": mode,
                "slowdown_pct": pct,
                "added_s_per_forward": delay,
                "reps": args.reps,
                "caught": caught,
                "realised_ratio_per_token": ratios,
            }
        )
    return rows


def markdown(data: dict[str, Any]) -> str:
    lines = ["# Gate validation", "", C.machine_line(data["machine"]), ""]
    lines.append(f"`streambench run --in-out {data['in_out']}`; `streambench compare` defaults.")
    lines += ["", "## A/A: identical runs (false positives)", ""]
    rows = [
        [a["mode"], "hog beside every other run" if a["hog"] else "as it is", a["pairs"],
         a["false_positives"], f"{a['false_positives'] / max(a['pairs'], 1):.0%}"]
        for a in data["aa"]
    ]  # fmt: skip
    lines.append(C.md_table(["trials", "machine", "pairs", "failed", "false-positive rate"], rows))
    lines += ["", "## Power: a known slowdown per token", ""]
    rows = []
    for p in data["power"]:
        real = [x for x in p["realised_ratio_per_token"] if x]
        rows.append(
            [p["mode"], f"{p['slowdown_pct']:g} %", f"{p['added_s_per_forward'] * 1e3:.3f}",
             f"{statistics.median(real):.3f}" if real else "–", f"{p['caught']}/{p['reps']}"]
        )  # fmt: skip
    lines.append(
        C.md_table(["trials", "slowdown", "added ms/forward", "realised ratio", "caught"], rows)
    )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--k", type=int, default=10, help="identical runs per A/A series (default 10)")
    ap.add_argument("--reps", type=int, default=5, help="pairs per slowdown (default 5)")
    ap.add_argument("--slowdowns", default="2,5,10,50", help="percent, e.g. 2,5,10,50")
    ap.add_argument("--modes", default="default,auto", help="default (the default trials), auto")
    ap.add_argument("--in-out", default="32-32")
    ap.add_argument("--max-trials", type=int, default=30, help="--trials auto's limit")
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each run")
    ap.add_argument("--no-hog", action="store_true", help="skip the A/A series with a CPU hog")
    ap.add_argument("--quick", action="store_true", help="smoke test: K=3, 1 rep of 10 and 50 %%")
    ap.add_argument("--out", help="results folder (default benchmarks/results)")
    args = ap.parse_args()
    if args.quick:
        args.k, args.reps, args.slowdowns, args.modes = 3, 1, "10,50", "default"
    args.slowdowns = [float(x) for x in str(args.slowdowns).split(",") if x]
    modes = [m for m in args.modes.split(",") if m]
    if args.k < 2 or args.reps < 1 or any(m not in ("default", "auto") for m in modes):
        ap.error("--k needs 2 or more, --reps 1 or more, --modes default and/or auto")
    t0 = time.perf_counter()
    data: dict[str, Any] = {"machine": C.machine_info(), "in_out": args.in_out, "aa": []}
    data["power"] = []
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        for mode in modes:
            for hog in (False,) if args.no_hog else (False, True):
                data["aa"].append(aa(args, tmp, mode, hog))
                print(json.dumps({k: v for k, v in data["aa"][-1].items() if k != "runs"}))
        per_token = statistics.median(
            r["rest_token_mean_s"] for r in data["aa"][0]["runs"] if r["rest_token_mean_s"]
        )
        data["baseline_per_token_s"] = per_token
        for mode in modes:
            data["power"] += power(args, tmp, mode, per_token)
            print(json.dumps(data["power"][-len(args.slowdowns) :]))
    data["wall_s"] = time.perf_counter() - t0
    path = C.write_results("gate_validation", data, markdown(data), C.out_dir(args.out, args.quick))
    print(markdown(data))
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
