"""Tiny random-weight models and a byte-level tokenizer, built locally (no download).

Used by the CLI's embedded default model, the examples and the tests. Random weights do not change
timing as long as the output length is forced (``min_new_tokens = max_new_tokens``).

The tokenizer maps every UTF-8 byte to one token (ids 3..258) after three specials
(``<pad>`` = 0, ``<s>`` = 1, ``</s>`` = 2): any text encodes, and an N-byte ASCII prompt is exactly
N tokens. Its ``"printable"`` vocabulary keeps only the 95 printable ASCII characters (ids 3..97;
other characters are dropped when encoding): a random model over it (``vocab_size=98``) writes
visible text token by token, as a served model must for a client that reads text chunks (a random
byte-level model writes invalid UTF-8, which a server holds back and never sends).

Example:
    >>> from streambench.tiny import build_tokenizer
    >>> tok = build_tokenizer()
    >>> len(tok("hello", add_special_tokens=False).input_ids)
    5
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = [
    "TINY_LLAMA_CONFIG",
    "build_model",
    "build_tokenizer",
    "save_tiny_model",
    "tiny_llama_config",
    "tiny_t5_config",
]

TINY_LLAMA_CONFIG = "tiny-llama.json"
SPECIALS = ["<pad>", "<s>", "</s>"]
#: the vocabularies of :func:`build_tokenizer`: name -> the bytes it has a token for
VOCABULARIES = {"bytes": range(256), "printable": range(32, 127)}
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


def _config_dict(name: str) -> dict[str, Any]:
    return json.loads(resources.files("streambench.data").joinpath(name).read_text())


def tiny_llama_config(**overrides: Any) -> Any:
    """The embedded default: a 2-layer, 64-wide Llama (about 0.1 M parameters, vocab 259)."""
    from transformers import LlamaConfig

    cfg = _config_dict(TINY_LLAMA_CONFIG)
    cfg.pop("architectures", None)
    cfg.pop("model_type", None)
    cfg.update(overrides)
    return LlamaConfig(**cfg)


def tiny_t5_config(**overrides: Any) -> Any:
    """A 1+1-layer T5 encoder-decoder with the same vocabulary."""
    from transformers import T5Config

    cfg: dict[str, Any] = dict(
        vocab_size=259,
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=1,
        num_decoder_layers=1,
        num_heads=4,
        pad_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=0,
    )
    cfg.update(overrides)
    return T5Config(**cfg)


def build_tokenizer(vocabulary: str = "bytes") -> Any:
    """A byte-level ``PreTrainedTokenizerFast`` built in memory: every byte (vocab 259), or the
    printable ASCII characters only (``vocabulary="printable"``, vocab 98).

    >>> tok = build_tokenizer("printable")
    >>> len(tok), tok.decode(tok("Hi there", add_special_tokens=False).input_ids)
    (98, 'Hi there')
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    # Byte order (not set order) keeps ids stable: byte b -> id 3 + b.
    byte_to_char = _bytes_to_unicode()
    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    for b in VOCABULARIES[vocabulary]:
        vocab[byte_to_char[b]] = len(vocab)
    assert set(byte_to_char.values()) == set(alphabet)
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tk.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token=None,
        model_max_length=4096,
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (what ByteLevel uses)."""
    bs = list(range(ord("!"), ord("~") + 1))
    bs += list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def build_model(config: Any = None, seed: int = 0, dtype: Any = None, **kwargs: Any) -> Any:
    """A model with random weights from ``config`` (default: :func:`tiny_llama_config`), in eval
    mode. The seed makes the weights reproducible; ``kwargs`` go to ``from_config`` (e.g.
    ``attn_implementation="eager"``)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    config = config if config is not None else tiny_llama_config()
    torch.manual_seed(seed)
    auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    model = auto.from_config(config, trust_remote_code=False, **kwargs)  # built-in classes
    if dtype is not None:
        model = model.to(dtype)
    return model.eval()


def save_tiny_model(
    path: str | Path,
    kind: str = "llama",
    seed: int = 0,
    vocabulary: str = "bytes",
    **overrides: Any,
) -> Path:
    """Write a tiny random model (``kind``: ``"llama"`` or ``"t5"``) and its tokenizer
    (``vocabulary``: see :func:`build_tokenizer`; ``"printable"`` also sets the model's
    ``vocab_size`` to 98) to ``path``, loadable with ``from_pretrained(path)`` offline. Returns
    the path."""
    if vocabulary != "bytes":
        overrides.setdefault("vocab_size", len(SPECIALS) + len(VOCABULARIES[vocabulary]))
    if kind == "llama":
        config = tiny_llama_config(**overrides)
    elif kind == "t5":
        config = tiny_t5_config(**overrides)
    else:
        raise ValueError(f"unknown tiny model kind {kind!r}: use 'llama' or 't5'")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model = build_model(config, seed=seed)
    model.generation_config.pad_token_id = 0
    model.save_pretrained(path)
    build_tokenizer(vocabulary).save_pretrained(path)
    return path
