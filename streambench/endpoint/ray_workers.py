"""``--workers N --ray ADDRESS``: the measured phase of one load point spread over N client
workers that are Ray actors, placed over the cluster's nodes (``SPREAD``), instead of N local
processes (:mod:`streambench.endpoint.workers`, whose split this keeps).

- **the schedule**: every worker computes the same seeded arrival schedule and sends arrival
  ``k`` when ``k mod N`` is its number; without a rate, worker ``w`` sends requests ``w, w + N,
  w + 2N, ...`` (a fixed split: a counter shared across hosts would put a network round trip in
  front of every request). Indices are global, so the merged records have each request once.
- **clocks**: before the start and after the end, this process measures each worker's clock
  offset NTP-style: ``K`` exchanges ``t0`` (here) → ``t_w`` (the worker's ``time.time()``) →
  ``t1`` (here); the offset is ``t_w - (t0 + t1) / 2`` of the exchange with the shortest round
  trip, whose half is the offset's error bound. The start time is sent in this process's clock
  and each worker converts it with its offset to its own ``perf_counter``; every latency is timed
  on the worker's own monotonic clock (a request is timed by one host, start to end), so the
  offsets matter only for the workers' common start (``sent_s``), never for a latency.
- **results**: each worker returns its raw per-request records (never a histogram), so every
  percentile is computed here from the raw samples, as with local workers; the point's
  ``client.per_worker`` adds, per worker, its node, its offsets at start and end with their error
  bounds, and how late it began; a worker whose loop lagged (p99 over
  :data:`~streambench.endpoint.load.CLIENT_LAG_WARN_S`) or began late is named in a warning.
- **the stop**: ``--max-error-rate`` is applied by each worker to its own requests and by a
  coordinator actor to all of them; an interruption or a deadline stops every worker through it.

Ray is imported here only (``streambench[ray]``).
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ..errors import UsageError
from .load import CLIENT_LAG_WARN_S, MIN_REQUESTS_FOR_ERROR_STOP
from .workers import STOP_GRACE_S, Part, WorkerError, merged_lag, split_concurrency

if TYPE_CHECKING:
    from .records import RequestRecord
    from .spec import EndpointSpec

#: how far ahead of "go" the shared start is set (s): a call must reach every actor first
RAY_START_LEAD_S = 1.0
#: NTP-style exchanges per worker at start and at end (the shortest round trip is used)
CLOCK_EXCHANGES = 8
#: a worker that began this much after the shared start is named in a warning (s)
LATE_WARN_S = 0.05
#: how long the actors may take to start (import, tokenizer) before the point fails (s)
START_TIMEOUT_S = 180.0
#: how often a worker asks the coordinator whether to stop (s)
POLL_PERIOD_S = 0.05


@dataclass(frozen=True)
class ClockOffset:
    """One worker's clock against this process's: ``offset_s`` (worker minus here, seconds) of
    the exchange with the shortest round trip ``rtt_s``; the true offset is within
    ``± rtt_s / 2`` of it."""

    offset_s: float
    rtt_s: float

    def to_dict(self) -> dict[str, float]:
        return {"offset_s": round(self.offset_s, 6), "error_s": round(self.rtt_s / 2, 6)}


class Coordinator:
    """The one actor every worker reports to: the point's error tally and the stop."""

    def __init__(self, limit: float | None) -> None:
        self.limit = limit
        self.finished = 0
        self.failed = 0
        self.stopped = False

    def tally(self, ok: bool) -> None:
        self.finished += 1
        self.failed += int(not ok)
        if (
            self.limit is not None
            and self.finished >= MIN_REQUESTS_FOR_ERROR_STOP
            and self.failed / self.finished > self.limit
        ):
            self.stopped = True

    def stop(self) -> None:
        self.stopped = True

    def is_stopped(self) -> bool:
        return self.stopped


class RayShare:
    """A worker's view of what the workers share (:class:`streambench.endpoint.workers.Share`'s
    interface, across hosts): its part, the start (its own ``perf_counter``), a fixed split of
    the indices without a rate, its own error tally (the coordinator keeps the point's)."""

    def __init__(self, part: Part, start: float, coordinator: Any) -> None:
        self.worker, self.workers, self.concurrency = part.worker, part.workers, part.concurrency
        self.start = start
        self._next = part.worker
        self._coordinator = coordinator
        self._finished = 0
        self._failed = 0

    def next_index(self) -> int:
        k, self._next = self._next, self._next + self.workers
        return k

    def tally(self, ok: bool) -> tuple[int, int]:
        self._coordinator.tally.remote(ok)  # not waited for: off the request's path
        self._finished += 1
        self._failed += int(not ok)
        return self._finished, self._failed

    def stop_all(self) -> None:
        self._coordinator.stop.remote()

    async def watch(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if await self._coordinator.is_stopped.remote():
                stop.set()
                return
            await asyncio.sleep(POLL_PERIOD_S)


class ClientWorker:
    """A client worker (a Ray actor): builds its benchmark at once, then sends its part."""

    def __init__(self, bench_class: Callable[..., Any], spec: EndpointSpec) -> None:
        self.bench = bench_class(spec)
        self.node = socket.gethostname()

    def ready(self) -> str:
        return self.node

    def clock(self) -> float:
        return time.time()

    def run(
        self, part: Part, start_here: float, offset_s: float, level: int, coordinator: Any
    ) -> dict:
        """Send this worker's part from ``start_here`` (the driver's ``time.time()``, read on
        this clock through ``offset_s``); its records and lag samples."""
        self.bench.level = level
        late: list[float] = []

        def join() -> RayShare:
            start = time.perf_counter() + (start_here + offset_s - time.time())
            # nothing runs on this loop yet: wait here for the shared start (a closed loop,
            # without a schedule, would otherwise begin at once)
            time.sleep(max(0.0, start - time.perf_counter()))
            late.append(time.perf_counter() - start)
            return RayShare(part, start, coordinator)

        outcome = self.bench.run_part(join)
        return {
            "outcome": outcome,
            "records": list(self.bench.records),
            "late_s": late[0] if late else None,
            "node": self.node,
        }


def _offset(actor: Any, ray: Any) -> ClockOffset:
    best: ClockOffset | None = None
    for _ in range(CLOCK_EXCHANGES):
        t0 = time.time()
        theirs = ray.get(actor.clock.remote())
        t1 = time.time()
        sample = ClockOffset(theirs - (t0 + t1) / 2, t1 - t0)
        if best is None or sample.rtt_s < best.rtt_s:
            best = sample
    assert best is not None
    return best


class RayWorkerPool:
    """:class:`streambench.endpoint.workers.WorkerPool`'s interface with Ray actors."""

    def __init__(self, spec: EndpointSpec, bench: Callable[..., Any]) -> None:
        import ray

        self.ray, self.spec, self.bench = ray, spec, bench
        self.workers = spec.load.workers
        if not ray.is_initialized():
            from ..runners.remote.ray_backend import check_reachable, keep_signal_handlers

            check_reachable(str(spec.load.ray))
            try:
                with keep_signal_handlers():  # asyncio's, taken for the run
                    ray.init(address=spec.load.ray, log_to_driver=False, logging_level="ERROR")
            except Exception as exc:  # noqa: BLE001 - ConnectionError, ValueError ...
                raise UsageError(
                    f"--ray {spec.load.ray}: cannot connect to a Ray cluster there "
                    f"({type(exc).__name__}); start one with 'ray start --head'"
                ) from None
        self.parts = [
            Part(w, self.workers, c)
            for w, c in enumerate(split_concurrency(spec.max_in_flight, self.workers))
        ]
        self.coordinator: Any = None
        self.actors: list[Any] = []
        self.done: dict[int, dict[str, Any]] = {}
        self.pending: dict[int, Any] = {}
        self.keep: Callable[[RequestRecord], None] = lambda rec: None
        self.clocks: dict[int, dict[str, Any]] = {}
        self.closed = False

    def start(self) -> None:
        """Create the actors (they start, import and load the tokenizer meanwhile)."""
        ray = self.ray
        self.coordinator = (
            ray.remote(Coordinator).options(num_cpus=0).remote(self.spec.load.max_error_rate)
        )
        actor = ray.remote(ClientWorker).options(
            num_cpus=0, scheduling_strategy="SPREAD", max_restarts=0
        )
        self.actors = [actor.remote(self.bench, self.spec) for _ in self.parts]

    async def _get(self, refs: list[Any], timeout: float | None, what: str) -> list[Any]:
        try:
            return list(await asyncio.wait_for(asyncio.gather(*refs), timeout))
        except asyncio.TimeoutError:
            raise WorkerError(f"the Ray workers did not {what} within {timeout:g} s") from None
        except self.ray.exceptions.RayError as exc:
            raise WorkerError(f"a Ray worker failed: {_first_line(exc)}") from None

    async def run(self, level: int, keep: Callable[[RequestRecord], None]) -> None:
        """Wait for every actor, measure the clocks, start them at one time, keep every record
        each returns; measure the clocks again."""
        nodes = await self._get([a.ready.remote() for a in self.actors], START_TIMEOUT_S, "start")
        loop = asyncio.get_running_loop()
        starts = [await loop.run_in_executor(None, _offset, a, self.ray) for a in self.actors]
        go = time.time() + RAY_START_LEAD_S
        refs = [
            a.run.remote(part, go, off.offset_s, level, self.coordinator)
            for a, part, off in zip(self.actors, self.parts, starts)
        ]
        self.pending, self.keep = dict(enumerate(refs)), keep
        self.clocks = {
            w: {"node": nodes[w], "clock_start": starts[w].to_dict()} for w in self.pending
        }
        while self.pending:
            ready, _ = await loop.run_in_executor(
                None, lambda: self.ray.wait(list(self.pending.values()), num_returns=1)
            )
            w = next(k for k, ref in self.pending.items() if ref == ready[0])
            self.pending.pop(w)
            self._take(w, (await self._get([ready[0]], None, "finish"))[0])
        for w, actor in enumerate(self.actors):  # the actors are idle again: they answer at once
            self.clocks[w]["clock_end"] = _offset(actor, self.ray).to_dict()

    def _take(self, w: int, got: dict[str, Any]) -> None:
        for rec in got["records"]:
            self.keep(rec)
        self.done[w] = {**(got["outcome"] or {}), "late_s": got["late_s"], "node": got["node"]}

    def close(self) -> None:
        """Stop the workers, take what they finished (up to ``STOP_GRACE_S``), end them."""
        if self.closed:
            return
        self.closed = True
        if self.coordinator is not None:
            self.coordinator.stop.remote()
        if self.pending:  # interrupted: what the workers finished still counts
            refs = list(self.pending.values())
            ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=STOP_GRACE_S)
            for w, ref in list(self.pending.items()):
                if ref in ready:
                    try:
                        self._take(w, self.ray.get(ref))
                    except self.ray.exceptions.RayError:
                        pass  # that worker's requests are lost; the others' are kept
        for actor in self.actors:
            self.ray.kill(actor)
        if self.coordinator is not None:
            self.ray.kill(self.coordinator)

    def outcome(self) -> tuple[float, dict[str, Any], str | None, list[str]]:
        """As :meth:`streambench.endpoint.workers.WorkerPool.outcome`, with each worker's node,
        clock offsets and lateness in ``client.per_worker`` and a warning per worker that fell
        behind."""
        parts = [self.done[w] for w in sorted(self.done) if "duration_s" in self.done[w]]
        duration = max((p["duration_s"] for p in parts), default=0.0)
        stopped = next((p["stopped_early"] for p in parts if p["stopped_early"]), None)
        warnings = list(dict.fromkeys(x for p in parts for x in p["warnings"]))
        client = merged_lag(parts, self.workers)
        for w, row in enumerate(client["per_worker"]):
            key = sorted(self.done)[w] if w < len(self.done) else w
            row.update(self.clocks.get(key, {}), late_s=self.done.get(key, {}).get("late_s"))
            lag = max(
                (v for k, v in row.items() if k.endswith("lag_s") and v is not None), default=0
            )
            late = row.get("late_s") or 0.0
            if lag > CLIENT_LAG_WARN_S or late > LATE_WARN_S:
                warnings.append(
                    f"Ray worker {key} on {row.get('node')} fell behind (loop lag p99 "
                    f"{lag * 1e3:.1f} ms, began {late * 1e3:.1f} ms after the shared start): its "
                    "requests' sending times are late; add nodes or lower --concurrency"
                )
        client["ray"] = {
            "address": self.spec.load.ray,
            "nodes": len({r.get("node") for r in client["per_worker"]}),
        }
        return duration, client, stopped, warnings


def _first_line(exc: BaseException) -> str:
    lines = [x for x in str(exc).strip().splitlines() if x.strip()]
    return f"{type(exc).__name__}: {lines[-1][:300]}" if lines else type(exc).__name__
