"""The load generator: :class:`EndpointBenchmark` sends the probes, warm-up and measured requests
(bounded concurrency, optional seeded Poisson arrivals) and collects their records."""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable

from ..errors import SignalPolicy
from ..workloads.build import Request
from .metrics import EndpointResult, summarize
from .prompts import PromptSource
from .records import RequestRecord
from .signals import give_back_signals, take_signals
from .spec import FORCE_FIELDS, EndpointSpec
from .tokens import load_tokenizer
from .workload import body_fields, mark_record, request_of

if TYPE_CHECKING:
    import httpx

    from .workers import Share, WorkerPool


def _body(
    spec: EndpointSpec,
    prompt: str | None,
    max_tokens: int,
    level: int,
    messages: list[dict[str, str]] | None = None,
    natural: bool = False,
) -> dict[str, Any]:
    """The request body the spec's served backend builds (:meth:`ServedBackend.body
    <streambench.endpoint.backends.base.ServedBackend.body>`: ``level`` 0 everything, 1 without
    the forcing fields, 2 also without ``stream_options``)."""
    return spec.served().body(spec, prompt, max_tokens, level, messages, natural)


def arrival_gaps(count: int, rate: float, seed: int, cap_s: float) -> Iterator[tuple[float, bool]]:
    """The ``count`` gaps between Poisson arrivals at ``rate``/s (``random.Random(seed)``
    exponential draws), each cut at ``cap_s``: ``(gap, was_cut)`` pairs."""
    rng = random.Random(seed)
    for _ in range(count):
        gap = rng.expovariate(rate)
        yield (cap_s, True) if gap > cap_s else (gap, False)


@dataclass(frozen=True)
class _Session:
    """What every request of one run shares: the client, the URL, the headers (with the key), the
    secrets to mask and the prompts."""

    client: httpx.AsyncClient
    url: str
    headers: dict[str, str]
    secrets: tuple[str, ...]
    prompts: PromptSource


class EndpointBenchmark:
    """Runs a spec; :attr:`records` fills as requests finish (kept when interrupted).

    Interruptions: under a :class:`~streambench.errors.SignalPolicy` (the command line installs
    one) SIGINT, SIGTERM and SIGHUP are taken over inside the event loop for the run, so a signal
    cancels the run in an orderly way (in-flight requests dropped, the client closed) and
    :meth:`run` returns the finished requests with ``interrupted=True`` and
    ``interrupt_signal``. Without a policy, Ctrl-C does the same through ``asyncio.run``."""

    def __init__(
        self,
        spec: EndpointSpec,
        on_request: Callable[[RequestRecord], None] | None = None,
        tokenizer: Any = None,
        metrics_memo: Any = None,
    ) -> None:
        self.spec = spec.validate()
        #: builds the requests and reads the streams (:mod:`streambench.endpoint.backends`)
        self.backend = self.spec.served()
        self.on_request = on_request
        if tokenizer is None:
            tokenizer = load_tokenizer(spec.tokenizer, spec.trust_remote_code)
        self.tokenizer = tokenizer
        self.records: list[RequestRecord] = []
        self.level = 0
        self.dropped: tuple[str, ...] = ()
        self.started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.duration_s = 0.0
        self.interrupted = False
        self.interrupt_signal: int | None = None
        self.warnings: list[str] = []
        self.client: dict[str, Any] = {}
        self.stopped_early: str | None = None
        #: ``--server-metrics``: the run's memo (a server without metrics is said once) and this
        #: point's :class:`~streambench.endpoint.server_metrics.ServerMetrics`
        self.metrics_memo = metrics_memo
        self.server_metrics: Any = None

    def _ptok(self, prompt: str) -> int | None:
        if self.tokenizer is None or self.spec.chat:
            return None
        return len(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])

    def _on_signal(self, signum: int, policy: SignalPolicy, task: Any) -> None:
        policy.received.append(int(signum))  # the policy then ignores later signals
        if len(policy.received) == 1:
            self.interrupt_signal = int(signum)
            task.cancel()

    async def arun(self) -> EndpointResult:
        import asyncio

        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        taken = take_signals(loop, self._on_signal, task)
        try:
            await self._arun()
        except asyncio.CancelledError:
            if self.interrupt_signal is None:
                raise
            uncancel = getattr(task, "uncancel", None)  # Python >= 3.11
            if uncancel is not None:
                uncancel()
            self.interrupted = True
        finally:
            give_back_signals(loop, taken)
        return self.result()

    async def _arun(self) -> None:
        from .workers import WorkerPool

        pool: Any = None
        if self.spec.load.workers > 1 and self.spec.load.ray is not None:
            from .ray_workers import RayWorkerPool  # Ray actors over a cluster's nodes

            pool = RayWorkerPool(self.spec, type(self))
        elif self.spec.load.workers > 1:
            pool = WorkerPool(self.spec, type(self))
        try:
            if pool is not None:
                pool.start()  # they start up while the probes and the warm-up run
            async with self._session() as session:
                if self.spec.force == "auto":
                    await self._probe(session)
                await self._warm_up(session)
                if pool is None:
                    async with self._scraping():
                        await self._measure(session)
            if pool is not None:
                async with self._scraping():
                    await self._measure_spread(pool)
        finally:
            if pool is not None:
                pool.close()

    @contextlib.asynccontextmanager
    async def _scraping(self) -> AsyncIterator[None]:
        """The server's metrics scraped while the measured phase runs (``--server-metrics``)."""
        from .server_metrics import scraping

        scraped = None
        try:
            async with scraping(self.spec, self.metrics_memo) as scraped:
                yield
        finally:
            if scraped is not None:
                self.warnings.extend(scraped.warnings)
                self.server_metrics = scraped.result

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[_Session]:
        """The HTTP client and what every request shares, for the time of the ``async with``."""
        import httpx

        spec = self.spec
        url = self.backend.request_url(spec)
        from .loadgen import ramp_count

        count = 0 if spec.workload_requests else spec.warmup + ramp_count(spec) + spec.requests
        prompts = PromptSource(spec, count, self.tokenizer, self._ptok)
        limit = spec.max_in_flight
        timeout = httpx.Timeout(spec.timeout_s, connect=min(spec.timeout_s, 10.0))
        limits = httpx.Limits(max_connections=limit, max_keepalive_connections=limit)
        async with httpx.AsyncClient(
            timeout=timeout,
            limits=limits,
            trust_env=False,
            follow_redirects=False,
            verify=spec.transport.verify(),
        ) as client:
            yield _Session(client, url, self.backend.headers(spec), spec.secrets(), prompts)

    async def _send(
        self, session: _Session, i: int, prompt_i: int, max_tokens: int, warm: bool, start: float
    ) -> RequestRecord:
        """Send request ``i`` (prompt ``prompt_i``; ``start``: when its phase began, a
        ``perf_counter`` time) and record it. With a workload, request ``i`` of its phase sends
        the workload's request (its own output length unless ``max_tokens`` is 1: a probe)."""
        if self.spec.workload_requests:
            req = request_of(self.spec, max(i, 0), warm)
            prompt, messages, asked, natural = body_fields(self.spec, req)
            body = _body(self.spec, prompt, 1 if i < 0 else asked, self.level, messages, natural)
            ptok = req.input_tokens
        else:
            prompt, ptok = session.prompts.get(prompt_i)
            body = _body(self.spec, prompt, max_tokens, self.level)
            req = None
            if self.spec.workload is not None:  # --save-outputs with the usual prompts
                req = Request(prompt_i, "prompt", input_tokens=ptok)
        return await self._post(session, i, body, warm, start, ptok, req)

    async def _post(
        self,
        session: _Session,
        i: int,
        body: dict[str, Any],
        warm: bool,
        start: float,
        ptok: int | None,
        req: Request | None,
        mark: Callable[[RequestRecord], RequestRecord] | None = None,
    ) -> RequestRecord:
        """Send ``body`` as request ``i`` and record it: the workload's facts of ``req``, then
        ``mark`` (a session's turn, a trace's intended time), before it is kept and reported."""
        rec = await self.backend.send(
            session.client,
            session.url,
            body,
            session.headers,
            self.spec.timeout_s,
            i,
            start,
            warm,
            ptok,
            session.secrets,
        )
        if req is not None:
            w = self.spec.workload
            rec = mark_record(rec, req, w is not None and w.save_outputs)
        if mark is not None:
            rec = mark(rec)
        self.records.append(rec)
        if self.on_request is not None:
            self.on_request(rec)
        return rec

    async def _probe(self, session: _Session) -> None:
        """Settle which optional fields the server accepts: 1-token probes (``force="auto"``),
        dropping the forcing fields, then ``stream_options``, after HTTP 400/422."""
        spec = self.spec
        for level in (0, 1, 2):
            self.level = level
            rec = await self._send(session, -1 - level, 0, 1, True, time.perf_counter())
            if rec.ok or rec.status not in (400, 422):
                break
        else:
            self.level = 0
        sent = _body(spec, "", 1, self.level)
        full = _body(spec, "", 1, 0)
        self.dropped = tuple(k for k in FORCE_FIELDS if k not in sent)
        if "stream_options" in full and "stream_options" not in sent:
            self.dropped += ("stream_options",)
        elif full.get("stream_options") != sent.get("stream_options"):
            self.dropped += ("stream_options.continuous_usage_stats",)

    async def _warm_up(self, session: _Session) -> None:
        """The warm-up requests, one at a time."""
        t_warm = time.perf_counter()
        for i in range(self.spec.warmup):
            await self._send(session, i, i, self.spec.output_tokens, True, t_warm)

    async def _measure(self, session: _Session) -> None:
        """The measured requests (:class:`~streambench.endpoint.loadgen.LoadLoop`): bounded
        concurrency, optional seeded arrivals with a ramp-up, an optional deadline and error-rate
        stop. Sets :attr:`duration_s`, :attr:`client` and :attr:`stopped_early`."""
        loop = self._loop(session)
        try:
            await loop.run()
        finally:
            self.duration_s = loop.duration_s
            self.client = loop.lag.summary()
            self.stopped_early = loop.stopped_early
            self.warnings.extend(loop.warnings)

    async def _measure_spread(self, pool: WorkerPool) -> None:
        """The measured phase over ``--workers`` processes (:mod:`.workers`): their records
        arrive in :attr:`records` as they finish; the duration, client lag and early stop are
        merged (also when interrupted: the pool is closed here first)."""

        def keep(rec: RequestRecord) -> None:
            self.records.append(rec)
            if self.on_request is not None:
                self.on_request(rec)

        try:
            await pool.run(self.level, keep)
        finally:
            pool.close()
            self.duration_s, self.client, self.stopped_early, warnings = pool.outcome()
            self.warnings.extend(warnings)

    def run_part(self, join: Callable[[], Share | None]) -> dict[str, Any]:
        """In a worker process: open the client and prompts, then ``join()`` (says ready, waits
        for the start; ``None``: stopped before it) and send this worker's part of the measured
        phase, every finished request passed to ``on_request``. Returns its lag samples,
        duration and stop (the parent merges them:
        :meth:`~streambench.endpoint.workers.WorkerPool.outcome`)."""
        import asyncio

        from .loadgen import LoadLoop

        async def part() -> LoadLoop | None:
            async with self._session() as session:
                share = join()
                if share is None:
                    return None
                loop = self._loop(session, share)
                await loop.run()
                return loop

        loop = asyncio.run(part())
        if loop is None:
            return {}
        return {
            "duration_s": loop.duration_s,
            "send_lag_s": loop.lag.send_lag_s,
            "timer_lag_s": loop.lag.timer_lag_s,
            "stopped_early": loop.stopped_early,
            "cut": loop.cut,
            "warnings": loop.warnings,
        }

    def _loop(self, session: _Session, share: Share | None = None) -> Any:
        """The measured phase's loop: :class:`~streambench.endpoint.loadgen.LoadLoop`, or with
        ``--trace`` its replay at the trace's times."""
        from .loadgen import LoadLoop

        if self.spec.trace is not None:
            from .tracesend import TraceLoop

            return TraceLoop(self.spec, self._send_in(session), share)
        return LoadLoop(self.spec, self._send_in(session), share)

    def _send_in(self, session: _Session) -> Callable[[int, int, bool, float], Any]:
        """``send(i, prompt_i, warmup, start)`` of a request of the measured phase."""

        def send(i: int, prompt_i: int, warm: bool, start: float) -> Any:
            return self._send(session, i, prompt_i, self.spec.output_tokens, warm, start)

        if self.spec.multi_turn is not None:
            from .sessions import session_sender

            return session_sender(self, session)
        if self.spec.trace is not None:
            from .tracesend import trace_sender

            return trace_sender(self, session)
        return send

    def _asked_tokens(self) -> int | None:
        """The output length every request asked for; ``None`` when it varies (a workload)."""
        w = self.spec.workload
        if self.spec.trace is not None:
            return None  # each request its trace's length
        if w is None or not self.spec.workload_requests:
            return self.spec.output_tokens
        fixed = w.uses_file and isinstance(w.output_len, int) and not w.length_spread
        return self.spec.output_tokens if fixed else None

    def result(self) -> EndpointResult:
        """The result of what has finished so far (after an interruption: a partial result)."""
        records = tuple(
            r.recount(self.tokenizer)
            for r in sorted(
                self.records, key=lambda r: (not r.warmup, r.index if not r.warmup else 0)
            )
        )
        sent = _body(self.spec, "", 1, self.level)
        return EndpointResult(
            spec=self.spec,
            records=records,
            summary=summarize(
                records,
                self.duration_s,
                self.spec.slo,
                self._asked_tokens(),
                self.spec.load.percentiles,
            ),
            started_at=self.started_at,
            sent_fields=tuple(k for k in sent if k not in ("prompt", "messages")),
            dropped_fields=self.dropped,
            interrupted=self.interrupted,
            interrupt_signal=self.interrupt_signal if self.interrupted else None,
            warnings=tuple(self.warnings),
            client=self.client,
            stopped_early=self.stopped_early,
            server_metrics=self.server_metrics.to_dict() if self.server_metrics else None,
        )

    def run(self) -> EndpointResult:
        """Run to the end (blocking). Interrupted (Ctrl-C; SIGTERM/SIGHUP under a
        :class:`~streambench.errors.SignalPolicy`): a partial result with ``interrupted=True``."""
        import asyncio
        import signal

        try:
            return asyncio.run(self.arun())
        except KeyboardInterrupt as exc:
            self.interrupted = True
            if self.interrupt_signal is None:
                self.interrupt_signal = getattr(exc, "signum", int(signal.SIGINT))
            return self.result()


def run_endpoint(
    spec: EndpointSpec,
    on_request: Callable[[RequestRecord], None] | None = None,
    tokenizer: Any = None,
) -> EndpointResult:
    """Benchmark ``spec`` and return its :class:`EndpointResult` (blocking)."""
    return EndpointBenchmark(spec, on_request=on_request, tokenizer=tokenizer).run()
