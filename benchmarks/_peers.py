"""How the peers time generation, for side-by-side accuracy runs.

``OptimumStyleTimer`` re-implements the *method* of optimum-benchmark's per-token latency tracker
(``PerTokenLatencySessionTrackerLogitsProcessor`` in ``optimum_benchmark/trackers/latency.py``,
version 0.6.0), written from its documented behaviour, for machines where the package is not
installed (the GPU check) and to cross-check the real package on CPU:

* a *session* spans several ``generate()`` calls; each call is wrapped in ``track()``, which
  stamps the start (``time.perf_counter()`` on CPU, a recorded ``torch.cuda.Event`` on CUDA) and
  the end of the call;
* the object is passed as a logits processor, so ``generate()`` calls it once per decoding step,
  after the step's forward pass; each call stamps a time (or records a CUDA event). The first
  stamp of a call ends its *prefill*;
* *per-token* latencies are the gaps between consecutive stamps. As in the original, the stamps
  are kept for the whole session and, at the end of each ``track()``, every consecutive pair of
  the session's stamps so far is appended again — so from the second call on, the list repeats
  earlier gaps and contains the gap *between* two calls (end of one call + start and prefill of
  the next). ``reset_per_call=True`` gives the intended behaviour (one call's gaps only), so the
  two can be compared.
* CUDA events are read after a ``torch.cuda.synchronize()`` at the end; there is no device sync
  per step, and no sync on MPS/XPU.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class OptimumStyleTimer:
    """optimum-benchmark's per-step logits-processor timing, re-implemented (see module doc)."""

    def __init__(self, device: str = "cpu", reset_per_call: bool = False) -> None:
        self.cuda = device.startswith("cuda")
        self.reset_per_call = reset_per_call
        self._new_session()

    def _new_session(self) -> None:
        self.prefill_start: list[Any] = []
        self.prefill_end: list[Any] = []
        self.decode_end: list[Any] = []
        self.token_start: list[Any] = []
        self.token_end: list[Any] = []
        self.stamps: list[Any] = []

    def _stamp(self) -> Any:
        if self.cuda:
            import torch

            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            return ev
        return time.perf_counter()

    @contextmanager
    def session(self) -> Iterator[OptimumStyleTimer]:
        self._new_session()
        yield self

    @contextmanager
    def track(self) -> Iterator[None]:
        if self.reset_per_call:
            self.stamps = []
        start = self._stamp()
        yield
        end = self._stamp()
        self.prefill_start.append(start)
        self.decode_end.append(end)
        self.token_start.extend(self.stamps[:-1])
        self.token_end.extend(self.stamps[1:])

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        stamp = self._stamp()
        if len(self.prefill_start) == len(self.prefill_end):
            self.prefill_end.append(stamp)
        self.stamps.append(stamp)
        return scores

    def _gaps(self, starts: list[Any], ends: list[Any]) -> list[float]:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            return [a.elapsed_time(b) / 1e3 for a, b in zip(starts, ends)]
        return [b - a for a, b in zip(starts, ends)]

    def prefill_latencies(self) -> list[float]:
        """Per call: ``track()`` start -> first logits-processor call, seconds."""
        return self._gaps(self.prefill_start, self.prefill_end)

    def per_token_latencies(self) -> list[float]:
        """Gaps between consecutive logits-processor calls, seconds (see module doc)."""
        return self._gaps(self.token_start, self.token_end)


def as_logits_processor(timer: Any) -> Any:
    """Wrap any ``(input_ids, scores) -> scores`` callable as a transformers LogitsProcessor."""
    from transformers import LogitsProcessor, LogitsProcessorList

    class _LP(LogitsProcessor):
        def __call__(self, input_ids: Any, scores: Any) -> Any:
            return timer(input_ids, scores)

    return LogitsProcessorList([_LP()])
