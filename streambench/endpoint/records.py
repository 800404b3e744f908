"""One streamed request: :class:`RequestRecord` and the latencies derived from its chunks."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..timing import split_steps
from .tokens import count_chunk_tokens

if TYPE_CHECKING:
    from ..timing import RunResult


@dataclass(frozen=True)
class RequestRecord:
    """One streamed request. Times in seconds (``perf_counter``), counted from when it was sent.

    ``index``: position in its phase (the 1-token probes of ``force="auto"``: -1, -2, -3);
    ``warmup``: a warm-up (or probe) request, never in
    statistics; ``ok``: the stream completed. ``error`` (``"kind: detail"``, kinds: ``connect``,
    ``http``, ``timeout``, ``stream_cut``, ``protocol``, ``server_error``) and ``status`` (HTTP
    status) explain a failure. ``sent_s``: when it was sent, from the start of its phase.
    ``prompt_tokens``: from the server's ``usage``, else the local tokenizer, else ``None``.
    ``warnings``: server numbers that were not trusted (see :mod:`streambench.endpoint`); the
    tokens were then counted from the text chunks.
    """

    index: int
    ok: bool
    sent_s: float
    warmup: bool = False
    error: str | None = None
    status: int | None = None
    ttft_s: float | None = None
    e2e_s: float | None = None
    chunk_times_s: tuple[float, ...] = ()
    chunk_tokens: tuple[int, ...] = ()
    output_tokens: int = 0
    prompt_tokens: int | None = None
    token_count: str = "chunks"
    finish_reason: str | None = None
    events: int = 0
    #: server input that was not trusted (an implausible ``usage`` count ignored, ...)
    warnings: tuple[str, ...] = ()
    #: workload requests (``--prompts`` ...): the prompt's index, its real input tokens (local
    #: tokenizer), an MD5 of the generated text and the text itself (``--save-outputs``)
    prompt_index: int | None = None
    input_tokens: int | None = None
    output_md5: str | None = None
    output_text: str | None = None
    # raw stream data, kept to (re)count tokens after the run (not written to results)
    texts: tuple[str, ...] = field(default=(), repr=False, compare=False)
    chunk_usage: tuple[int | None, ...] = field(default=(), repr=False, compare=False)
    usage_total: int | None = field(default=None, repr=False, compare=False)
    #: ``--multi-turn``: the session (its number in the phase) and the turn (1 = the first)
    session: int | None = None
    turn: int | None = None
    #: ``--trace``: when the trace said to send it, seconds from the start of its phase (after
    #: ``--trace-speedup``); ``sent_s - intended_s`` is the client's lag for this request
    intended_s: float | None = None
    #: sent -> the first chunk with visible output text (not reasoning, not a token without
    #: text): time to first output token, seconds; ``None`` when no chunk had any
    ttfo_s: float | None = None
    #: tokens of reasoning text (``delta.reasoning_content``/``reasoning``): the server's
    #: ``usage.completion_tokens_details.reasoning_tokens``, else counted from the chunks;
    #: ``None`` when the stream had no reasoning
    reasoning_tokens: int | None = None
    # raw: characters of reasoning text per chunk, the server's reasoning count (for recount)
    reasoning_chars: tuple[int, ...] = field(default=(), repr=False, compare=False)
    usage_reasoning: int | None = field(default=None, repr=False, compare=False)

    def recount(self, tokenizer: Any) -> RequestRecord:
        """This record with its tokens per chunk counted again with ``tokenizer`` (see
        :func:`count_chunk_tokens`). Done after the measured phase, never while requests stream:
        tokenizing long outputs inside the event loop would delay the other requests' chunks."""
        if tokenizer is None or not self.texts:
            return self
        counts, method = count_chunk_tokens(
            self.texts, self.chunk_usage, self.usage_total, tokenizer
        )
        from .stream_parts import reasoning_count

        reasoning = reasoning_count(counts, self.texts, self.reasoning_chars, self.usage_reasoning)
        return replace(
            self,
            chunk_tokens=tuple(counts),
            output_tokens=sum(counts),
            token_count=method,
            reasoning_tokens=reasoning,
        )

    @property
    def error_kind(self) -> str | None:
        return self.error.split(":", 1)[0] if self.error else None

    @property
    def tpot_s(self) -> float | None:
        """``(e2e_s - ttft_s) / (output_tokens - 1)``, seconds/token."""
        if self.ttft_s is None or self.e2e_s is None or self.output_tokens < 2:
            return None
        return (self.e2e_s - self.ttft_s) / (self.output_tokens - 1)

    @property
    def token_latencies_s(self) -> tuple[float, ...]:
        """Per output token: ``ttft_s`` first, then the inter-token latencies (seconds; the split
        rule: :func:`streambench.timing.split_steps`, see :mod:`streambench.endpoint`)."""
        gaps: list[float] = []
        prev = 0.0  # a chunk without tokens: its time is carried into the next one with tokens
        for t, k in zip(self.chunk_times_s, self.chunk_tokens):
            gaps.append(t - prev)
            if k > 0:
                prev = t
        return tuple(split_steps(gaps, self.chunk_tokens))

    @property
    def itl_s(self) -> tuple[float, ...]:
        """Inter-token latencies, one per output token after the first."""
        return self.token_latencies_s[1:]

    @property
    def chunk_gaps_s(self) -> tuple[float, ...]:
        """Time between consecutive text chunks (the first entry is ``ttft_s``)."""
        prev = 0.0
        out = []
        for t in self.chunk_times_s:
            out.append(t - prev)
            prev = t
        return tuple(out)

    def meets(self, slo: dict[str, float]) -> bool:
        """True when the request succeeded and every given SLO threshold (seconds) holds."""
        if not self.ok:
            return False
        checks = {
            "ttft": self.ttft_s,
            "tpot": self.tpot_s,
            "e2e": self.e2e_s,
            "itl": max(self.itl_s) if self.itl_s else None,
        }
        if "ttfo" in slo and (self.ttfo_s is None or self.ttfo_s > slo["ttfo"]):
            return False  # no visible output at all misses a TTFO SLO
        for key, limit in slo.items():
            value = checks.get(key)
            if value is not None and value > limit:
                return False
        return True

    def to_dict(self, per_token: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "index": self.index,
            "warmup": self.warmup,
            "ok": self.ok,
            "error": self.error,
            "status": self.status,
            "sent_s": self.sent_s,
            "ttft_s": self.ttft_s,
            "tpot_s": self.tpot_s,
            "e2e_s": self.e2e_s,
            "output_tokens": self.output_tokens,
            "prompt_tokens": self.prompt_tokens,
            "token_count": self.token_count,
            "finish_reason": self.finish_reason,
            "chunks": len(self.chunk_times_s),
            "events": self.events,
            "warnings": list(self.warnings),
        }
        if self.reasoning_tokens is not None or self.ttfo_s != self.ttft_s:
            out["ttfo_s"] = self.ttfo_s  # only where it differs: files before it stay the same
            out["reasoning_tokens"] = self.reasoning_tokens
        if self.prompt_index is not None:
            out["prompt_index"] = self.prompt_index
            out["input_tokens"] = self.input_tokens
            out["output_md5"] = self.output_md5
            if self.output_text is not None:
                out["output_text"] = self.output_text
        if self.session is not None:
            out["session"] = self.session
            out["turn"] = self.turn
        if self.intended_s is not None:
            out["intended_s"] = self.intended_s
            out["send_lag_s"] = self.sent_s - self.intended_s
        if per_token:
            out["chunk_times_s"] = list(self.chunk_times_s)
            out["chunk_tokens"] = list(self.chunk_tokens)
            out["itl_s"] = list(self.itl_s)
        return out

    def to_run_result(self, device: str = "endpoint") -> RunResult:
        """The same request as a :class:`~streambench.timing.RunResult` (``reference="request"``,
        ``batch_size=1``), so reports and :func:`streambench.stats.aggregate` treat it like a local
        run: ``first_token_s`` = TTFT, ``token_latencies_s`` = TTFT then ITL, ``step_*`` = chunks.
        ``extra`` holds ``e2e_s``, ``tpot_s`` and ``token_count``."""
        from ..timing import RunResult

        lat = self.token_latencies_s
        return RunResult(
            device=device,
            reference="request",
            first_token_s=lat[0] if lat else None,
            token_latencies_s=lat,
            step_latencies_s=self.chunk_gaps_s,
            step_tokens=self.chunk_tokens,
            new_tokens=len(lat),
            batch_size=1,
            prompt_tokens=self.prompt_tokens or 0,
            complete=self.ok,
            extra={"e2e_s": self.e2e_s, "tpot_s": self.tpot_s, "token_count": self.token_count},
        )
