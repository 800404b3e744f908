"""``--workers N``: the measured phase of one load point spread over N client processes.

One event loop can only send and read so many streams before its own lag (``client.send_lag_s``,
``timer_lag_s``) enters the latencies. With ``--workers N`` the probes and warm-up still run in
this process, one at a time; the measured phase (ramp-up included) runs in N processes started
with the ``spawn`` context, each with its own event loop and HTTP client:

- **the schedule**: every worker computes the same seeded arrival schedule and sends arrival
  ``k`` when ``k mod N`` is its number, at its time from a start time shared by all (a wall-clock
  time converted to each process's ``perf_counter``); without a rate, each worker takes the next
  request index from a counter shared by all when one of its slots frees;
- **concurrency**: split as evenly as possible (:func:`split_concurrency`; each worker needs one);
- **numbering**: request indices are global, so the merged records have each request once;
- **the stop**: ``--max-error-rate`` counts every worker's requests (a shared tally) and stops all;
  a deadline (``--duration``) is the same time for all;
- **results**: each finished request is sent to this process as it finishes (so progress, and an
  interruption, see it at once); the same metrics are computed over the merged records; the
  client lag is pooled over the workers (``client.workers``, and each worker's p99 in
  ``client.per_worker``; ``bottleneck`` when the pooled or any one worker's p99 is too high).

Signals: the workers ignore SIGINT and SIGHUP (a Ctrl-C reaches the whole process group); this
process decides, and on an interruption tells them to stop (in-flight requests dropped, as with
one process), collects what they finished and returns the interrupted result. A worker whose
parent has gone ends at once, quietly (:func:`streambench.runners.orphan.tie_to_parent`).
"""

from __future__ import annotations

import contextlib
import os
import queue as queue_module
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from .load import CLIENT_LAG_WARN_S, ClientLag

if TYPE_CHECKING:
    import asyncio

    from .records import RequestRecord
    from .spec import EndpointSpec

#: how far ahead of "go" the shared start time is set (s): every worker wakes before it
START_LEAD_S = 0.1
#: how long the workers may take to start (import, tokenizer) before the point fails (s)
START_TIMEOUT_S = 120.0
#: how long, after a stop, the workers may take to hand back what they finished (s)
STOP_GRACE_S = 10.0
#: how often a worker looks at the shared stop (s)
WATCH_PERIOD_S = 0.005


class WorkerError(RuntimeError):
    """A worker process failed (its one-line reason); the point fails."""


def split_concurrency(total: int, workers: int) -> list[int]:
    """``total`` requests in flight over ``workers`` as evenly as possible (``[3, 2]`` for 5
    over 2); each gets at least one (the spec checks ``workers <= total``)."""
    base, extra = divmod(total, workers)
    return [base + (w < extra) for w in range(workers)]


@dataclass(frozen=True)
class Part:
    """Which part of the point a worker sends: its number, the number of workers, its share of
    the concurrency (picklable: handed to the worker process)."""

    worker: int
    workers: int
    concurrency: int


class Share:
    """A worker's view of what the workers share (in the worker process): its :class:`Part`,
    the start time (this process's ``perf_counter``), the request counter, the error tally and
    the stop (``multiprocessing`` objects of the ``spawn`` context)."""

    def __init__(self, part: Part, start: float, shared: dict[str, Any], parent: int) -> None:
        self.worker = part.worker
        self.workers = part.workers
        self.concurrency = part.concurrency
        self.start = start
        self._counter = shared["counter"]
        self._tally = shared["tally"]
        self._stop = shared["stop"]
        self._parent = parent

    def next_index(self) -> int:
        """The next request index of the point (without a rate), taken once across workers."""
        with self._counter.get_lock():
            k = int(self._counter.value)
            self._counter.value = k + 1
        return k

    def tally(self, ok: bool) -> tuple[int, int]:
        """Count one finished measured request; the point's ``(finished, failed)`` so far."""
        with self._tally.get_lock():
            self._tally[0] += 1
            self._tally[1] += int(not ok)
            return int(self._tally[0]), int(self._tally[1])

    def stop_all(self) -> None:
        self._stop.set()

    async def watch(self, stop: asyncio.Event) -> None:
        """Set ``stop`` once the shared stop is set or the parent process has gone."""
        import asyncio

        while not stop.is_set():
            if self._stop.is_set() or os.getppid() != self._parent:
                stop.set()
                return
            await asyncio.sleep(WATCH_PERIOD_S)


@contextlib.contextmanager
def _signals_blocked() -> Any:
    """SIGINT, SIGTERM and SIGHUP blocked in this thread while workers start: they inherit the
    mask and ignore SIGINT/SIGHUP before unblocking (no traceback from a Ctrl-C mid-start);
    a signal that came meanwhile reaches this process when the mask is back."""
    import signal

    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    sigs = {signal.SIGINT, signal.SIGTERM, *([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class WorkerPool:
    """The worker processes of one load point (in the parent). :meth:`start` them early (they
    import and load the tokenizer meanwhile), :meth:`run` the measured phase, :meth:`close`
    always (idempotent: stops them, collects what they finished, ends them)."""

    def __init__(self, spec: EndpointSpec, bench: Callable[..., Any]) -> None:
        """``bench``: the benchmark class each worker builds (``EndpointBenchmark``; passed in,
        picklable by name, so that this module does not import the runner)."""
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self.spec = spec
        self.workers = spec.load.workers
        self.queue = ctx.Queue()
        self.shared = {
            "counter": ctx.Value("q", 0),
            "tally": ctx.Array("q", 2),
            "stop": ctx.Event(),
            "go": ctx.Event(),
            "control": ctx.Array("d", 2, lock=False),  # start (wall clock), probe level
        }
        parts = split_concurrency(spec.max_in_flight, self.workers)
        self.procs = [
            ctx.Process(
                target=worker_main,
                args=(bench, spec, Part(w, self.workers, c), self.queue, self.shared, os.getpid()),
                name=f"streambench-endpoint-worker-{w}",
                daemon=True,
            )
            for w, c in enumerate(parts)
        ]
        self.ready: set[int] = set()
        self.done: dict[int, dict[str, Any]] = {}
        self.errors: list[str] = []
        self.closed = False
        self.keep: Callable[[RequestRecord], None] = lambda rec: None

    def start(self) -> None:
        with _signals_blocked():
            for proc in self.procs:
                proc.start()

    def _handle(self, msg: tuple[Any, ...]) -> None:
        kind, w = msg[0], msg[1]
        if kind == "ready":
            self.ready.add(w)
        elif kind == "rec":
            self.keep(msg[2])
        elif kind == "done":
            self.done[w] = msg[2]
        elif kind == "error":
            self.done.setdefault(w, {})
            self.errors.append(f"worker {w}: {msg[2]}")

    def _poll(self) -> bool:
        """Handle every waiting message; whether there was one."""
        got = False
        while True:
            try:
                msg = self.queue.get_nowait()
            except queue_module.Empty:
                return got
            self._handle(msg)
            got = True

    def _dead(self) -> list[str]:
        """Workers that ended without saying they were done."""
        return [
            f"worker {w} ended with exit code {p.exitcode} before its part was done"
            for w, p in enumerate(self.procs)
            if p.exitcode is not None and w not in self.done
        ]

    async def _until(self, cond: Callable[[], bool], timeout: float | None, what: str) -> None:
        import asyncio

        limit = None if timeout is None else time.monotonic() + timeout
        while not cond():
            if self._poll():
                continue
            if self.errors:
                raise WorkerError("; ".join(self.errors))
            dead = self._dead()
            if dead and not self._poll():
                raise WorkerError("; ".join(dead))
            if limit is not None and time.monotonic() > limit:
                raise WorkerError(f"the workers did not {what} within {timeout:g} s")
            await asyncio.sleep(0.01)

    async def run(self, level: int, keep: Callable[[RequestRecord], None]) -> None:
        """The measured phase: wait for every worker, give them a start time and the probe
        ``level``, pass each finished request to ``keep``; returns when all are done."""
        self.keep = keep
        await self._until(lambda: len(self.ready) == self.workers, START_TIMEOUT_S, "start")
        control = self.shared["control"]
        control[0] = time.time() + START_LEAD_S
        control[1] = float(level)
        self.shared["go"].set()
        await self._until(lambda: len(self.done) == self.workers, None, "finish")
        if self.errors:
            raise WorkerError("; ".join(self.errors))

    def close(self) -> None:
        """Stop the workers, take what they finished (up to :data:`STOP_GRACE_S`), end them."""
        if self.closed:
            return
        self.closed = True
        self.shared["stop"].set()
        self.shared["go"].set()
        limit = time.monotonic() + STOP_GRACE_S
        started = [w for w, p in enumerate(self.procs) if p.pid is not None]
        while len(self.done) < len(started) and time.monotonic() < limit:
            try:
                self._handle(self.queue.get(timeout=0.05))
            except queue_module.Empty:
                if self._dead():
                    self._poll()
                    break
        for proc in self.procs:
            if proc.pid is None:
                continue
            proc.join(max(0.0, limit - time.monotonic()))
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
        self.queue.close()
        self.queue.join_thread()

    def outcome(self) -> tuple[float, dict[str, Any], str | None, list[str]]:
        """``(duration_s, client, stopped_early, warnings)`` merged over the workers: the longest
        duration (all count from the same start), the pooled client lag, the first stop."""
        parts = [self.done[w] for w in sorted(self.done) if self.done[w]]
        duration = max((p["duration_s"] for p in parts), default=0.0)
        stopped = next((p["stopped_early"] for p in parts if p["stopped_early"]), None)
        warnings: list[str] = []
        cut = sum(p["cut"] for p in parts)
        for p in parts:  # one stop (the first worker's) and one count of cut gaps
            warnings += [
                w
                for w in p["warnings"]
                if not w.startswith(("stopped early", f"{p['cut']} arrival gaps"))
            ]
        if stopped:
            first = next(p for p in parts if p["stopped_early"] == stopped)
            warnings[:0] = [w for w in first["warnings"] if w.startswith("stopped early")]
        if cut:
            warnings.append(
                f"{cut} arrival gaps were longer than --timeout ({self.spec.timeout_s:g} s) "
                "and were cut to it"
            )
        return duration, merged_lag(parts, self.workers), stopped, list(dict.fromkeys(warnings))


def merged_lag(parts: list[dict[str, Any]], workers: int) -> dict[str, Any]:
    """The ``client`` object of a point spread over ``workers``: the pooled lag statistics
    (:meth:`ClientLag.summary`), ``workers``, and each worker's p99s in ``per_worker``."""
    pooled = ClientLag(
        send_lag_s=[x for p in parts for x in p["send_lag_s"]],
        timer_lag_s=[x for p in parts for x in p["timer_lag_s"]],
    )
    out = pooled.summary()
    per_worker = []
    for p in parts:
        one = ClientLag(send_lag_s=p["send_lag_s"], timer_lag_s=p["timer_lag_s"]).summary()
        p99 = {k: (one[k] or {}).get("p99") for k in ("send_lag_s", "timer_lag_s")}
        per_worker.append(p99)
        out["bottleneck"] = out["bottleneck"] or any(
            v is not None and v > CLIENT_LAG_WARN_S for v in p99.values()
        )
    out["workers"] = workers
    out["per_worker"] = per_worker
    return out


def worker_main(
    bench_class: Callable[..., Any],
    spec: EndpointSpec,
    part: Part,
    queue: Any,
    shared: dict[str, Any],
    parent: int,
) -> None:
    """A worker process: get ready, wait for "go", send its part of the measured phase, hand
    back every finished request as it finishes, then its lag and duration ("done")."""
    import signal

    from ..runners.orphan import tie_to_parent

    tie_to_parent(parent)  # also while it imports or loads the tokenizer: dies with the parent

    for name in ("SIGINT", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
    w = part.worker
    try:
        bench = bench_class(spec, on_request=lambda rec: queue.put(("rec", w, rec)))

        def join() -> Share | None:
            queue.put(("ready", w))
            while not shared["go"].wait(0.1):
                if os.getppid() != parent:
                    return None
            if shared["stop"].is_set():
                return None
            start_wall, bench.level = shared["control"][0], int(shared["control"][1])
            return Share(part, time.perf_counter() + (start_wall - time.time()), shared, parent)

        queue.put(("done", w, bench.run_part(join)))
    except BaseException as exc:  # noqa: BLE001 - one line to the parent, never a traceback
        from .client import describe_error
        from .scrub import scrub_text

        queue.put(("error", w, scrub_text(describe_error(exc), spec.secrets())))
