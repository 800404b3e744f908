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

import sys
import warnings
from time import perf_counter
from typing import Any

from transformers.generation.streamers import BaseStreamer

from .devices import DeviceBackend, get_backend
from .distributed import should_print
from .stats import RunsSummary, aggregate
from .timing import NO_TOKEN_CAUSES, NoTokensError, RunRecorder, RunResult

__all__ = ["TimingStreamer"]


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
        memory: read memory at every token (see :mod:`streambench.devices` for what is read and
            what it costs). ``False`` skips the probe.
        sync: sync the device before each timestamp (default ``True``; only accelerators sync).
        print_fn: where printed lines go (default ``print``).
        print_ranks: under ``torch.distributed``, the ranks that print (``0``, ``[0, 2]``,
            ``"all"``); default ``None`` uses :func:`streambench.distributed.get_print_ranks`
            (``$STREAMBENCH_PRINT_RANKS``, else rank 0). Every rank still records its own timing
            and memory; without an initialized process group the streamer always prints.

    After (or during) generation: :meth:`summary` is the latest run, :attr:`runs` every run,
    oldest first, :meth:`stats` statistics over runs, :meth:`reset` forgets them.
    """

    def __init__(
        self,
        device: Any = None,
        do_print: bool = False,
        verbose: bool = False,
        inner: Any | None = None,
        *,
        memory: bool = True,
        sync: bool = True,
        print_fn: Any = print,
        print_ranks: Any = None,
    ) -> None:
        self.backend: DeviceBackend = get_backend(device, memory=memory)
        self.device = str(self.backend.device)
        self.do_print = do_print
        self.verbose = verbose
        self.inner = inner
        self.print_fn = print_fn
        self.print_ranks = print_ranks
        self._sync = self.backend.sync if sync else None
        self._read_memory = self.backend.read_memory
        self._runs: list[RunResult] = []
        self._run: RunRecorder | None = None
        self._probe_failed = False

    # -- results ------------------------------------------------------------------------------
    @property
    def runs(self) -> list[RunResult]:
        """Every run so far, oldest first (a run still in progress is included, incomplete)."""
        runs = list(self._runs)
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
        self._runs.clear()
        self._run = None

    # -- marking ------------------------------------------------------------------------------
    def mark_start(self) -> None:
        """Mark the call of ``generate()``: the next run's times count from here, not from the
        prompt ``put()``, and the time up to the prompt (input preparation, the encoder of an
        encoder-decoder model) becomes ``pre_prompt_s``. Call it right before ``generate()``."""
        self._close_unfinished()
        if self._sync is not None:
            self._sync()
        t = perf_counter()
        run = RunRecorder(self.device, self.backend.memory_kind)
        run.mark(t)
        self._run = run
        if self._read_memory is not None and self.backend.reset_peak is not None:
            self._safe(self.backend.reset_peak)
        run.pending += perf_counter() - t

    # -- BaseStreamer -------------------------------------------------------------------------
    def put(self, value: Any) -> None:
        """Called by ``generate()``: first with the prompt, then with each step's new tokens."""
        if self._sync is not None:
            self._sync()
        t = perf_counter()
        run = self._run
        if run is not None and run.t_prompt is not None and value.dim() == 1:
            # The per-token fast path (1-D [batch]: one token per sequence), the same as the
            # general path below minus two calls: ~0.6 µs of ~2.8 µs per put inside generate().
            self._step(run, t, 1, value)
            return
        if run is None or run.awaiting_prompt or self._is_new_prompt(value):
            self._start_run(value, t)
        else:
            # 1-D [batch]: one token per sequence; 2-D [1, k]: k tokens (assisted decoding).
            self._step(run, t, value.shape[-1] if value.dim() > 1 else 1, value)

    # -- the same timing core, for callers that see steps but not tensors -------------------------
    def on_prompt(self, batch_size: int, prompt_tokens: int) -> None:
        """Record the prompt hand-over without a tensor (what the prompt ``put()`` does). Used
        where a streamer cannot be passed, e.g. by a logits processor timing beam search."""
        if self._sync is not None:
            self._sync()
        t = perf_counter()
        run = self._run
        if run is None or not run.awaiting_prompt:
            self._close_unfinished()
            run = self._run = RunRecorder(self.device, self.backend.memory_kind)
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
        self._step(run, t, tokens, None)

    def _step(self, run: RunRecorder, t: float, tokens: int, value: Any) -> None:
        run.times.append(t)
        run.tokens.append(tokens)
        run.excluded.append(run.pending)
        run.overhead += run.pending
        if self._read_memory is not None:
            self._probe(run)
        if value is not None and self.inner is not None:
            self.inner.put(value)
        run.pending = perf_counter() - t

    def end(self) -> None:
        """Called by ``generate()`` once generation finished normally."""
        run = self._run
        if self.inner is not None:
            self.inner.end()
        if run is None:
            return
        self._run = None
        result = run.finish(complete=True)
        self._runs.append(result)
        self._report(result)

    # -- internals ----------------------------------------------------------------------------
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
        frame = sys._getframe(2)
        while frame is not None and frame.f_code.co_name == "put":  # streamers that forward
            frame = frame.f_back
        return frame is not None and frame.f_code.co_name == "generate"

    def _start_run(self, value: Any, t: float) -> None:
        run = self._run
        if run is None or not run.awaiting_prompt:
            self._close_unfinished()
            run = self._run = RunRecorder(self.device, self.backend.memory_kind)
        if value.dim() >= 2:
            batch, prompt_len = int(value.shape[0]), int(value.shape[-1])
        else:
            batch, prompt_len = int(value.shape[0]) if value.dim() else 1, 1
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
        run.pending += perf_counter() - t

    def _close_unfinished(self) -> None:
        run = self._run
        if run is not None and not run.awaiting_prompt:
            self._runs.append(run.finish(complete=False))
        self._run = None

    def _probe(self, run: RunRecorder) -> None:
        try:
            run.memory.append(self._read_memory())  # type: ignore[misc]
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
        if self._run is not None:
            self._run.memory.clear()
        if not self._probe_failed:
            self._probe_failed = True
            warnings.warn(
                f"streambench: memory probe on {self.device} failed ({exc!r}); "
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
