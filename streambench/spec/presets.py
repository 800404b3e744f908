"""Bundled shape presets of popular architectures, for ``streambench run --random-weights NAME``.

A preset is the ``config.json`` of a released model (sizes, heads, vocabulary, context) with no
weights: the CLI builds the model with random weights, which times the same as the real one as long
as the output length is forced (``min_new_tokens = max_new_tokens``). No download is needed.

=============  ==================================  ============
name           shape of                            parameters
=============  ==================================  ============
llama-3-8b     meta-llama/Meta-Llama-3-8B          8.03 B
qwen2.5-7b     Qwen/Qwen2.5-7B                     7.62 B
mistral-7b     mistralai/Mistral-7B-v0.3           7.25 B
tiny-llama     the embedded default (2 layers)     0.1 M
=============  ==================================  ============

Example:
    >>> from streambench.spec.presets import PRESETS, preset_dict
    >>> sorted(PRESETS)
    ['llama-3-8b', 'mistral-7b', 'qwen2.5-7b', 'tiny-llama']
    >>> preset_dict("llama-3-8b")["num_hidden_layers"]
    32
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["PRESETS", "config_from_dict", "load_preset", "preset_dict"]

_DATA = Path(__file__).resolve().parent.parent / "data"

#: preset name -> bundled JSON file (relative to ``streambench/data``)
PRESETS: dict[str, str] = {
    "llama-3-8b": "presets/llama-3-8b.json",
    "qwen2.5-7b": "presets/qwen2.5-7b.json",
    "mistral-7b": "presets/mistral-7b.json",
    "tiny-llama": "tiny-llama.json",
}


def preset_dict(name: str) -> dict[str, Any]:
    """The raw config dict of preset ``name`` (case-insensitive). ``KeyError`` when unknown."""
    key = name.strip().lower()
    if key not in PRESETS:
        raise KeyError(f"unknown preset {name!r}: choose one of {', '.join(sorted(PRESETS))}")
    data = json.loads((_DATA / PRESETS[key]).read_text())
    return {k: v for k, v in data.items() if not k.startswith("_")}


def config_from_dict(data: dict[str, Any], **overrides: Any) -> Any:
    """A ``transformers`` config from a ``config.json``-style dict (needs ``model_type``)."""
    from transformers import AutoConfig

    data = dict(data)
    data.update(overrides)
    model_type = data.pop("model_type", None)
    if not model_type:
        raise ValueError("the config has no 'model_type': cannot tell which architecture to build")
    data.pop("transformers_version", None)
    return AutoConfig.for_model(model_type, **data)


def load_preset(name: str, **overrides: Any) -> Any:
    """The ``transformers`` config of preset ``name``, with ``overrides`` applied."""
    return config_from_dict(preset_dict(name), **overrides)
