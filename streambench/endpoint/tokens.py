"""Tokens per streamed text chunk: from the server's ``usage``, a local tokenizer, or the text.

The counting methods are described in :mod:`streambench.endpoint` (``token_count``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

from .spec import EndpointError


def apportion(total: int, weights: Sequence[float]) -> list[int]:
    """Split ``total`` tokens over chunks in proportion to ``weights`` (largest remainder).

    While ``total >= len(weights)`` every chunk gets at least one token (a text chunk holds at
    least one token); the first chunk always gets one when ``total >= 1``. Sums to ``total``.
    """
    n = len(weights)
    if n == 0 or total <= 0:
        return [0] * n
    if total >= n:
        base = [1] * n
        rest = total - n
        w = [max(float(x) - 1.0, 0.0) for x in weights]
    else:
        base = [0] * n
        base[0] = 1
        rest = total - 1
        w = [0.0] + [max(float(x), 0.0) for x in weights[1:]]
    if rest:
        if sum(w) <= 0:
            w = [1.0] * n if total >= n else [0.0] + [1.0] * (n - 1)
        s = sum(w)
        exact = [rest * x / s for x in w]
        add = [math.floor(x) for x in exact]
        left = rest - sum(add)
        order = sorted(range(n), key=lambda i: (-(exact[i] - add[i]), i))
        for i in order[:left]:
            add[i] += 1
        base = [b + a for b, a in zip(base, add)]
    return base


def _tokenizer_counts(tokenizer: Any, texts: Sequence[str]) -> list[int]:
    """Tokens of each chunk: the whole text tokenized once, each token given to the chunk where
    it ends (character offsets of a fast tokenizer; O(length), so cheap inside the event loop).
    Without offsets (slow tokenizers): each chunk tokenized on its own."""
    import bisect

    text = "".join(texts)
    ends, acc = [], 0
    for t in texts:
        acc += len(t)
        ends.append(acc)
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        offsets = enc["offset_mapping"]
    except (NotImplementedError, KeyError, TypeError, ValueError):
        return [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    counts = [0] * len(texts)
    for _start, end in offsets:
        counts[min(bisect.bisect_left(ends, max(end, 1)), len(texts) - 1)] += 1
    return counts


def count_chunk_tokens(
    texts: Sequence[str],
    chunk_usage: Sequence[int | None] = (),
    usage_total: int | None = None,
    tokenizer: Any = None,
) -> tuple[list[int], str]:
    """Tokens per text chunk and how they were counted (methods: :mod:`streambench.endpoint`).

    ``chunk_usage``: cumulative ``usage.completion_tokens`` seen with each chunk (``None`` where
    absent); ``usage_total``: the last ``usage.completion_tokens`` of the stream. The counts sum to
    ``usage_total`` whenever it is known.
    """
    n = len(texts)
    if n == 0:
        return [], "usage" if usage_total is not None else "chunks"
    if len(chunk_usage) == n and all(u is not None for u in chunk_usage):
        counts, prev = [], 0
        for u in chunk_usage:
            counts.append(max(int(u) - prev, 0))  # type: ignore[arg-type]
            prev = max(prev, int(u))  # type: ignore[arg-type]
        if usage_total is not None and usage_total > sum(counts):
            counts[-1] += usage_total - sum(counts)
        if counts[0] == 0 and sum(counts) > 0:
            counts = apportion(sum(counts), counts)
        return counts, "usage_per_chunk"
    tok_counts = _tokenizer_counts(tokenizer, texts) if tokenizer is not None else None
    if usage_total is not None:
        weights = tok_counts if tok_counts is not None else [len(t) for t in texts]
        method = "usage+tokenizer" if tok_counts is not None else "usage+text"
        return apportion(usage_total, weights), method
    if tok_counts is not None:
        if tok_counts[0] == 0:
            tok_counts[0] = 1
        return tok_counts, "tokenizer"
    return [1] * n, "chunks"


def load_tokenizer(path: str | None, trust_remote_code: bool = False) -> Any:
    """A local tokenizer (``AutoTokenizer.from_pretrained(path, local_files_only=True)``). Its
    own Python code (``auto_map`` in its config) runs only with ``trust_remote_code=True``
    (``--trust-remote-code``); otherwise loading such a tokenizer fails, it is never asked on
    the terminal."""
    if not path:
        return None
    if not os.path.isdir(path):
        raise EndpointError(
            f"--tokenizer {path!r} is not a directory: give a local tokenizer folder "
            "(the model's directory works); it is never downloaded"
        )
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(
            path, local_files_only=True, trust_remote_code=trust_remote_code is True
        )
    except Exception as exc:
        if "trust_remote_code" in str(exc) and trust_remote_code is not True:
            raise EndpointError(
                f"--tokenizer {path!r} needs its own Python code to load (auto_map in its "
                "config), which is not run: add --trust-remote-code if you trust that folder"
            ) from None
        reason = " ".join(str(exc).split())  # one line
        raise EndpointError(f"cannot load a tokenizer from {path!r}: {reason}") from exc
