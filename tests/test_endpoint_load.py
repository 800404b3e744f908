"""Load sweeps, arrivals, duration, the error-rate stop, headers and the capacity search of
``streambench endpoint``, against a stub server with a known capacity on 127.0.0.1.

The stub (``python tests/test_endpoint_load.py --stub``, its own process) serves
``/<scenario>/v1/completions`` where ``<scenario>`` is ``key=value`` pairs joined by ``;``:

- ``slots`` (K) and ``service`` (S seconds): each request holds one of K slots for S seconds before
  its first token (a server that prefills K requests at a time); a request that finds every slot
  busy waits. Its capacity is exactly K / S requests/s: below it, with constant arrivals, no
  request waits (TTFT = S); above it the queue, and TTFT, grow without end.
- ``gap``: seconds between the following tokens (default 2 ms);
- ``failafter``: every request after the first N of this scenario gets HTTP 500.

``GET /_seen`` returns every request's path and headers (the ground truth for ``--header``).
Runtime: ~25 s on 2 shared cores.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------------------ the stub server
class CapacityStub:
    def __init__(self) -> None:
        self.seen: list[dict] = []
        self.slots: dict[str, asyncio.Semaphore] = {}
        self.count: dict[str, int] = {}

    async def serve(self) -> None:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        print(server.sockets[0].getsockname()[1], flush=True)
        async with server:
            await server.serve_forever()

    async def _handle(self, reader, writer) -> None:
        try:
            while await self._respond(reader, writer):
                pass
        except (ConnectionError, asyncio.CancelledError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _respond(self, reader, writer) -> bool:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        lines = head.decode("latin-1").split("\r\n")
        _, path, _ = lines[0].split(" ")
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        body = json.loads(await reader.readexactly(int(headers.get("content-length", 0))) or b"{}")
        if path == "/_seen":
            out = json.dumps(self.seen).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(out), out)
            )
            await writer.drain()
            return False
        self.seen.append({"path": path, "headers": headers})
        scenario = path.split("/")[1]
        opts = dict(p.split("=", 1) for p in scenario.split(";") if "=" in p)
        self.count[scenario] = self.count.get(scenario, 0) + 1
        if "failafter" in opts and self.count[scenario] > int(opts["failafter"]):
            err = b'{"error": {"message": "overloaded"}}'
            writer.write(
                b"HTTP/1.1 500 Error\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(err), err)
            )
            await writer.drain()
            return True
        sem = self.slots.setdefault(scenario, asyncio.Semaphore(int(opts.get("slots", 64))))
        async with sem:  # prefill: one slot for `service` seconds
            await asyncio.sleep(float(opts.get("service", 0.01)))
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        n = int(body.get("max_tokens", 4))
        gap = float(opts.get("gap", 0.002))
        for i in range(n):
            if i:
                await asyncio.sleep(gap)
            finish = "length" if i == n - 1 else None
            obj = {"choices": [{"index": 0, "text": "ab ", "finish_reason": finish}]}
            data = f"data: {json.dumps(obj)}\n\n".encode()
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            await writer.drain()
        usage = {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": n}}
        for data in (f"data: {json.dumps(usage)}\n\n".encode(), b"data: [DONE]\n\n"):
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True


@pytest.fixture(scope="module")
def stub():
    proc = subprocess.Popen([sys.executable, __file__, "--stub"], stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline())
    yield port
    proc.kill()
    proc.wait(10)
    proc.stdout.close()


def url(port: int, scenario: str) -> str:
    return f"http://127.0.0.1:{port}/{scenario}/v1"


def seen(port: int) -> list[dict]:
    import httpx

    return httpx.get(f"http://127.0.0.1:{port}/_seen", timeout=10).json()


def cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": ROOT, **(env or {})}
    full_env.pop("OPENAI_API_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "streambench", "endpoint", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=ROOT,
    )


# ------------------------------------------------------------------------------ pure functions
def test_gamma_schedule_is_seeded_and_its_dispersion_matches_burstiness():
    from itertools import islice

    from streambench.endpoint.load import LoadSettings, arrival_offsets

    def gaps(burstiness: float, seed: int, n: int = 20000) -> list[float]:
        settings = LoadSettings(arrivals="gamma", burstiness=burstiness)
        times = [t for t, _ in islice(arrival_offsets(10.0, settings, seed, 1e9), n + 1)]
        return [b - a for a, b in zip(times, times[1:])]

    assert gaps(0.5, 7, 50) == gaps(0.5, 7, 50)  # the same seed, the same schedule
    assert gaps(0.5, 7, 50) != gaps(0.5, 8, 50)
    for b in (0.25, 1.0, 4.0):
        g = gaps(b, 1)
        mean = sum(g) / len(g)
        var = sum((x - mean) ** 2 for x in g) / len(g)
        assert mean == pytest.approx(0.1, rel=0.05)  # 10 requests/s
        assert var / mean**2 == pytest.approx(1 / b, rel=0.1)  # squared CV = 1 / B
    constant = LoadSettings(arrivals="constant")
    times = [t for t, _ in islice(arrival_offsets(4.0, constant, 0, 1e9), 5)]
    assert times == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])


def test_ramp_up_schedule_rises_linearly():
    from itertools import islice

    from streambench.endpoint.load import LoadSettings, arrival_offsets

    settings = LoadSettings(arrivals="constant", ramp_up_s=2.0)
    times = [t for t, _ in islice(arrival_offsets(10.0, settings, 0, 1e9), 40)]
    # rate r(t) = 10 t / 2 up to t = 2 s: arrival k at sqrt(2 * 2 * k / 10), then every 0.1 s
    assert times[4] == pytest.approx(math.sqrt(0.4 * 4))
    assert sum(1 for t in times if t < 2.0) == 10  # the integral of the ramp: 10 * 2 / 2
    assert times[15] - times[14] == pytest.approx(0.1)


def test_bad_load_options_exit_2_with_one_line():
    cases = [
        (["--arrivals", "gamma", "--burstiness", "0"], "--burstiness"),
        (["--request-rate", "2", "--burstiness", "2"], "--arrivals gamma"),
        (["--arrivals", "constant"], "--request-rate"),
        (["--request-rate", "1,x"], "--request-rate"),
        (["--concurrency", "2,2"], "--concurrency"),
        (["--max-error-rate", "1.5"], "--max-error-rate"),
        (["--percentiles", "100"], "--percentiles"),
        (["--duration", "soon"], "--duration"),
        (["--find-max-rate"], "--slo"),
        (["--find-max-rate", "--slo", "ttft=1s", "--rate-range", "5,1"], "--rate-range"),
        (["--header", "X-Token secret-value-1"], "--header"),
        (["--header", "Host: secret-value-1"], "--header Host"),
    ]
    for extra, needle in cases:
        res = cli("http://127.0.0.1:9/v1", "--model", "m", *extra, timeout=60)
        assert res.returncode == 2, (extra, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], (extra, res.stderr)
        assert "secret-value-1" not in res.stderr


# ------------------------------------------------------------------------------ against the stub
def test_rate_and_concurrency_sweep_one_entry_per_point(stub, tmp_path):
    out = tmp_path / "sweep.json"
    csv = tmp_path / "sweep.csv"
    res = cli(
        url(stub, "service=0.005"), "--model", "m", "--in-out", "4-3", "--requests", "6",
        "--warmup", "0", "--request-rate", "200,inf", "--concurrency", "1,3",
        "--percentiles", "50,99.9", "-o", str(out), "-o", str(csv),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    doc = json.loads(out.read_text())
    ids = [e["id"] for e in doc["configurations"]]
    assert len(ids) == 4 and len(set(ids)) == 4
    got = [(e["settings"].get("request_rate"), e["settings"]["concurrency"]) for e in
           doc["configurations"]]  # fmt: skip
    assert got == [(200.0, 1), (200.0, 3), (None, 1), (None, 3)]  # rate x concurrency
    first = doc["configurations"][0]
    pct = first["aggregates"]["endpoint"]["percentiles"]
    assert set(pct["ttft_s"]) == {"p50", "p99.9"}
    assert first["client"]["send_lag_s"]["n"] == 5  # 6 arrivals: 5 scheduled sends after the 1st
    header = csv.read_text().splitlines()[0]
    assert "TTFT p99.9 (ms)" in header and "client send lag p99 (ms)" in header
    assert doc["settings"]["request_rates"] == [200.0, None]
    assert "p99.9" in res.stdout  # the table's percentile columns


def test_duration_ends_a_point_on_time(stub):
    from streambench.endpoint import EndpointSpec, run_endpoint
    from streambench.endpoint.load import LoadSettings

    spec = EndpointSpec(
        url=url(stub, "service=0.02"), model="m", prompt_tokens=4, output_tokens=2,
        requests=100_000, warmup=0, concurrency=2, force="off", timeout_s=5,
        load=LoadSettings(duration_s=0.4),
    )  # fmt: skip
    t0 = time.perf_counter()
    res = run_endpoint(spec)
    wall = time.perf_counter() - t0
    s = res.summary
    assert s.failed == 0 and 0.4 <= s.duration_s < 0.6, s.duration_s
    assert wall < 3
    # ~2 requests every ~22 ms for 0.4 s; the in-flight ones at the deadline count
    assert 10 <= s.requests <= 40, s.requests


def test_max_error_rate_stops_a_point_against_a_failing_server(stub, tmp_path):
    out = tmp_path / "err.json"
    res = cli(
        url(stub, "failafter=5;service=0.002"), "--model", "m", "--in-out", "4-2",
        "--requests", "200", "--warmup", "0", "--concurrency", "1,2", "--max-error-rate", "0.3",
        "--force-output", "off", "-o", str(out),
    )  # fmt: skip
    assert res.returncode == 1, res.stderr  # a sweep point passed --max-error-rate
    doc = json.loads(out.read_text())
    first = doc["configurations"][0]
    assert any("stopped early" in w for w in first["warnings"])
    measured = [r for r in first["requests"] if not r["warmup"]]
    assert len(measured) < 30  # stopped long before the 200 asked
    # the same failures without the stop rule in a sweep: results, not a failed run
    res = cli(
        url(stub, "failafter=1000;service=0.002"), "--model", "m", "--in-out", "4-2",
        "--requests", "3", "--warmup", "0", "--concurrency", "1,2", "--force-output", "off",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr


def test_headers_arrive_at_the_server_and_never_in_any_output(stub, tmp_path):
    secret = "hdr-s3cr3t-value"
    outs = [tmp_path / f"h.{ext}" for ext in ("json", "csv", "md", "jsonl")]
    res = cli(
        url(stub, "headers=1"), "--model", "m", "--in-out", "4-2", "--requests", "2",
        "--warmup", "0", "--header", f"X-Tenant-Token: {secret}", "--header", "X-Plain: yes",
        "-v", *[a for o in outs for a in ("-o", str(o))],
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    mine = [r for r in seen(stub) if r["path"].startswith("/headers=1/")]
    assert mine and all(r["headers"]["x-tenant-token"] == secret for r in mine)
    assert secret not in res.stdout + res.stderr
    for path in outs:
        text = path.read_text()
        assert secret not in text, path
    doc = json.loads(outs[0].read_text())
    assert doc["settings"]["transport"]["header_names"] == ["X-Tenant-Token", "X-Plain"]


@pytest.mark.timing
def test_capacity_search_lands_on_the_known_capacity(stub, tmp_path):
    # 2 slots x 40 ms of prefill: the server carries exactly 50 requests/s; below it TTFT is
    # 40 ms (constant arrivals never queue), above it the queue and TTFT grow without end.
    # The SLO leaves 60 ms for a loaded machine's jitter (a warm-up request opens the
    # connection); at 60 requests/s the 24th request already waits ~80 ms more than the first.
    out = tmp_path / "cap.json"
    res = cli(
        url(stub, "slots=2;service=0.04"), "--model", "m", "--in-out", "4-2",
        "--requests", "24", "--warmup", "1", "--arrivals", "constant",
        "--find-max-rate", "--slo", "ttft=100ms", "--rate-range", "10,200",
        "--rate-tolerance", "0.1", "--max-points", "10", "--force-output", "off", "-o", str(out),
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    cap = json.loads(out.read_text())["capacity"]
    # a finite-length point detects overload only once the queue has grown by ~1 slot:
    # the rate found lies within [50 / 1.1 (the tolerance) - noise, 50 * 1.25]
    assert 40 <= cap["max_rate"] <= 62.5, cap
    assert cap["first_fail"] and cap["first_fail"]["rate"] > cap["max_rate"]
    assert cap["last_pass"]["rate"] == cap["max_rate"]
    assert len(cap["points"]) <= 10
    doc = json.loads(out.read_text())
    assert len(doc["configurations"]) == len(cap["points"])
    assert "max rate" in res.stdout
    # an SLO no point meets: exit 1, no rate
    res = cli(
        url(stub, "slots=2;service=0.04"), "--model", "m", "--in-out", "4-2",
        "--requests", "4", "--warmup", "0", "--find-max-rate", "--slo", "ttft=5ms",
        "--rate-range", "10,200", "--force-output", "off",
    )  # fmt: skip
    assert res.returncode == 1, res.stderr
    assert "no rate met" in res.stdout


if __name__ == "__main__" and sys.argv[1:] == ["--stub"]:
    asyncio.run(CapacityStub().serve())
