"""The measured phase of one load point: :class:`LoadLoop` sends requests by the arrival schedule
(or as fast as the concurrency allows), within the deadline of ``--duration``, stops early when
the error rate passes ``--max-error-rate``, and records the client's own lag."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Callable

from .load import MIN_REQUESTS_FOR_ERROR_STOP, ClientLag, arrival_offsets

if TYPE_CHECKING:
    from .spec import EndpointSpec


def ramp_count(spec: EndpointSpec) -> int:
    """How many arrivals of the schedule fall inside the ramp-up (sent, not measured)."""
    if not spec.load.ramp_up_s or spec.request_rate is None:
        return 0
    n = 0
    for at, _ in arrival_offsets(spec.request_rate, spec.load, spec.seed, spec.timeout_s):
        if at >= spec.load.ramp_up_s:
            return n
        n += 1
    return n  # pragma: no cover - the schedule is endless


class LoadLoop:
    """Sends the measured requests of ``spec`` with ``send(i, prompt_i, warmup, phase_start)``.

    Requests of the ramp-up are sent as warm-up (index ``warmup + k``, not measured); the measured
    ones have indices ``0..`` and their ``sent_s`` counts from the end of the ramp-up. Sending
    stops after ``spec.requests``, at the deadline (``load.duration_s`` after the ramp-up), or
    when ``load.max_error_rate`` is passed (then the requests in flight are dropped).

    With ``share`` (one worker of ``--workers``, :class:`~streambench.endpoint.workers.Share`)
    this loop sends only its part: arrival ``k`` of the schedule when ``k`` modulo the workers is
    its number, or, without a rate, the next index of a counter shared by the workers; the
    start time, the error tally and the stop are shared too, so the indices are global."""

    def __init__(
        self, spec: EndpointSpec, send: Callable[[int, int, bool, float], Any], share: Any = None
    ) -> None:
        import asyncio

        self.spec = spec
        self.send = send
        self.share = share
        self.lag = ClientLag()
        self.stop = asyncio.Event()
        self.sem = asyncio.Semaphore(spec.max_in_flight if share is None else share.concurrency)
        self.tasks: set[asyncio.Task[None]] = set()
        self.finished = 0
        self.failed = 0
        self.cut = 0
        self.duration_s = 0.0
        self.stopped_early: str | None = None
        self.warnings: list[str] = []
        self.ramp = ramp_count(spec)

    async def _one(self, i: int, prompt_i: int, warm: bool, phase: float, acquired: bool) -> None:
        if not acquired:
            await self.sem.acquire()
        try:
            rec = await self.send(i, prompt_i, warm, phase)
        finally:
            self.sem.release()
        if not warm:
            self._count(rec)

    def _count(self, rec: Any) -> None:
        limit = self.spec.load.max_error_rate
        self.finished += 1
        self.failed += not rec.ok
        finished, failed = self.finished, self.failed
        if self.share is not None:  # the whole point's tally, every worker's requests
            finished, failed = self.share.tally(rec.ok)
        if limit is None or self.stop.is_set():
            return
        if finished >= min(MIN_REQUESTS_FOR_ERROR_STOP, self.spec.requests):
            rate = failed / finished
            if rate > limit:
                self.stopped_early = (
                    f"stopped early: {failed} of {finished} requests failed "
                    f"({rate:.0%} > --max-error-rate {limit:g})"
                )
                self.stop.set()
                if self.share is not None:
                    self.share.stop_all()

    async def _pause(self, delay: float) -> None:
        """Sleep ``delay`` seconds, or until the point is stopped."""
        import asyncio

        if delay <= 0:
            return
        if self.spec.load.max_error_rate is None and self.share is None:
            await asyncio.sleep(delay)
            return
        try:
            await asyncio.wait_for(self.stop.wait(), delay)
        except asyncio.TimeoutError:
            pass

    def _schedule(self) -> Iterator[tuple[float, bool]] | None:
        spec = self.spec
        if spec.request_rate is None:
            return None
        return arrival_offsets(spec.request_rate, spec.load, spec.seed, spec.timeout_s)

    async def run(self) -> None:
        import asyncio

        spec = self.spec
        start = time.perf_counter() if self.share is None else self.share.start
        phase = start + spec.load.ramp_up_s
        deadline = None if spec.load.duration_s is None else phase + spec.load.duration_s
        watchers = [asyncio.ensure_future(self.lag.watch())]
        if self.share is not None:
            watchers.append(asyncio.ensure_future(self.share.watch(self.stop)))
        try:
            await self._launch(start, phase, deadline)
            waiter = asyncio.ensure_future(self.stop.wait())
            try:
                while self.tasks and not self.stop.is_set():
                    await asyncio.wait([*self.tasks, waiter], return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
        finally:
            for watcher in watchers:
                watcher.cancel()
            dropped = [t for t in self.tasks if not t.done()]
            for t in dropped:
                t.cancel()
            if dropped:
                await asyncio.gather(*dropped, return_exceptions=True)
            self.duration_s = time.perf_counter() - phase
            if self.stopped_early:
                self.warnings.append(
                    self.stopped_early
                    + (f"; {len(dropped)} request(s) in flight dropped" if dropped else "")
                )
            if self.cut:
                self.warnings.append(
                    f"{self.cut} arrival gaps were longer than --timeout ({spec.timeout_s:g} s) "
                    "and were cut to it"
                )

    def _mine(self, k: int) -> bool:
        """Whether arrival ``k`` of the schedule is this loop's to send."""
        return self.share is None or k % self.share.workers == self.share.worker

    async def _next_due(self, schedule: Iterator[tuple[float, bool]], k: int, start: float) -> int:
        """Wait until this loop's next arrival after ``k`` is due; returns its number."""
        spec = self.spec
        while True:
            k += 1
            at, cut = next(schedule)
            if self._mine(k) or k >= self.ramp + spec.requests:
                break
        if k >= self.ramp + spec.requests:
            return k
        self.cut += cut and k > 0
        target = start + at
        await self._pause(target - time.perf_counter())
        if k > 0 or spec.load.ramp_up_s:
            self.lag.send_lag_s.append(max(0.0, time.perf_counter() - target))
        return k

    async def _launch(self, start: float, phase: float, deadline: float | None) -> None:
        """Start every request when it is due; returns when sending is over."""
        import asyncio

        spec = self.spec
        schedule = self._schedule()
        total = self.ramp + spec.requests  # arrivals: the ramp-up's, then the measured ones
        k = -1
        local = itertools.count()
        while not self.stop.is_set():
            acquired = False
            if schedule is not None:
                k = await self._next_due(schedule, k, start)
                if k >= total:
                    return
            else:
                await self.sem.acquire()
                acquired = True
            now = time.perf_counter()
            if self.stop.is_set() or (deadline is not None and now >= deadline):
                if acquired:
                    self.sem.release()
                return
            if acquired:  # as fast as the concurrency allows: the next index (shared by workers)
                k = next(local) if self.share is None else self.share.next_index()
                if k >= total:
                    self.sem.release()
                    return
            warm = k < self.ramp
            i = spec.warmup + k if warm else k - self.ramp
            prompt_i = spec.warmup + k
            task = asyncio.ensure_future(self._one(i, prompt_i, warm, phase, acquired))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
