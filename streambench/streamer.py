"""``TimingStreamer``: time every token of an unmodified ``model.generate(streamer=...)``.

``generate()`` calls ``put()`` once with the prompt, then once per decoding step with the new
token(s), then ``end()``. The streamer syncs the device and stamps ``time.perf_counter()`` at each
``put()``: the first token's time ends at the *second* put, the rest follow one per step.

Example:
    >>> import torch
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> from streambench import TimingStreamer
    >>> cfg = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32,
    ...                   num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1)
    >>> model = LlamaForCausalLM(cfg).eval()
    >>> streamer = TimingStreamer(device="cpu")
    >>> _ = model.generate(torch.tensor([[1, 5, 7]]), streamer=streamer, max_new_tokens=8,
    ...                    min_new_tokens=8, do_sample=False, pad_token_id=0)
    >>> s = streamer.summary()
    >>> s.new_tokens, s.prompt_tokens, len(s.token_latencies_s), s.first_token_s > 0
    (8, 3, 8, True)
"""

from __future__ import annotations

import math
import sys
import threading
import warnings
from threading import get_ident
from time import perf_counter
from typing import Any

from transformers.generation.streamers import BaseStreamer

from .devices import DeviceBackend, get_backend
from .ranks import should_print
from .stats import RunsSummary, aggregate
from .timing import (
    NO_TOKEN_CAUSES,
    InterleavedRunsError,
    NoTokensError,
    RunRecorder,
    RunResult,
    exception_text,
)

__all__ = ["InterleavedRunsError", "TimingStreamer"]

# Callers skipped when looking for the call that feeds a run (see TimingStreamer._feeder):
# streamers that forward, and the logits processor / hooks through which BenchmarkWrapper feeds it.
_PASS_THROUGH = frozenset({"put", "end", "prompt_once", "__call__", "<lambda>"})
_HERE = globals()


#: with ``memory=True``, a per-token reading is taken only when at least PROBE_BUDGET times its
#: cost has passed since the last one (the cost as measured in this run, smoothed, never below
#: PROBE_COST_S), so the reads take at most ~1/PROBE_BUDGET (0.1 %) of the run's time; their
#: wall-time cost inside generate() (cache misses included) measured about twice that
#: (benchmarks/overhead.py)
PROBE_BUDGET = 1000.0
#: the least one memory reading costs (seconds): CPU one pread of /proc/self/statm in a hot
#: loop (inside generate(), caches cold, it measured 10-40 µs); CUDA one memory_stats query on an
#: H200 host
PROBE_COST_S = {"cpu": 2e-6, "cuda": 2e-5, "xpu": 2e-5, "mps": 2e-5}


#: the warning of a token put() with no run open (after end(), or before any prompt)
STRAY_PUT = (
    "TimingStreamer: put() of a token while no generate() is in progress (after end(), or "
    "before any prompt): ignored. generate() puts the prompt [batch, prompt_len] first; a token "
    "put after end() belongs to no run"
)


class TimingStreamer(BaseStreamer):
    """A streamer that records, per ``generate()`` call, the time and memory of every token.

    Args:
        device: the device the model runs on: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"xpu"``,
            ``"mps"``, a ``torch.device``, or ``None``/``"auto"`` (first available accelerator,
            else CPU). Validated here: an unknown string raises ``ValueError``, a device this
            machine lacks raises :class:`~streambench.devices.DeviceNotAvailableError`.
        do_print: at ``end()``, print ipex-llm's two lines (``=========First token cost ...``).
        verbose: at ``end()``, also print every token's latency and memory.
        inner: another streamer (e.g. ``TextStreamer(tokenizer)``) that receives every
            ``put``/``end`` too. Its time is measured and excluded from the latencies.
        memory: ``True`` (default): a memory reading at the first and the last token, and in
            between wherever it costs at most ~0.1 % of the time since the last one (see
            PROBE_BUDGET; the other tokens read ``None``); ``"every-token"``: a reading at every
            token; ``False``: none. :mod:`streambench.devices` says what is read and what it
            costs.
        sync: sync the device before each timestamp (default ``True``; only accelerators sync).
        print_fn: where printed lines go (default ``print``).
        print_ranks: under ``torch.distributed``, the ranks that print (``0``, ``[0, 2]``,
            ``"all"``); default ``None`` uses :func:`streambench.ranks.get_print_ranks`
            (``$STREAMBENCH_PRINT_RANKS``, else rank 0). Every rank still records its own timing
            and memory; without an initialized process group the streamer always prints.

    After (or during) generation: :meth:`summary` is the latest run, :attr:`runs` every run,
    oldest first, :meth:`stats` statistics over runs, :meth:`reset` forgets them.

    Threads: one streamer times one ``generate()`` at a time, called from any thread — e.g.
    ``generate()`` in a worker thread while the main thread reads an ``inner``
    ``TextIteratorStreamer``, or an engine that calls the streamer from its own thread. Two
    ``generate()`` calls feeding it *at the same time* would merge into one run, so the one that
    arrives second is refused with :class:`~streambench.timing.InterleavedRunsError` (its prompt
    ``put()``, or its ``mark_start()``) and the run in progress stays intact; should the second
    call get past that (its prompt not recognisable as one), the first put from a thread that
    fed the run before and lost it raises, and that run is kept as ``complete=False`` with
    ``extra["interleaved"]``. A run left open by a ``generate()`` that raised does not block
    other threads: it is closed (``complete=False``) by the next call.
    """

    def __init__(
        self,
        device: Any = None,
        do_print: bool = False,
        verbose: bool = False,
        inner: Any | None = None,
        *,
        memory: bool | str = True,
        sync: bool = True,
        print_fn: Any = print,
        print_ranks: Any = None,
    ) -> None:
        if memory not in (True, False, "every-token"):
            raise ValueError(f"memory={memory!r}: use True, False or 'every-token'")
        self.backend: DeviceBackend = get_backend(device, memory=bool(memory))
        # True: a reading wherever it costs at most 1/PROBE_BUDGET of the time since the last one
        # (and always at the first and last token); "every-token": at every token.
        self._every_token = memory == "every-token"
        self._nominal_cost = PROBE_COST_S.get(self.backend.device.type, max(PROBE_COST_S.values()))
        self._probe_cost = self._nominal_cost
        self.device = str(self.backend.device)
        self.do_print = do_print
        self.verbose = verbose
        self.inner = inner
        self.print_fn = print_fn
        self.print_ranks = print_ranks
        self._sync = self.backend.sync if sync else None
        self._read_memory = self.backend.read_memory
        # finished runs, oldest first; a RunRecorder is a run that ended normally and is turned
        # into its RunResult when first read (end() runs inside the timed generate() call)
        self._runs: list[RunResult | RunRecorder] = []
        self._run: RunRecorder | None = None
        self._probe_failed = False
        self._lock = threading.RLock()  # state changes off the per-token fast path

    # -- results ------------------------------------------------------------------------------
    @property
    def runs(self) -> list[RunResult]:
        """Every run so far, oldest first (a run still in progress is included, incomplete)."""
        with self._lock:
            for i, run in enumerate(self._runs):
                if isinstance(run, RunRecorder):
                    self._runs[i] = run.finish(complete=True)
            runs: list[RunResult] = list(self._runs)  # type: ignore[arg-type]
            if self._run is not None and not self._run.awaiting_prompt:
                runs.append(self._run.finish(complete=False))
        return runs

    def summary(self) -> RunResult:
        """The latest run. Raises :class:`NoTokensError` when it saw the prompt but no token,
        and ``RuntimeError`` when no ``generate()`` call has reached the streamer yet."""
        runs = self.runs
        if not runs:
            raise RuntimeError(
                "no generate() call has reached this streamer yet: pass it as "
                "model.generate(..., streamer=streamer) and generate first"
            )
        last = runs[-1]
        if not last.has_tokens:
            raise NoTokensError(NO_TOKEN_CAUSES)
        return last

    def stats(self, warmup: int = 0) -> RunsSummary:
        """Statistics over :attr:`runs` after skipping the first ``warmup`` runs."""
        return aggregate(self.runs, warmup=warmup)

    def reset(self) -> None:
        """Forget every run (a run in progress included)."""
        with self._lock:
            self._runs.clear()
            self._run = None

    # -- marking ------------------------------------------------------------------------------
    def mark_start(self) -> None:
        """Mark the call of ``generate()``: the next run's times count from here, not from the
        prompt ``put()``, and the time up to the prompt (input preparation, the encoder of an
        encoder-decoder model) becomes ``pre_prompt_s``. Call it right before ``generate()``,
        from any thread. Raises :class:`~streambench.timing.InterleavedRunsError` while another
        thread's ``generate()`` (or marked call) is still in progress on this streamer."""
        me = get_ident()
        with self._lock:
            run = self._run
            if run is not None and run.interleaved is None:
                owner = run.thread if run.thread is not None else run.feeder_thread
                if owner is not None and owner != me and self._feeding(run):
                    raise InterleavedRunsError(self._interleaved("mark_start()", run, me))
            self._close_unfinished()
            if self._sync is not None:
                self._sync()
            t = perf_counter()
            run = self._new_run()
            run.mark(t)
            run.fed_by = (me,)
            run.feeder = self._feeder(me)
            self._run = run
            if self._read_memory is not None and self.backend.reset_peak is not None:
                self._safe(self.backend.reset_peak)
            run.charge(perf_counter() - t)

    # -- BaseStreamer -------------------------------------------------------------------------
    def put(self, value: Any) -> None:
        """Called by ``generate()``: first with the prompt, then with each step's new tokens.

        ``value`` is a ``torch.Tensor`` of token ids, as ``generate()`` passes it: the prompt
        ``[batch, prompt_len]``, then per step ``[batch]`` (one token per sequence) or ``[1, k]``
        (k tokens, assisted decoding). Anything else (a list, a NumPy array) raises ``TypeError``.
        A put that carries no token — an empty ``[0]`` or ``[0, n]`` tensor, or ``[1, 0]`` after
        the prompt — is ignored, as transformers' own streamers add no text for it: it records no
        step and starts no run (so it never makes a run of batch 0). An empty ``[batch, 0]``
        prompt, which ``generate(inputs_embeds=...)`` puts, is still the prompt.
        A token put (1-D) while no run is open — after ``end()``, or before any prompt — is
        ignored with a ``RuntimeWarning``: it belongs to no ``generate()`` and starts no run.

        Raises :class:`~streambench.timing.InterleavedRunsError` when another thread's
        ``generate()`` is feeding this streamer at the same time (see the class docstring).
        """
        if self._sync is not None:
            self._sync()
        t = perf_counter()
        run = self._run
        try:
            dim = value.dim()
        except AttributeError:
            raise TypeError(
                "TimingStreamer.put() takes a torch.Tensor of token ids, as generate() passes "
                "it ([batch, prompt_len] for the prompt, then [batch] or [1, k] per step); got "
                f"{type(value).__name__}. Wrap token ids as torch.tensor([[...]]) first"
            ) from None
        if dim == 1 and run is not None and run.thread == get_ident() and value.numel():
            # The per-token fast path (1-D [batch]: one token per sequence, from the thread that
            # put the prompt; run.thread is set only then): one append, and the step hook only
            # when due. Inside generate() every line here runs with cold caches (~4 µs a put
            # at ~1 ms/token measured for the general path), hence so few (benchmarks/overhead.py).
            run.times.append(t)
            if t >= run.next_hook:
                self._hook(run, t, value)
            return
        with self._lock:
            self._put(value, dim, t)

    def _put(self, value: Any, dim: int, t: float) -> None:
        """The general path of :meth:`put`: prompts, k-token steps, other threads, empty puts."""
        run = self._run
        me = get_ident()
        empty = not value.numel()
        if run is None and dim < 2:
            if not empty:  # a token with no generate() in progress: part of no run
                warnings.warn(STRAY_PUT, RuntimeWarning, stacklevel=3)
            return
        if run is None or run.awaiting_prompt:
            if not (empty and (dim < 2 or not value.shape[0])):
                self._start_run(value, dim, t, me)
            return
        prompt = dim >= 2 and self._is_new_prompt(value)
        if empty and not prompt:
            return
        if run.thread != me:
            if run.interleaved is not None:
                if not prompt:
                    raise InterleavedRunsError(run.interleaved)
            elif prompt:
                if self._feeding(run):  # a second generate(): refused, the run stays intact
                    raise InterleavedRunsError(self._interleaved("a prompt put()", run, me))
            else:
                self._token_from(run, me, "a token put()")
        if prompt:
            if value.shape[0]:
                self._start_run(value, dim, t, me)
            else:  # a new generate() of batch 0: the open run is over, and nothing starts
                self._close_unfinished()
        else:
            # 1-D [batch]: one token per sequence; 2-D [1, k]: k tokens (assisted decoding).
            self._step(run, t, value.shape[-1] if dim > 1 else 1, value)

    # -- the same timing core, for callers that see steps but not tensors -------------------------
    def on_prompt(self, batch_size: int, prompt_tokens: int) -> None:
        """Record the prompt hand-over without a tensor (what the prompt ``put()`` does). Used
        where a streamer cannot be passed, e.g. by a logits processor timing beam search."""
        if self._sync is not None:
            self._sync()
        t = perf_counter()
        me = get_ident()
        with self._lock:
            run = self._run
            if (
                run is not None
                and not run.awaiting_prompt
                and run.thread != me
                and run.interleaved is None
                and self._feeding(run)
            ):
                raise InterleavedRunsError(self._interleaved("on_prompt()", run, me))
            if run is None or not run.awaiting_prompt:
                self._close_unfinished()
                run = self._run = self._new_run()
            self._own(run, me)
            self._begin(run, t, int(batch_size), int(prompt_tokens), None)

    def on_step(self, tokens: int = 1) -> None:
        """Record one decoding step that produced ``tokens`` tokens per sequence (what a token
        ``put()`` does), e.g. from a logits processor called once per step."""
        if self._sync is not None:
            self._sync()
        t = perf_counter()
        run = self._run
        if run is None or run.awaiting_prompt:
            raise RuntimeError("on_step() before the prompt: call on_prompt() (or put()) first")
        if run.thread != get_ident():
            with self._lock:
                if run.interleaved is not None:
                    raise InterleavedRunsError(run.interleaved)
                self._token_from(run, get_ident(), "on_step()")
        self._step(run, t, tokens, None)

    def _step(self, run: RunRecorder, t: float, tokens: int, value: Any) -> None:
        run.times.append(t)
        if tokens != 1:
            run.multi[len(run.times) - 1] = tokens
        if t >= run.next_hook:
            self._hook(run, t, value)

    def _hook(self, run: RunRecorder, t: float, value: Any) -> None:
        """The work after a step's timestamp, when due: the memory reading (where affordable,
        see PROBE_BUDGET) and the ``inner`` streamer. Its time is charged to the next step."""
        if t >= run.next_probe and self._read_memory is not None:
            self._probe(run)
            if self._read_memory is not None and not self._every_token:
                # the gap follows what a reading really costs here (EMA, never below nominal)
                self._probe_cost += (perf_counter() - t - self._probe_cost) * 0.2
                run.next_probe = t + max(self._probe_cost, self._nominal_cost) * PROBE_BUDGET
        if self.inner is not None:
            if value is not None:
                self.inner.put(value)
        else:
            run.next_hook = run.next_probe
        run.charge(perf_counter() - t)

    def end(self) -> None:
        """Called by ``generate()`` once generation finished normally (from any thread: an
        engine may end from the caller's thread a run its own thread fed). A run found
        interleaved is kept as ``complete=False``."""
        if self.inner is not None:
            self.inner.end()
        with self._lock:
            run = self._run
            if run is None:
                return
            self._run = None
        if self._read_memory is not None and run.times and len(run.times) - 1 not in run.memory:
            # the last token's reading, taken after it (no later token to delay)
            self._probe(run)
        if self.do_print or self.verbose:
            result = run.finish(complete=True)
            self._runs.append(result)
            self._report(result)
        else:
            self._runs.append(run)

    # -- internals ----------------------------------------------------------------------------
    @staticmethod
    def _feeder(me: int) -> tuple[int, int, Any] | None:
        """(thread, id of frame, code) of the call feeding a run from this thread: the nearest
        ``generate`` on the stack, else the first caller outside the streamer and the callers that
        only pass through (forwarding ``put``s, logits processors, hooks). While that frame is on
        its thread's stack the run is being fed; once it is gone (``generate()`` raised before
        ``end()``) the run is stale and does not block other threads."""
        frame = sys._getframe(1)
        first = None
        depth = 0
        while frame is not None and depth < 64:
            code = frame.f_code
            if frame.f_globals is not _HERE:
                if code.co_name == "generate":
                    return me, id(frame), code
                if first is None and code.co_name not in _PASS_THROUGH:
                    first = frame
            frame = frame.f_back
            depth += 1
        return (me, id(first), first.f_code) if first is not None else None

    @staticmethod
    def _feeding(run: RunRecorder) -> bool:
        """Whether the call that feeds ``run`` is still running (its frame on its thread's stack).
        Only called when another thread shows up, never per token."""
        if run.feeder is None:
            return False
        ident, frame_id, code = run.feeder
        frame = sys._current_frames().get(ident)
        while frame is not None:
            if id(frame) == frame_id and frame.f_code is code:
                return True
            frame = frame.f_back
        return False

    def _own(self, run: RunRecorder, me: int) -> None:
        """This thread now feeds ``run`` (at its prompt)."""
        if me not in run.fed_by:
            run.fed_by += (me,)
        run.feeder = self._feeder(me)
        run.thread = me

    def _token_from(self, run: RunRecorder, me: int, what: str) -> None:
        """A token of the open run from a thread other than the one feeding it: a hand-over (an
        engine whose own thread continues the run) — unless this thread fed the run before, in
        which case two calls take turns in one run: the run is marked interleaved and every
        further token of it raises."""
        if me in run.fed_by:
            run.interleaved = self._interleaved(what, run, me)
            run.thread = None
            raise InterleavedRunsError(run.interleaved)
        run.fed_by += (me,)
        run.feeder = self._feeder(me)
        run.thread = me

    @staticmethod
    def _interleaved(what: str, run: RunRecorder, me: int) -> str:
        names = {th.ident: th.name for th in threading.enumerate()}
        owner = run.thread if run.thread is not None else run.feeder_thread
        return (
            f"TimingStreamer: {what} from thread {names.get(me, me)!r} while the run of thread "
            f"{names.get(owner, owner)!r} is still in progress: two generate() calls are feeding "
            "this one streamer at the same time, and their tokens would be merged into one run. "
            "Use one TimingStreamer per concurrent generate() call (one BenchmarkWrapper per "
            "thread), or run the calls one after another"
        )

    @staticmethod
    def _is_new_prompt(value: Any) -> bool:
        """A 2-D put while a run is in progress: a new prompt (so the previous ``generate()``
        raised before ``end()``), or k tokens of assisted decoding. Batched puts of several rows
        are always prompts (assisted decoding is batch 1); for ``[1, k]`` the caller decides:
        ``generate()`` itself puts the prompt, its decoding loops put tokens."""
        if value.dim() < 2:
            return False
        if value.shape[0] > 1:
            return True
        frame = sys._getframe(3)  # _is_new_prompt <- _put <- put <- its caller
        while frame is not None and frame.f_code.co_name == "put":  # streamers that forward
            frame = frame.f_back
        return frame is not None and frame.f_code.co_name == "generate"

    def _start_run(self, value: Any, dim: int, t: float, me: int) -> None:
        run = self._run
        if run is None or not run.awaiting_prompt:
            self._close_unfinished()
            run = self._run = self._new_run()
        if dim >= 2:
            batch, prompt_len = int(value.shape[0]), int(value.shape[-1])
        else:
            batch, prompt_len = int(value.shape[0]) if dim else 1, 1
        self._own(run, me)
        self._begin(run, t, batch, prompt_len, value)

    def _begin(
        self, run: RunRecorder, t: float, batch: int, prompt_len: int, value: Any | None
    ) -> None:
        run.prompt(t, batch, prompt_len)
        if self._read_memory is not None:
            if self.backend.reset_peak is not None and run.t_mark is None:
                self._safe(self.backend.reset_peak)
            if self.backend.read_reserved is not None:
                self._safe(lambda: self._reserved(run))
        if value is not None and self.inner is not None:
            self.inner.put(value)
        run.charge(perf_counter() - t)

    def _new_run(self) -> RunRecorder:
        """A run whose first step takes a memory reading (when memory is read) and whose step
        hook runs when there is something to do: a reading due, or an ``inner`` streamer."""
        run = RunRecorder(self.device, self.backend.memory_kind)
        if self._read_memory is not None:
            run.next_probe = -math.inf
        run.next_hook = -math.inf if self.inner is not None else run.next_probe
        return run

    def _close_unfinished(self) -> None:
        run = self._run
        if run is not None and not run.awaiting_prompt:
            self._runs.append(run.finish(complete=False))
        self._run = None

    def _probe(self, run: RunRecorder) -> None:
        """A memory reading for the run's latest step."""
        try:
            run.memory[len(run.times) - 1] = self._read_memory()  # type: ignore[misc]
            if self.backend.read_reserved is not None:
                self._reserved(run)
        except Exception as exc:  # noqa: BLE001 - a probe must never break generate()
            self._disable_memory(exc)

    def _reserved(self, run: RunRecorder) -> None:
        value = int(self.backend.read_reserved())  # type: ignore[misc]
        if run.reserved is None or value > run.reserved:
            run.reserved = value

    def _safe(self, fn: Any) -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001
            self._disable_memory(exc)

    def _disable_memory(self, exc: BaseException) -> None:
        self._read_memory = None
        run = self._run
        if run is not None:
            run.memory.clear()
            run.next_probe = math.inf
            run.next_hook = -math.inf if self.inner is not None else math.inf
        if not self._probe_failed:
            self._probe_failed = True
            warnings.warn(
                f"streambench: memory probe on {self.device} failed ({exception_text(exc)}); "
                "timing continues without memory",
                RuntimeWarning,
                stacklevel=3,
            )

    def _report(self, result: RunResult) -> None:
        if not (self.do_print or self.verbose):
            return
        # Once per run (at end()), never per token: under torch.distributed only print ranks print.
        if not (should_print() if self.print_ranks is None else should_print(self.print_ranks)):
            return
        lines = result.seed_lines() if self.do_print or self.verbose else []
        if self.verbose and result.has_tokens:
            lines += result.token_lines()
        for line in lines:
            self.print_fn(line)

    def __repr__(self) -> str:
        return f"TimingStreamer(device={self.device!r}, runs={len(self.runs)})"
