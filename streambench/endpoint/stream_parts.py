"""What one streamed chunk carries besides its text, and what a whole stream says about it.

- :func:`chunk_parts`: the reasoning text (``delta.reasoning_content`` / ``delta.reasoning``),
  the visible output text (``delta.content`` / ``text``) and the ``finish_reason`` of choice 0.
- Tokens that come *without text*: vLLM streams one chunk per token even when the token decodes
  to nothing visible (a special token, a byte of an unfinished UTF-8 character), each with an
  empty ``text``. With ``stream_options.continuous_usage_stats`` every such chunk carries the
  cumulative ``usage.completion_tokens``, so the chunk is timed as a token arrival
  (:func:`carries_tokens`); without per-chunk usage nothing says which empty chunk held a token,
  and a stream whose final ``usage`` counts tokens but which sent no text fails with the distinct
  error of :func:`no_text_error` (kind ``no_text``), never "without any generated text".
- :func:`reasoning_count`: the reasoning tokens of a request: the server's
  ``usage.completion_tokens_details.reasoning_tokens`` when it is given and plausible, else the
  tokens of the chunks in proportion to their reasoning characters.

No import of :mod:`.client` here (the client imports this module).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

#: the delta keys of reasoning text: ``reasoning_content`` (vLLM, SGLang, DeepSeek), ``reasoning``
#: (vLLM >= 0.10 with some parsers, OpenRouter)
REASONING_KEYS = ("reasoning_content", "reasoning")


def chunk_parts(obj: dict[str, Any]) -> tuple[str, str, str | None]:
    """``(reasoning text, output text, finish_reason)`` of choice 0 of one streamed chunk. Only
    strings count: a server's other types are ignored."""
    reasoning, content, finish = "", "", None
    choices = obj.get("choices")
    for choice in choices if isinstance(choices, list) else ():
        if not isinstance(choice, dict) or choice.get("index", 0) != 0:
            continue
        reason = choice.get("finish_reason")
        if isinstance(reason, str) and reason:
            finish = reason
        if isinstance(choice.get("text"), str):
            content += choice["text"]
        delta = choice.get("delta")
        if isinstance(delta, dict):
            for key in REASONING_KEYS:
                if isinstance(delta.get(key), str):
                    reasoning += delta[key]
            if isinstance(delta.get("content"), str):
                content += delta["content"]
    return reasoning, content, finish


def has_choice(obj: dict[str, Any]) -> bool:
    """Whether the chunk has a choice 0 (a usage-only final chunk has ``choices: []``)."""
    choices = obj.get("choices")
    return isinstance(choices, list) and any(
        isinstance(c, dict) and c.get("index", 0) == 0 for c in choices
    )


def usage_tokens(usage: Any) -> float | None:
    """The raw ``completion_tokens`` of a chunk's ``usage`` when it is a finite non-negative
    number (validated again with the whole stream by the client), else ``None``."""
    if not isinstance(usage, dict):
        return None
    value = usage.get("completion_tokens")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


def carries_tokens(usage: Any, last_count: float) -> bool:
    """Whether a chunk *without text* carries tokens: its cumulative ``usage.completion_tokens``
    rose above ``last_count`` (the last count seen in the stream)."""
    value = usage_tokens(usage)
    return value is not None and value > last_count


def no_text_error(reported: int | None, silent_chunks: int, first_at_s: float | None) -> str:
    """The error of a stream that completed without any text chunk. ``reported``: the trusted
    final ``usage.completion_tokens``; ``silent_chunks``: chunks whose per-chunk usage said they
    held tokens (those are timed, so this is only reached without per-chunk usage)."""
    if reported:
        when = f", the first by {first_at_s * 1e3:.1f} ms" if first_at_s is not None else ""
        return (
            f"no_text: the server reported {reported} completion tokens{when} but streamed no "
            "text for any of them (its tokens decode to no visible text, e.g. special tokens; "
            "without per-chunk usage they cannot be timed: the server may support "
            "stream_options.continuous_usage_stats)"
        )
    if silent_chunks:
        return f"no_text: {silent_chunks} chunks held tokens by their usage but no text"
    return "protocol: stream completed without any generated text (and no usage counted tokens)"


def silent_warning(silent_tokens: int, total: int | None) -> str | None:
    """The warning of a request some of whose tokens came in chunks without text (timed from the
    server's per-chunk usage), or ``None``."""
    if silent_tokens <= 0:
        return None
    of = f" of {total}" if total is not None else ""
    return (
        f"no_text: {silent_tokens}{of} tokens came in chunks without visible text (timed and "
        "counted from the server's per-chunk usage)"
    )


def reasoning_count(
    chunk_tokens: Sequence[int],
    texts: Sequence[str],
    reasoning_chars: Sequence[int],
    reported: int | None,
) -> int | None:
    """Reasoning tokens of one request: ``reported`` (the server's
    ``completion_tokens_details.reasoning_tokens``, already validated) when given, else each
    chunk's tokens times its share of reasoning characters (a chunk that is all reasoning counts
    all its tokens); ``None`` when the stream carried no reasoning text at all."""
    if not any(reasoning_chars):
        return reported if reported else None
    if reported is not None:
        return reported
    total = 0.0
    for k, text, r in zip(chunk_tokens, texts, reasoning_chars):
        if r > 0:
            total += k * min(1.0, r / max(len(text), 1))
    return round(total)


def first_output_s(times: Sequence[float], texts: Sequence[str], reasoning_chars: Sequence[int]):
    """Time of the first chunk with visible output text (not reasoning, not empty): TTFO, seconds
    since sent; ``None`` when no chunk had any."""
    for at, text, r in zip(times, texts, reasoning_chars):
        if len(text) > r:
            return at
    return None
