"""Prompts of exactly N tokens for ``streambench run``: a fixed English text repeated and cut with
the model's tokenizer (random token ids for a model without one), seeded, batched; and the pad
token ``generate()`` is given."""

from __future__ import annotations

from typing import Any

__all__ = ["PROMPT_TEXT", "build_prompt"]

#: text repeated and cut to build prompts of exactly N tokens (any tokenizer)
PROMPT_TEXT = (
    "Once upon a time, in a small town by the sea, there lived an old clockmaker who repaired "
    "every clock the townspeople brought him. Each morning he opened his shop at seven, swept "
    "the floor, wound the great pendulum clock by the door and waited for the first customer. "
    "One winter a girl arrived with a pocket watch that had stopped at a quarter past three, "
    "and she asked him whether time itself could be repaired. "
)


def build_prompt(loaded: Any, n_tokens: int, batch_size: int, seed: int = 0) -> Any:
    """A ``[batch_size, n_tokens]`` tensor of input ids: exactly ``n_tokens`` per row.

    With a tokenizer: :data:`PROMPT_TEXT`, repeated as needed, tokenized (with the tokenizer's
    special tokens, e.g. BOS) and cut to ``n_tokens`` ids. Without one: random ids of the vocabulary
    (seeded). Every row is the same prompt, so no padding is needed.
    """
    import torch

    tok = loaded.tokenizer
    if tok is not None:
        reps = 1
        while True:  # double the text until it has enough tokens
            ids = list(tok(PROMPT_TEXT * reps).input_ids)
            if len(ids) >= n_tokens:
                break
            reps *= 2
        row = ids[:n_tokens]
    else:
        vocab = int(getattr(loaded.config, "vocab_size", 0) or 32000)
        gen = torch.Generator().manual_seed(seed)
        low = min(10, vocab - 1)
        row = torch.randint(low, vocab, (n_tokens,), generator=gen).tolist()
    return torch.tensor([row] * batch_size, dtype=torch.long)


def _pad_token_id(loaded: Any) -> int:
    tok = loaded.tokenizer
    for value in (
        getattr(tok, "pad_token_id", None) if tok is not None else None,
        getattr(loaded.model.generation_config, "pad_token_id", None),
        getattr(loaded.config, "pad_token_id", None),
        getattr(tok, "eos_token_id", None) if tok is not None else None,
        getattr(loaded.config, "eos_token_id", None),
    ):
        if isinstance(value, list):
            value = value[0] if value else None
        if isinstance(value, int):
            return value
    return 0


# -- one configuration ---------------------------------------------------------------------------
