"""Replaying a trace (:mod:`.traces`): prompts synthesised to each request's input length (with
the prefixes its Mooncake ``hash_ids`` share), every request sent at its trace time, and what
the replay recorded about its own timing.

Prompts: each hash id is a block of :data:`~.traces.BLOCK_TOKENS` tokens drawn from a stream
seeded by ``--seed`` and the id, so two requests whose ``hash_ids`` start alike start with the
same text; the tokens past the listed blocks are drawn per request. With ``--tokenizer`` the
blocks are token ids and the prompt is their text, checked to encode to exactly the input length
(the end is trimmed or extended where a vocabulary merges across a block boundary); without one,
a token is a common English word (about one token in the common vocabularies).
"""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Callable

from ..stats import describe
from ..workloads.build import WORDS, Request
from .loadgen import LoadLoop
from .traces import BLOCK_TOKENS, Trace, TraceRow

if TYPE_CHECKING:
    from .records import RequestRecord

__all__ = ["TraceLoop", "trace_requests", "trace_sender", "trace_summary"]


class _Blocks:
    """The token blocks of one replay: block ``h`` (a hash id) always the same, seeded."""

    def __init__(self, seed: int, tokenizer: Any) -> None:
        self.seed = seed
        self.tokenizer = tokenizer
        self.cache: dict[int, list[Any]] = {}
        self.per_word = 1.0  # tokens per drawn word (measured once with a tokenizer)
        if tokenizer is not None:
            sample = " " + " ".join(WORDS[:64])
            ids = tokenizer(sample, add_special_tokens=False, verbose=False)["input_ids"]
            self.per_word = max(len(ids) / 64, 0.1)

    def draw(self, name: str, n: int) -> list[Any]:
        """``n`` tokens (word strings, or ids with a tokenizer) from the stream ``name``."""
        rng = random.Random(f"streambench.trace.{name}.{self.seed}")
        if self.tokenizer is None:
            return [rng.choice(WORDS) for _ in range(n)]
        ids: list[int] = []
        while len(ids) < n:  # about as many words as the tokens still missing need
            words = int((n - len(ids)) / self.per_word) + 8
            text = " " + " ".join(rng.choice(WORDS) for _ in range(words))
            ids += self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
        return ids[:n]

    def block(self, h: int) -> list[Any]:
        if h not in self.cache:
            self.cache[h] = self.draw(f"block.{h}", BLOCK_TOKENS)
        return self.cache[h]


def _tokens(row: TraceRow, i: int, blocks: _Blocks) -> list[Any]:
    """The input tokens of request ``i``: its hash-id blocks, then tokens of its own."""
    out: list[Any] = []
    for h in row.hash_ids:
        out += blocks.block(h)[: row.input_tokens - len(out)]
    if len(out) < row.input_tokens:
        out += blocks.draw(f"request.{i}", row.input_tokens - len(out))
    return out


def _text(tokens: list[Any], n: int, tokenizer: Any, rng: random.Random) -> tuple[str, int | None]:
    """The prompt text of ``tokens`` and its real token count (``None`` without a tokenizer)."""
    if tokenizer is None:
        return " ".join(tokens), None
    text = tokenizer.decode(tokens)
    for _ in range(8):  # a vocabulary may merge tokens across a boundary: fix the end
        ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
        if len(ids) == n:
            return text, n
        if len(ids) > n:
            text = tokenizer.decode(ids[:n])
        else:
            text += " " + " ".join(rng.choice(WORDS) for _ in range(n - len(ids)))
    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    return text, len(ids)


def trace_requests(trace: Trace, seed: int, tokenizer: Any) -> tuple[Request, ...]:
    """One :class:`~streambench.workloads.Request` per trace row: the synthesised prompt, its
    real input tokens (with a tokenizer) and the trace's output length (forced)."""
    blocks = _Blocks(seed, tokenizer)
    rng = random.Random(f"streambench.trace.fix.{seed}")
    out = []
    for i, row in enumerate(trace.rows):
        text, real = _text(_tokens(row, i, blocks), row.input_tokens, tokenizer, rng)
        out.append(
            Request(i, row.where, text=text, input_tokens=real, output_tokens=row.output_tokens)
        )
    return tuple(out)


class TraceLoop(LoadLoop):
    """:class:`~streambench.endpoint.loadgen.LoadLoop` with the trace's send times as its
    schedule (never cut at the timeout: a trace's quiet spells are part of it)."""

    def _schedule(self) -> Iterator[tuple[float, bool]] | None:
        offsets = self.spec.trace.offsets_s
        return itertools.chain(
            ((t, False) for t in offsets), itertools.repeat((offsets[-1], False))
        )


def trace_sender(bench: Any, session: Any) -> Callable[[int, int, bool, float], Any]:
    """``send(i, prompt_i, warmup, start)`` of a replay: request ``i`` of the trace, recorded
    with ``intended_s`` (its trace time in the phase) beside ``sent_s``."""
    spec = bench.spec
    trace: Trace = spec.trace

    async def send(i: int, prompt_i: int, warm: bool, start: float) -> RequestRecord:
        req = spec.workload_requests[i]
        at = trace.offsets_s[i]
        prompt, msgs = (
            (None, [{"role": "user", "content": req.text}]) if spec.chat else (req.text, None)
        )
        body = bench.backend.body(spec, prompt, int(req.output_tokens), bench.level, msgs, False)

        def mark(rec: RequestRecord) -> RequestRecord:
            return dataclasses.replace(rec, intended_s=at)

        return await bench._post(session, i, body, warm, start, req.input_tokens, req, mark)

    return send


def trace_summary(spec: Any, records: Any) -> dict[str, Any]:
    """``aggregates.trace``: the replay (format, requests, span, speedup) and how late the client
    sent its requests: ``send_lag_s`` statistics of ``sent_s - intended_s`` over every measured
    request (seconds)."""
    trace: Trace = spec.trace
    lags = [r.sent_s - r.intended_s for r in records if not r.warmup and r.intended_s is not None]
    st = describe(lags)
    return {
        "format": trace.format,
        "requests": len(trace.rows),
        "span_s": trace.span_s,
        "speedup": trace.speedup,
        "send_lag_s": None if st is None else st.to_dict(),
        "max_send_lag_s": max(lags) if lags else None,
    }


def trace_lines(trace: dict[str, Any]) -> list[Any]:
    """The console's line about a replay."""
    from rich.text import Text

    lag = trace.get("send_lag_s") or {}
    line = (
        f"trace replay ({trace.get('format')}): {trace.get('requests')} requests over "
        f"{trace.get('span_s') or 0:.3f} s at speedup {trace.get('speedup'):g}"
    )
    if lag:
        line += (
            f"; sent after their trace time by median {lag['median'] * 1e3:.2f} ms, p99 "
            f"{lag['p99'] * 1e3:.2f} ms, max {(trace.get('max_send_lag_s') or 0) * 1e3:.2f} ms"
        )
    return [Text(line, style="dim")]
