"""Timing records of one ``generate()`` run and the result they turn into (pure Python, no torch).

A run is a list of *steps*: each step is one token ``put()`` (one decoding step), stamped with
``time.perf_counter()`` after the device sync, carrying ``k`` tokens per sequence (``k = 1`` except
for assisted / speculative / prompt-lookup decoding, which puts ``[1, k]``).

Reference point and units: all times are seconds. ``first_token_s`` counts from the *reference
point* — the moment ``generate()`` was called when the caller marked it
(:meth:`TimingStreamer.mark_start`, done by :class:`BenchmarkWrapper` and the CLI), else the
prompt ``put()`` that ``generate()`` makes before its first forward pass (``reference`` says which).

How a step of ``k`` tokens becomes per-token latencies: the step's time is split evenly over its
``k`` tokens — except in the *first* step, where the first token takes the whole step's time
(that is when it became visible) and the step's other ``k - 1`` tokens get ``0.0``. So
``sum(token_latencies_s)`` is the run's time from the reference point to the last token, and
``rest_token_mean_s`` is ``(time of last token - time of first token) / (new_tokens - 1)``.
The raw steps stay available as ``step_latencies_s`` and ``step_tokens``.

Streamer overhead: the time the streamer spends after a timestamp on work of its own (the prompt's
bookkeeping, a memory reading, the ``inner`` streamer) is measured and subtracted from the
following interval, so it is not reported as model latency; its total is ``streamer_overhead_s``.
A plain token step is one timestamp appended to a list and is not measured: its few µs (inside
``generate()``, cold caches) stay in the latency it follows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from .stats import Stats, describe
from .units import GiB as GiB  # re-exported: its old home

__all__ = ["InterleavedRunsError", "NoTokensError", "RunRecorder", "RunResult", "split_steps"]

NO_TOKEN_CAUSES = (
    "generate() passed the streamer the prompt but no token. Likely causes: beam search "
    "(num_beams > 1: transformers < 4.57 raises, and >= 4.57 silently skips the streamer for beam "
    "sampling) - use streambench.BenchmarkWrapper, which times beam search through a logits "
    "processor; DoLa/contrastive search on transformers 4.56 (they run hub code without the "
    "streamer); a generate() that raised before its first token (see the exception); or "
    "max_new_tokens=0"
)


def exception_text(exc: BaseException) -> str:
    """``"TypeName: message"``, or the type name alone when the message is empty or repeats it
    (never ``"MemoryError: MemoryError"`` nor ``"OSError: "``).

    >>> exception_text(MemoryError()), exception_text(OSError("probe gone"))
    ('MemoryError (out of memory)', 'OSError: probe gone')
    """
    name = type(exc).__name__
    text = str(exc).strip()
    if isinstance(exc, MemoryError) and text in ("", name):
        return f"{name} (out of memory)"
    if not text or text == name:
        return f"{name} (no message)"
    return f"{name}: {text}"


class NoTokensError(RuntimeError):
    """Raised by ``summary()`` when the latest run saw the prompt but not a single token."""


class InterleavedRunsError(RuntimeError):
    """Raised when two ``generate()`` calls feed one streamer at the same time.

    Their tokens would otherwise be merged into one run (wrong token counts and latencies), so the
    call that arrives second is refused; the run already in progress is kept intact. The fix is one
    :class:`~streambench.TimingStreamer` (or :class:`~streambench.BenchmarkWrapper`) per concurrent
    ``generate()`` call.
    """


@dataclass(frozen=True, eq=False)
class RunResult:
    """Timing and memory of one ``generate()`` call. Times in seconds, memory in bytes.

    Fields:
        device: the device timed, e.g. ``"cuda:0"``.
        reference: ``"generate"`` when ``first_token_s`` counts from the marked start of
            ``generate()``, ``"prompt"`` when from the prompt ``put()``.
        first_token_s: reference point -> first generated token (time to first token, prefill);
            ``None`` when no token was generated.
        rest_token_mean_s: mean latency per token after the first (decode), seconds/token;
            ``None`` with fewer than two tokens.
        token_latencies_s: one entry per generated token per sequence, the first token's first.
        step_latencies_s / step_tokens: the raw decoding steps (one per token ``put()``) and the
            number of tokens each carried per sequence.
        new_tokens: tokens generated per sequence. batch_size: sequences. prompt_tokens: prompt
            length per sequence (padded), as put by ``generate()``.
        pre_prompt_s: marked start of ``generate()`` -> prompt ``put()``: input preparation and,
            for encoder-decoder models, the encoder. ``None`` when the start was not marked.
        memory_per_token_bytes: one reading per token (see ``memory_kind``); tokens of one
            multi-token step share its reading. Empty when memory was not measured. With the
            default ``memory=True`` a token may have ``None`` (no reading): a reading is taken
            only where it costs at most ~0.1 % of the time since the last one, and always at the
            first and the last token; ``memory="every-token"`` reads at every token.
        peak_memory_bytes: the largest reading of the run (``None`` when not measured). Exact on
            CUDA/XPU (the allocator's peak counter covers the steps between readings); on CPU the
            largest RSS reading (``streambench run``'s workers add the kernel's exact high-water
            mark per configuration).
        memory_kind: what the readings are: ``"peak_allocated"`` (CUDA/XPU: peak bytes allocated
            by torch during the step, the peak counter reset after each step),
            ``"current_allocated"`` (MPS: bytes allocated by torch at the token), ``"rss"`` (CPU:
            resident memory of the whole process at the token), or ``None``.
        reserved_memory_bytes: largest bytes reserved by torch's caching allocator seen in the run
            (CUDA/XPU/MPS driver memory), ``None`` on CPU.
        complete: ``False`` when ``end()`` never came (``generate()`` raised or was interrupted),
            or when another ``generate()`` fed the same streamer during the run (then
            ``extra["interleaved"]`` says what was seen; see :class:`InterleavedRunsError`).
        streamer_overhead_s: seconds the streamer spent after its timestamps on work of its own
            (prompt bookkeeping, memory readings, the ``inner`` streamer), excluded from the
            latencies above.
    """

    device: str
    reference: str
    first_token_s: float | None
    token_latencies_s: tuple[float, ...]
    step_latencies_s: tuple[float, ...]
    step_tokens: tuple[int, ...]
    new_tokens: int
    batch_size: int
    prompt_tokens: int
    pre_prompt_s: float | None = None
    memory_per_token_bytes: tuple[int | None, ...] = ()
    #: (prompt, first token, last token) as ``time.perf_counter()`` seconds: where the run lies on
    #: the clock that telemetry samples use (not written by ``to_dict``)
    phase_clock_s: tuple[float, float, float] | None = None
    peak_memory_bytes: int | None = None
    memory_kind: str | None = None
    reserved_memory_bytes: int | None = None
    complete: bool = True
    streamer_overhead_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    # -- derived numbers -------------------------------------------------------------------
    @property
    def rest_token_mean_s(self) -> float | None:
        """Mean seconds per token after the first; ``None`` with fewer than two tokens."""
        if self.new_tokens < 2:
            return None
        return math.fsum(self.token_latencies_s[1:]) / (self.new_tokens - 1)

    @property
    def total_s(self) -> float | None:
        """Reference point -> last token, seconds (``None`` without tokens)."""
        return math.fsum(self.token_latencies_s) if self.new_tokens else None

    @cached_property
    def rest_token_stats(self) -> Stats | None:
        """mean/median/p90/p99/stdev of the per-token latencies after the first, seconds."""
        return describe(self.token_latencies_s[1:])

    @property
    def decode_tokens_per_s(self) -> float | None:
        """Decode speed of one sequence, tokens/s (``1 / rest_token_mean_s``)."""
        rest = self.rest_token_mean_s
        return 1.0 / rest if rest else None

    @property
    def decode_throughput_tokens_per_s(self) -> float | None:
        """Decode speed of the whole batch, tokens/s (``batch_size / rest_token_mean_s``)."""
        rest = self.rest_token_mean_s
        return self.batch_size / rest if rest else None

    @property
    def prefill_tokens_per_s(self) -> float | None:
        """Prompt tokens of the whole batch processed per second up to the first token."""
        if not self.first_token_s:
            return None
        return self.batch_size * self.prompt_tokens / self.first_token_s

    @property
    def has_tokens(self) -> bool:
        return self.new_tokens > 0

    def to_dict(self, per_token: bool = True) -> dict[str, Any]:
        """Plain JSON-serializable data: every field plus the derived statistics.

        ``per_token=False`` leaves out the per-token and per-step lists.
        """
        rest_stats = self.rest_token_stats
        out: dict[str, Any] = {
            "device": self.device,
            "reference": self.reference,
            "complete": self.complete,
            "batch_size": self.batch_size,
            "prompt_tokens": self.prompt_tokens,
            "new_tokens": self.new_tokens,
            "pre_prompt_s": self.pre_prompt_s,
            "first_token_s": self.first_token_s,
            "rest_token_mean_s": self.rest_token_mean_s,
            "rest_token_stats_s": rest_stats.to_dict() if rest_stats else None,
            "total_s": self.total_s,
            "decode_tokens_per_s": self.decode_tokens_per_s,
            "decode_throughput_tokens_per_s": self.decode_throughput_tokens_per_s,
            "prefill_tokens_per_s": self.prefill_tokens_per_s,
            "peak_memory_bytes": self.peak_memory_bytes,
            "reserved_memory_bytes": self.reserved_memory_bytes,
            "memory_kind": self.memory_kind,
            "streamer_overhead_s": self.streamer_overhead_s,
        }
        if per_token:
            out["token_latencies_s"] = list(self.token_latencies_s)
            out["step_latencies_s"] = list(self.step_latencies_s)
            out["step_tokens"] = list(self.step_tokens)
            out["memory_per_token_bytes"] = list(self.memory_per_token_bytes)
        if self.extra:
            out["extra"] = dict(self.extra)
        return out

    # -- the original tool's printed lines ---------------------------------------------------
    def seed_lines(self) -> list[str]:
        """The two lines ipex-llm's ``BenchmarkWrapper`` printed (``" and X GB"`` where memory is
        known: the first token's reading, then the peak over the rest, in GiB)."""
        if self.first_token_s is None:
            return ["=========No token generated: no first token cost========="]
        mem = self.memory_per_token_bytes
        first_mem = f" and {round(mem[0] / GiB, 4)} GB" if mem and mem[0] is not None else ""
        lines = [f"=========First token cost {self.first_token_s:.4f} s{first_mem}========="]
        rest = self.rest_token_mean_s
        if rest is not None:
            later = [m for m in mem[1:] if m is not None]
            rest_mem = f" and {round(max(later) / GiB, 4)} GB" if later else ""
            lines.append(
                f"=========Rest tokens cost average {rest:.4f} s "
                f"({self.new_tokens - 1} tokens in all){rest_mem}========="
            )
        return lines

    def token_lines(self) -> list[str]:
        """One line per token for a person to read (``verbose=True``), printed after the run,
        never while timing: ``token 3: 1.234 ms, RSS 512.3 MiB`` (latency since the previous
        token, the first since the start; memory of the device's ``memory_kind`` where read)."""
        mem = self.memory_per_token_bytes
        unit = {"rss": "RSS", "peak_allocated": "peak allocated", "current_allocated": "allocated"}
        kind = unit.get(self.memory_kind or "", "memory")
        lines = []
        for i, lat in enumerate(self.token_latencies_s):
            line = f"token {i + 1}: {lat * 1e3:.3f} ms"
            if mem and i < len(mem) and mem[i] is not None:
                line += f", {kind} {mem[i] / 2**20:.1f} MiB"
            lines.append(line)
        return lines


def split_steps(step_s: Sequence[float], step_tokens: Sequence[int]) -> list[float]:
    """Per-token latencies (seconds) from steps: ``step_s[i]`` seconds that brought
    ``step_tokens[i]`` tokens. A step of ``k`` tokens is split evenly (``k`` times ``dt / k``),
    except the first step with tokens: its first token takes the whole time and its ``k - 1``
    companions get ``0.0``. Steps with no tokens are skipped. So the sum is the time from the
    reference point to the last token (when no step is skipped).

    >>> split_steps([0.5, 0.25, 0.75], [2, 1, 3])
    [0.5, 0.0, 0.25, 0.25, 0.25, 0.25]
    """
    out: list[float] = []
    for dt, k in zip(step_s, step_tokens):
        if k <= 0:
            continue
        if not out:
            out.append(dt)
            out.extend([0.0] * (k - 1))
        else:
            out.extend([dt / k] * k)
    return out


class RunRecorder:
    """Mutable record of the run in progress; :meth:`finish` turns it into a :class:`RunResult`.

    A step of one token is one ``times.append``; the rest (multi-token steps, excluded streamer
    time, memory readings) is kept only for the steps that have it.
    """

    __slots__ = (
        "batch_size",
        "device",
        "excluded",
        "fed_by",
        "feeder",
        "interleaved",
        "memory",
        "memory_kind",
        "multi",
        "next_hook",
        "next_probe",
        "prompt_tokens",
        "reference",
        "reserved",
        "t_mark",
        "t_prompt",
        "t_ref",
        "thread",
        "times",
    )

    def __init__(self, device: str, memory_kind: str | None) -> None:
        self.device = device
        self.memory_kind = memory_kind
        self.t_mark: float | None = None
        self.t_prompt: float | None = None
        self.t_ref: float | None = None
        self.reference = "prompt"
        self.batch_size = 0
        self.prompt_tokens = 0
        # One timestamp per step; everything else is sparse, keyed by step index, so that a
        # step of one token costs one append (the streamer's per-token fast path).
        self.times: list[float] = []
        self.multi: dict[int, int] = {}  # steps that carried k != 1 tokens per sequence
        self.excluded: dict[int, float] = {}  # streamer time charged to (subtracted from) a step
        self.memory: dict[int, int] = {}  # the steps with a memory reading
        # perf_counter() from which the next step runs the streamer's step hook (memory reading,
        # inner streamer) / takes a memory reading; +inf: never, -inf: at the next step
        self.next_hook = math.inf
        self.next_probe = math.inf
        self.reserved: int | None = None
        # Who feeds the run (see TimingStreamer): the ident of the thread whose token puts take
        # the fast path (set at the prompt, None before it and once the run is interleaved), every
        # thread that fed it, and (thread ident, id of frame, code) of the call that feeds it.
        self.thread: int | None = None
        self.fed_by: tuple[int, ...] = ()
        self.feeder: tuple[int, int, Any] | None = None
        self.interleaved: str | None = None  # why the run was found interleaved

    def charge(self, seconds: float) -> None:
        """Streamer time spent now (after the latest timestamp): subtracted from the next step."""
        i = len(self.times)
        self.excluded[i] = self.excluded.get(i, 0.0) + seconds

    def mark(self, t: float) -> None:
        self.t_mark = t
        self.t_ref = t
        self.reference = "generate"

    def prompt(self, t: float, batch_size: int, prompt_tokens: int) -> None:
        self.t_prompt = t
        if self.t_ref is None:
            self.t_ref = t
        self.batch_size = batch_size
        self.prompt_tokens = prompt_tokens

    @property
    def awaiting_prompt(self) -> bool:
        return self.t_prompt is None

    @property
    def feeder_thread(self) -> int | None:
        """The ident of the thread whose call feeds (or marked) the run, ``None`` if unknown."""
        return self.feeder[0] if self.feeder is not None else None

    def finish(self, complete: bool, extra: dict[str, Any] | None = None) -> RunResult:
        steps: list[float] = []
        tokens = [self.multi.get(i, 1) for i in range(len(self.times))]
        excluded = self.excluded
        prev = self.t_ref if self.t_ref is not None else (self.times[0] if self.times else 0.0)
        for i, t in enumerate(self.times):
            steps.append(max(t - prev - excluded.get(i, 0.0), 0.0))
            prev = t
        per_token = split_steps(steps, tokens)
        memory: list[int | None] = []
        if self.memory:
            for i, k in enumerate(tokens):
                if k > 0:
                    memory.extend([self.memory.get(i)] * k)
        readings = [m for m in memory if m is not None]
        extra = dict(extra or {})
        if self.interleaved is not None:
            complete = False
            extra["interleaved"] = self.interleaved
        pre_prompt = None
        if self.t_mark is not None and self.t_prompt is not None:
            pre_prompt = max(self.t_prompt - self.t_mark, 0.0)
        return RunResult(
            device=self.device,
            reference=self.reference,
            first_token_s=per_token[0] if per_token else None,
            token_latencies_s=tuple(per_token),
            step_latencies_s=tuple(steps),
            step_tokens=tuple(tokens),
            new_tokens=len(per_token),
            batch_size=self.batch_size,
            prompt_tokens=self.prompt_tokens,
            pre_prompt_s=pre_prompt,
            memory_per_token_bytes=tuple(memory),
            phase_clock_s=(
                (self.t_prompt, self.times[0], self.times[-1])
                if self.t_prompt is not None and self.times
                else None
            ),
            peak_memory_bytes=max(readings) if readings else None,
            memory_kind=self.memory_kind if readings else None,
            reserved_memory_bytes=self.reserved,
            complete=complete,
            streamer_overhead_s=math.fsum(excluded.values()),
            extra=extra,
        )
