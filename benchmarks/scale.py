"""Scale: the cost of long runs and of many runs, fed with synthetic puts (no model).

* One run of N tokens (N = 1,000 / 10,000 / 100,000): time per put at the start and at the end of
  the run (flat = no growth), memory of the records (``tracemalloc``: the recorder while the run
  is in progress, the frozen ``RunResult`` after ``end()``) in bytes per recorded token, and the
  time of ``summary()`` (during and after the run), ``rest_token_stats``, ``to_dict()`` and
  ``json.dumps(to_dict())``. Each time should grow ~10x per 10x tokens (linear; ``describe`` sorts,
  so n log n).
* A sweep of R runs of 64 tokens (R = 100 / 1,000): time of ``stats()`` over all runs and of
  ``summary()``, and memory per run.

Memory probe on (CPU: one RSS reading per put), as a default streamer records it.

Run:  .venv/bin/python benchmarks/scale.py  (about 15 s)
"""

from __future__ import annotations

import argparse
import gc
import json
import time
import tracemalloc
from typing import Any

import _common as C


def _best(fn: Any, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def long_run(n: int) -> dict[str, Any]:
    import torch

    from streambench import TimingStreamer
    from streambench.stats import describe

    prompt = torch.zeros((1, 32), dtype=torch.long)
    token = torch.zeros((1,), dtype=torch.long)
    s = TimingStreamer(device="cpu", memory=True)
    gc.collect()
    s.put(prompt)
    put = s.put
    marks = [0, min(1000, n // 10)]
    t_first = time.perf_counter()
    for _ in range(marks[1]):
        put(token)
    first_us = (time.perf_counter() - t_first) / marks[1] * 1e6
    for _ in range(n - 2 * marks[1]):
        put(token)
    t_last = time.perf_counter()
    for _ in range(marks[1]):
        put(token)
    last_us = (time.perf_counter() - t_last) / marks[1] * 1e6
    during = _best(s.summary)
    s.end()
    r = s.summary()
    after = _best(s.summary)
    res: dict[str, Any] = {
        "tokens": n,
        "us_per_put_first_1000": first_us,
        "us_per_put_last_1000": last_us,
        "summary_during_run_s": during,
        "summary_after_end_s": after,
        # what RunResult.rest_token_stats computes (it is cached, so call describe() itself)
        "rest_token_stats_s": _best(lambda: describe(r.token_latencies_s[1:])),
        "to_dict_s": _best(r.to_dict),
        "json_dumps_to_dict_s": _best(lambda: json.dumps(r.to_dict())),
    }
    # memory: measured in a second, traced run (tracemalloc slows puts, so not timed)
    tracemalloc.start()
    s2 = TimingStreamer(device="cpu", memory=True)
    s2.put(prompt)
    gc.collect()
    base = tracemalloc.get_traced_memory()[0]
    for _ in range(n):
        s2.put(token)
    recorder = tracemalloc.get_traced_memory()[0] - base
    s2.end()
    gc.collect()
    result_and_recorder = tracemalloc.get_traced_memory()[0] - base
    d0 = tracemalloc.get_traced_memory()[0]
    d = s2.summary().to_dict()
    to_dict_bytes = tracemalloc.get_traced_memory()[0] - d0
    del d
    tracemalloc.stop()
    res.update(
        recorder_bytes_per_token=recorder / n,
        stored_result_bytes_per_token=result_and_recorder / n,
        to_dict_bytes_per_token=to_dict_bytes / n,
    )
    return res


def sweep(runs: int, tokens: int = 64) -> dict[str, Any]:
    import torch

    from streambench import TimingStreamer

    prompt = torch.zeros((1, 32), dtype=torch.long)
    token = torch.zeros((1,), dtype=torch.long)
    tracemalloc.start()
    s = TimingStreamer(device="cpu", memory=True)
    gc.collect()
    base = tracemalloc.get_traced_memory()[0]
    for _ in range(runs):
        s.put(prompt)
        for _ in range(tokens):
            s.put(token)
        s.end()
    gc.collect()
    mem = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return {
        "runs": runs,
        "tokens_per_run": tokens,
        "stats_s": _best(lambda: s.stats(warmup=1)),
        "stats_to_dict_s": _best(lambda: s.stats(warmup=1).to_dict()),
        "summary_s": _best(s.summary),
        "bytes_per_run": mem / runs,
    }


def growth(rows: list[dict[str, Any]], key: str, size: str) -> float:
    """Time ratio of the largest to the smallest size, divided by the size ratio (1 = linear)."""
    a, b = rows[0], rows[-1]
    return (b[key] / a[key]) / (b[size] / a[size]) if a[key] > 0 else float("nan")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    ap.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    args = ap.parse_args(argv)
    sizes = [1000, 10000] if args.quick else [1000, 10000, 100000]
    sweeps = [10, 100] if args.quick else [100, 1000]
    data: dict[str, Any] = {"machine": C.machine_info()}
    data["long_runs"] = [long_run(n) for n in sizes]
    data["sweeps"] = [sweep(r) for r in sweeps]
    lr, sw = data["long_runs"], data["sweeps"]
    data["growth_per_size"] = {
        "to_dict": growth(lr, "to_dict_s", "tokens"),
        "summary_during_run": growth(lr, "summary_during_run_s", "tokens"),
        "rest_token_stats": growth(lr, "rest_token_stats_s", "tokens"),
        "stats_over_runs": growth(sw, "stats_s", "runs"),
    }
    data["load_average_after"] = C.load_average()
    md = render(data)
    C.write_results("scale", data, md, C.out_dir(args.out, args.quick))
    print(md)
    return data


def render(data: dict[str, Any]) -> str:
    rows = []
    for r in data["long_runs"]:
        rows.append(
            [
                f"{r['tokens']:,}",
                f"{r['us_per_put_first_1000']:.2f} → {r['us_per_put_last_1000']:.2f}",
                f"{r['summary_during_run_s'] * 1e3:.2f}",
                f"{r['summary_after_end_s'] * 1e6:.1f} µs",
                f"{r['rest_token_stats_s'] * 1e3:.2f}",
                f"{r['to_dict_s'] * 1e3:.2f}",
                f"{r['json_dumps_to_dict_s'] * 1e3:.1f}",
                f"{r['recorder_bytes_per_token']:.0f}",
                f"{r['stored_result_bytes_per_token']:.0f}",
                f"{r['to_dict_bytes_per_token']:.0f}",
            ]
        )
    out = [
        "### One long run (synthetic puts, memory probe on)",
        "",
        C.md_table(
            [
                "tokens",
                "µs/put first → last 1,000",
                "summary() during run ms",
                "summary() after end()",
                "rest_token_stats ms",
                "to_dict() ms",
                "json.dumps(to_dict()) ms",
                "recorder B/token",
                "recorder + result B/token",
                "to_dict() B/token",
            ],
            rows,
        ),
    ]
    rows = [
        [
            f"{s['runs']:,}",
            s["tokens_per_run"],
            f"{s['stats_s'] * 1e3:.2f}",
            f"{s['stats_to_dict_s'] * 1e3:.2f}",
            f"{s['summary_s'] * 1e3:.3f}",
            f"{s['bytes_per_run']:,.0f}",
        ]
        for s in data["sweeps"]
    ]
    out += [
        "",
        "### A sweep of many runs",
        "",
        C.md_table(
            [
                "runs",
                "tokens/run",
                "stats() ms",
                "stats().to_dict() ms",
                "summary() ms",
                "bytes/run",
            ],
            rows,
        ),
        "",
        "Growth (time ratio largest/smallest ÷ size ratio; 1.0 = linear, 10 = quadratic): "
        + ", ".join(f"{k} {v:.2f}" for k, v in data["growth_per_size"].items()),
        "",
        f"Machine: {C.machine_line(data['machine'])} · load after {data['load_average_after']}",
    ]
    return "\n".join(out)


if __name__ == "__main__":
    main()
