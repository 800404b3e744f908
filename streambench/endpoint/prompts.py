"""Prompts: seeded random common words, cut to an exact token count with a local tokenizer."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ..workloads.build import WORDS

if TYPE_CHECKING:
    from .spec import EndpointSpec

#: prompts are generated up front while (warm-up + requests) x prompt tokens stays below this
#: many words; above it, one at a time as they are sent (the same seeded prompts)
PROMPT_WORDS_UP_FRONT = 1 << 22
# one token each in the common BPE vocabularies: the same words as the workloads' drawn prompts
_WORDS = WORDS


def make_prompts(count: int, tokens: int, seed: int = 0, tokenizer: Any = None) -> list[str]:
    """``count`` different prompts of ``tokens`` tokens: random common words (seeded).

    With a tokenizer the text is cut so that it encodes to exactly ``tokens`` tokens (without
    special tokens) where the vocabulary allows; without one, ``tokens`` words.
    """
    return list(iter_prompts(count, tokens, seed, tokenizer))


def iter_prompts(count: int, tokens: int, seed: int = 0, tokenizer: Any = None) -> Iterator[str]:
    """The prompts of :func:`make_prompts`, one at a time (the same seeded sequence)."""
    rng = random.Random(seed)
    for _ in range(count):
        words = [rng.choice(_WORDS) for _ in range(tokens)]
        text = " ".join(words)
        if tokenizer is not None:
            text = _fit(tokenizer, text, tokens, rng)
        yield text


class PromptSource:
    """Prompt ``i`` of a run (``i`` never decreasing, repeats allowed) and its local token count.

    Generated up front while ``count * tokens <= PROMPT_WORDS_UP_FRONT`` (no tokenizing inside the
    event loop while requests stream), otherwise one at a time as requests are sent, so memory
    stays at one prompt however many requests are asked for."""

    def __init__(
        self, spec: EndpointSpec, count: int, tokenizer: Any, count_tokens: Callable[[str], Any]
    ) -> None:
        self._count_tokens = count_tokens
        self._fixed = spec.prompt
        self._list: list[str] | None = None
        self._gen: Iterator[str] | None = None
        self._cache: dict[int, str] = {}
        self._next = 0
        self._ptoks: dict[str, Any] = {}
        if self._fixed is not None:
            self._ptoks[self._fixed] = count_tokens(self._fixed)
        elif count * spec.prompt_tokens <= PROMPT_WORDS_UP_FRONT:
            self._list = make_prompts(count, spec.prompt_tokens, spec.seed, tokenizer)
            self._ptoks = {p: count_tokens(p) for p in set(self._list)}
        else:
            self._gen = iter_prompts(count, spec.prompt_tokens, spec.seed, tokenizer)

    def get(self, i: int) -> tuple[str, Any]:
        """(prompt ``i``, its local token count or ``None``)."""
        if self._fixed is not None:
            return self._fixed, self._ptoks[self._fixed]
        if self._list is not None:
            prompt = self._list[i]
            return prompt, self._ptoks.get(prompt)
        assert self._gen is not None
        while self._next <= i:
            self._cache[self._next] = next(self._gen)
            self._next += 1
        for k in [k for k in self._cache if k < i]:
            del self._cache[k]
        prompt = self._cache[i]
        return prompt, self._count_tokens(prompt)


def _fit(tokenizer: Any, text: str, tokens: int, rng: random.Random) -> str:
    for _ in range(8):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) == tokens:
            return text
        if len(ids) > tokens:
            text = tokenizer.decode(ids[:tokens])
        else:
            text = text + " " + " ".join(rng.choice(_WORDS) for _ in range(tokens - len(ids)))
    return text
