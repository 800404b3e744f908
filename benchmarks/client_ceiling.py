"""The endpoint client's ceiling: how many chunks/s one client process times correctly.

A stub server (``--servers`` processes sharing one port with ``SO_REUSEPORT``, so the server is
not the bottleneck) streams ``--tokens`` chunks per request, one every ``--itl-ms``, and writes
into each chunk's text the ``perf_counter()`` at which it sent it (the same monotonic clock as the
client on Linux). At each concurrency, ``streambench.endpoint.run_endpoint`` (one process, one
asyncio loop) measures the requests; per chunk, the error is the client's gap minus the server's
send gap. Reported: client ITL and server gap percentiles, the error's p50/p99 (|error|), the
chunks/s handled, and the client's own lag (send and event-loop lag). The ceiling is the highest
chunks/s with p99 |error| <= 1 ms.

    python benchmarks/client_ceiling.py [--quick] [--servers 4] [--concurrency 1,8,32,64,128]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import fmt, machine_info, machine_line, md_table, out_dir, write_results


async def _serve(port: int, itl: float, ttft: float = 0.0) -> None:
    """Serve ``max_tokens`` chunks: the first ``ttft`` s after the request's head arrived, then
    one every ``itl`` s (absolute targets: no drift). Each chunk's text is the ``perf_counter()``
    at which it was sent; the first one's is ``RECEIVED/SENT`` (when the request arrived)."""

    async def handle(reader, writer) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                received = time.perf_counter()
                length = 0
                for line in head.decode().split("\r\n"):
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":")[1])
                body = json.loads(await reader.readexactly(length))
                n = int(body.get("max_tokens", 16))
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                    b"transfer-encoding: chunked\r\n\r\n"
                )
                target = received + ttft
                for i in range(n):
                    target += itl if i else 0.0
                    delay = target - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    sent = time.perf_counter()
                    text = f"{received:.7f}/{sent:.7f} " if i == 0 else f"{sent:.7f} "
                    obj = {"choices": [{"index": 0, "text": text, "finish_reason": None}]}
                    data = f"data: {json.dumps(obj)}\n\n".encode()
                    writer.write(b"%x\r\n%s\r\n" % (len(data), data))
                    await writer.drain()
                tail = {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": n}}
                for data in (f"data: {json.dumps(tail)}\n\n".encode(), b"data: [DONE]\n\n"):
                    writer.write(b"%x\r\n%s\r\n" % (len(data), data))
                writer.write(b"0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, reuse_port=True)
    async with server:
        await server.serve_forever()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(port: int, concurrency: int, tokens: int, rounds: int) -> dict:
    from streambench.endpoint import EndpointSpec, run_endpoint
    from streambench.stats import describe

    spec = EndpointSpec(
        url=f"http://127.0.0.1:{port}/v1", model="stub", prompt_tokens=4, output_tokens=tokens,
        requests=concurrency * rounds, warmup=1, concurrency=concurrency, force="off",
        timeout_s=120,
    )  # fmt: skip
    res = run_endpoint(spec)
    client_gaps, server_gaps, errors = [], [], []
    for rec in res.measured:
        if not rec.ok:
            continue
        sent = [float(t.split("/")[-1]) for t in rec.texts]
        for i in range(1, len(sent)):
            c = rec.chunk_times_s[i] - rec.chunk_times_s[i - 1]
            s = sent[i] - sent[i - 1]
            client_gaps.append(c)
            server_gaps.append(s)
            errors.append(abs(c - s))
    chunks = sum(len(r.texts) for r in res.measured if r.ok)
    cg, sg, er = describe(client_gaps), describe(server_gaps), describe(errors)
    lag = res.client
    return {
        "concurrency": concurrency,
        "failed": res.summary.failed,
        "chunks_per_s": chunks / res.summary.duration_s,
        "client_itl_ms": {k: getattr(cg, k) * 1e3 for k in ("median", "p99")},
        "server_gap_ms": {k: getattr(sg, k) * 1e3 for k in ("median", "p99")},
        "error_ms": {k: getattr(er, k) * 1e3 for k in ("median", "p99")},
        "send_lag_p99_ms": (lag.get("send_lag_s") or {}).get("p99", 0) * 1e3,
        "loop_lag_p99_ms": (lag.get("timer_lag_s") or {}).get("p99", 0) * 1e3,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1,8,32 streams, 1 round")
    ap.add_argument("--servers", type=int, default=4)
    ap.add_argument("--concurrency", default="1,8,32,64,128")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--itl-ms", type=float, default=20.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if os.environ.get("_CEILING_SERVER"):
        asyncio.run(_serve(int(os.environ["_CEILING_SERVER"]), args.itl_ms / 1e3))
        return 0
    levels = [1, 8, 32] if args.quick else [int(c) for c in args.concurrency.split(",")]
    rounds = 1 if args.quick else args.rounds
    port = _free_port()
    env = {**os.environ, "_CEILING_SERVER": str(port)}
    procs = [
        subprocess.Popen([sys.executable, __file__, "--itl-ms", str(args.itl_ms)], env=env)
        for _ in range(args.servers)
    ]
    try:
        time.sleep(1.5)
        rows = [measure(port, c, args.tokens, rounds) for c in levels]
    finally:
        for p in procs:
            p.kill()
            p.wait(10)
    good = [r["chunks_per_s"] for r in rows if r["error_ms"]["p99"] <= 1.0 and not r["failed"]]
    info = machine_info()
    table = md_table(
        ["streams", "chunks/s", "client ITL p50/p99 (ms)", "server gap p50/p99 (ms)",
         "|error| p50/p99 (ms)", "send lag p99 (ms)", "loop lag p99 (ms)"],
        [[r["concurrency"], fmt(r["chunks_per_s"], 0),
          f"{fmt(r['client_itl_ms']['median'])}/{fmt(r['client_itl_ms']['p99'])}",
          f"{fmt(r['server_gap_ms']['median'])}/{fmt(r['server_gap_ms']['p99'])}",
          f"{fmt(r['error_ms']['median'])}/{fmt(r['error_ms']['p99'])}",
          fmt(r["send_lag_p99_ms"], 2), fmt(r["loop_lag_p99_ms"], 2)] for r in rows],
    )  # fmt: skip
    ceiling = max(good) if good else None
    md = (
        f"# Endpoint client ceiling\n\n{machine_line(info)}\n\n{args.servers} stub processes, "
        f"{args.tokens} tokens at {args.itl_ms:g} ms\n\n{table}\n\nceiling (p99 |error| <= 1 ms): "
        f"{fmt(ceiling, 0) if ceiling else 'not reached'} chunks/s per client process\n"
    )
    print(md)
    data = {"machine": info, "rows": rows, "ceiling_chunks_per_s": ceiling}
    write_results("client_ceiling", data, md, out_dir(args.out, args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
