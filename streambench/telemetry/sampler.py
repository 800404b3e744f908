"""The sampling thread: polls the sources off the hot path and keeps a :class:`Trace` per source,
stamped with ``time.perf_counter()`` (the streamer's clock). See :mod:`streambench.telemetry`."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, NamedTuple, Optional

from .sources import Source

# ----------------------------------------------------------------------------------- sampling


class Sample(NamedTuple):
    """One reading: ``t`` is ``time.perf_counter()`` seconds just before ``read()``;
    ``readings`` the source's values (units in the keys)."""

    t: float
    readings: Mapping[str, Any]


@dataclass
class Trace:
    """The samples of one source, with what is needed to judge them. A sequence of
    :class:`Sample` (``len``, indexing, iteration), oldest first."""

    source: str
    resolution_s: Mapping[str, float]
    samples: list[Sample] = field(default_factory=list)
    #: read errors, first few kept (``"t=12.345: RuntimeError: ..."``)
    errors: list[str] = field(default_factory=list)
    #: polls that came later than their period (the machine was busy)
    late_polls: int = 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Sample:
        return self.samples[i]

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)


class Sampler:
    """Polls ``sources`` every ``period_s`` seconds on a daemon thread.

    :meth:`start` checks each source's :meth:`~Source.available` (an unavailable one is recorded in
    :attr:`unavailable` with its reason and not polled), collects its warnings, takes one sample of
    each synchronously, then starts the thread; :meth:`stop` stops the thread, takes one final
    sample synchronously (so a trace covers everything between start and stop) and collects the
    warnings again. Polls are scheduled on a fixed grid (no drift); a poll that comes late is
    counted in :attr:`Trace.late_polls` and the grid skips ahead. Also a context manager. The
    sampler does not close its sources (the caller may reuse them).
    """

    def __init__(self, sources: Sequence[Source], period_s: float = 0.1) -> None:
        if not period_s > 0:
            raise ValueError(f"period_s must be > 0, got {period_s!r}")
        self.sources = list(sources)
        self.period_s = float(period_s)
        #: source name -> why it is not polled
        self.unavailable: dict[str, str] = {}
        #: warning texts from the sources, without repeats
        self.warnings: list[str] = []
        self._active: list[Source] = []
        self._traces: dict[str, Trace] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def _collect_warnings(self) -> None:
        for source in self._active:
            try:
                texts = source.warnings()
            except Exception as exc:  # noqa: BLE001
                texts = [f"{source.name}: warnings() failed: {exc}"]
            for text in texts:
                if text not in self.warnings:
                    self.warnings.append(text)

    def _poll(self) -> None:
        for source in self._active:
            t = time.perf_counter()
            try:
                readings = source.read()
            except Exception as exc:  # noqa: BLE001 - a failed read must not kill the thread
                trace = self._traces[source.name]
                if len(trace.errors) < 5:
                    trace.errors.append(f"t={t:.3f}: {type(exc).__name__}: {exc}")
                continue
            with self._lock:
                self._traces[source.name].samples.append(Sample(t, readings))

    def _run(self) -> None:
        next_t = time.perf_counter() + self.period_s
        while True:
            delay = next_t - time.perf_counter()
            if self._stop.wait(max(delay, 0.0)):
                return
            self._poll()
            next_t += self.period_s
            now = time.perf_counter()
            if next_t < now:
                skipped = math.ceil((now - next_t) / self.period_s)
                next_t += skipped * self.period_s
                with self._lock:
                    for trace in self._traces.values():
                        trace.late_polls += 1

    def start(self) -> Sampler:
        """Check the sources, take a first sample, start polling. Returns ``self``."""
        if self._thread is not None:
            raise RuntimeError("Sampler already started")
        for source in self.sources:
            try:
                ok, reason = source.available()
            except Exception as exc:  # noqa: BLE001
                ok, reason = False, f"available() failed: {type(exc).__name__}: {exc}"
            if ok:
                self._active.append(source)
                self._traces[source.name] = Trace(source.name, dict(source.resolution_s))
            else:
                self.unavailable[source.name] = reason
        self._collect_warnings()
        self._poll()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="streambench-telemetry", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop polling (joins the thread), take a last sample, collect warnings again."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        self._poll()
        self._collect_warnings()

    @property
    def running(self) -> bool:
        return self._thread is not None

    def traces(self) -> dict[str, Trace]:
        """A snapshot: source name → :class:`Trace` (safe to call while running)."""
        with self._lock:
            return {
                name: Trace(t.source, t.resolution_s, list(t.samples), list(t.errors), t.late_polls)
                for name, t in self._traces.items()
            }

    def trace(self, name: Optional[str] = None) -> Trace:
        """The trace of source ``name`` (default: the only polled source)."""
        traces = self.traces()
        if name is None:
            if len(traces) != 1:
                raise ValueError(f"name one of {sorted(traces)}")
            return next(iter(traces.values()))
        return traces[name]

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.stop()
