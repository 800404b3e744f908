"""The endpoint client's own error against a deterministic mock server (the methodology of vLLM's
bench-overhead study: TTFT 50 ms, ITL 10 ms, 100 tokens, concurrency 1 ... 1000).

The mock is the stub of ``client_ceiling.py`` (``--servers`` processes sharing one port with
``SO_REUSEPORT``) with a first-token delay: it answers ``--ttft-ms`` after a request's head
arrived, then one chunk every ``--itl-ms`` (absolute targets), writing into each chunk the
``perf_counter()`` at which it sent it (the first also when the request arrived; the same
monotonic clock as the client on Linux). At each concurrency, ``streambench.endpoint`` measures
``concurrency x --rounds`` requests (one process, or ``--workers`` processes), and per request:

- TTFT error vs nominal: client TTFT - ``--ttft-ms`` (what the published study reports: it also
  holds the mock's own lateness when the machine is saturated);
- TTFT error vs the server's stamps: client TTFT - (first chunk sent - request received): the
  client's own send and receive path, the mock's lateness removed;
- ITL error: every client inter-chunk gap - the server's send gap of the same chunks.

Reported per concurrency: p50/p99 of each error (ms), the chunks/s handled, how late the mock
itself was (its first-token delay p99 over nominal), failures.

    python benchmarks/client_overhead.py [--quick] [--concurrency 1,10,100,500,1000]
        [--workers 1,2] [--servers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import fmt, machine_info, machine_line, md_table, out_dir, write_results
from client_ceiling import _free_port, _serve


def _pcts(values: list[float]) -> dict[str, float | None]:
    from streambench.stats import describe

    st = describe(values)
    if st is None:
        return {"p50": None, "p99": None}
    return {"p50": st.median * 1e3, "p99": st.p99 * 1e3}


def measure(port: int, concurrency: int, workers: int, args: argparse.Namespace) -> dict:
    """One concurrency level: the errors of the client's TTFT and ITL (ms)."""
    import dataclasses

    from streambench.endpoint import EndpointSpec, run_endpoint

    spec = EndpointSpec(
        url=f"http://127.0.0.1:{port}/v1", model="mock", prompt_tokens=4,
        output_tokens=args.tokens, requests=concurrency * args.rounds, warmup=1,
        concurrency=concurrency, force="off", timeout_s=600,
    )  # fmt: skip
    if workers > 1:
        spec = dataclasses.replace(spec, load=dataclasses.replace(spec.load, workers=workers))
    t0 = time.perf_counter()
    res = run_endpoint(spec)
    wall = time.perf_counter() - t0
    nominal = args.ttft_ms / 1e3
    vs_nominal, vs_server, mock_late, itl_err = [], [], [], []
    for rec in res.measured:
        if not rec.ok or not rec.texts:
            continue
        received, _, first = rec.texts[0].strip().partition("/")
        server_ttft = float(first) - float(received)
        vs_nominal.append(rec.ttft_s - nominal)
        vs_server.append(rec.ttft_s - server_ttft)
        mock_late.append(server_ttft - nominal)
        sent = [float(t.split("/")[-1]) for t in rec.texts]
        for i in range(1, len(sent)):
            gap = rec.chunk_times_s[i] - rec.chunk_times_s[i - 1]
            itl_err.append(gap - (sent[i] - sent[i - 1]))
    chunks = sum(len(r.texts) for r in res.measured if r.ok)
    return {
        "concurrency": concurrency,
        "workers": workers,
        "requests": res.summary.requests,
        "failed": res.summary.failed,
        "wall_s": wall,
        "chunks_per_s": chunks / res.summary.duration_s if res.summary.duration_s else None,
        "ttft_error_vs_nominal_ms": _pcts(vs_nominal),
        "ttft_error_vs_server_ms": _pcts(vs_server),
        "itl_error_ms": _pcts(itl_err),
        "mock_late_ms": _pcts(mock_late),
        "client_loop_lag_p99_ms": ((res.client.get("timer_lag_s") or {}).get("p99") or 0) * 1e3,
    }


def _row(r: dict) -> list:
    def pair(key: str) -> str:
        return f"{fmt(r[key]['p50'])} / {fmt(r[key]['p99'])}"

    return [
        r["concurrency"], r["workers"], r["requests"] - r["failed"], fmt(r["chunks_per_s"], 0),
        pair("ttft_error_vs_nominal_ms"), pair("ttft_error_vs_server_ms"), pair("itl_error_ms"),
        fmt(r["mock_late_ms"]["p99"]), fmt(r["client_loop_lag_p99_ms"]),
    ]  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="concurrency 1,10; 1 round")
    ap.add_argument("--servers", type=int, default=2, help="mock processes (default 2)")
    ap.add_argument("--concurrency", default="1,10,100,500,1000")
    ap.add_argument("--workers", default="1,2", help="client processes to compare (default 1,2)")
    ap.add_argument("--tokens", type=int, default=100)
    ap.add_argument("--ttft-ms", type=float, default=50.0)
    ap.add_argument("--itl-ms", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if os.environ.get("_OVERHEAD_SERVER"):
        port = int(os.environ["_OVERHEAD_SERVER"])
        asyncio.run(_serve(port, args.itl_ms / 1e3, args.ttft_ms / 1e3))
        return 0
    levels = [1, 10] if args.quick else [int(c) for c in args.concurrency.split(",")]
    workers = [int(w) for w in args.workers.split(",")]
    port = _free_port()
    env = {**os.environ, "_OVERHEAD_SERVER": str(port)}
    server_cmd = [sys.executable, __file__, "--itl-ms", str(args.itl_ms)]
    server_cmd += ["--ttft-ms", str(args.ttft_ms)]
    procs = [subprocess.Popen(server_cmd, env=env) for _ in range(args.servers)]
    rows = []
    try:
        time.sleep(1.5)
        for c in levels:
            for w in workers:
                if w <= c:
                    rows.append(measure(port, c, w, args))
                    print(_row(rows[-1]), flush=True)
    finally:
        for p in procs:
            p.kill()
            p.wait(10)
    info = machine_info()
    table = md_table(
        ["streams", "client processes", "requests ok", "chunks/s",
         "TTFT error vs nominal p50 / p99 (ms)", "TTFT error vs mock's stamps p50 / p99 (ms)",
         "ITL error p50 / p99 (ms)", "mock late p99 (ms)", "client loop lag p99 (ms)"],
        [_row(r) for r in rows],
    )  # fmt: skip
    md = (
        f"# Endpoint client overhead\n\n{machine_line(info)}\n\n{args.servers} mock processes: "
        f"TTFT {args.ttft_ms:g} ms, ITL {args.itl_ms:g} ms, {args.tokens} tokens; "
        f"{args.rounds} round(s) of requests per level\n\n{table}\n"
    )
    print(md)
    data = {"machine": info, "settings": vars(args), "rows": rows}
    write_results("client_overhead", data, md, out_dir(args.out, args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
