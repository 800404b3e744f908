"""ipex-llm all-in-one's ``test_api`` values as streambench settings.

The all-in-one benchmark picks *how* a model runs with ``test_api``; streambench maps the common
values to its own settings (device, dtype, low-bit weights, ipex-llm ``optimize_model``) instead
of ignoring them. Several values are a sweep axis (the value is part of each configuration's
identity); every setting a value implies gives way to the command line, and ``dtype`` to a
command-line ``--dtype`` only, as for every config key. Values that need something else say what:
``deepspeed_*`` (the deepspeed launcher with ``--tp deepspeed``), ``speculative_*`` (ipex-llm's
self-speculative mode is gone: ``--prompt-lookup``).

>>> implied("transformer_int4_fp16_gpu", "sym_int4")
{'device': 'xpu', 'dtype': 'float16', 'low_bit': 'sym_int4', 'optimize_model': False}
>>> implied("bigdl_fp16_gpu", "sym_int4")["low_bit"] is None
True
"""

from __future__ import annotations

from typing import Any

from ..errors import UsageError

__all__ = ["DEFAULT_LOW_BIT", "TEST_APIS", "implied", "lookahead_settings"]

#: all-in-one's default ``low_bit``
DEFAULT_LOW_BIT = "sym_int4"

#: test_api -> (device, dtype or None, uses low_bit, ipex-llm optimize_model)
TEST_APIS: dict[str, tuple[str, str | None, bool, bool]] = {
    "transformer_int4": ("cpu", None, True, False),
    "transformer_int4_gpu": ("xpu", "float32", True, False),
    "transformer_int4_fp16_gpu": ("xpu", "float16", True, False),
    "bigdl_fp16_gpu": ("xpu", "float16", False, False),
    "pytorch_autocast_bf16": ("cpu", "bfloat16", False, False),
    "optimize_model": ("cpu", None, True, True),
    "optimize_model_gpu": ("xpu", None, True, True),
}


def implied(test_api: str, low_bit: str | None, launched: bool = False) -> dict[str, Any]:
    """The settings one ``test_api`` value implies (``low_bit``: the config's kind, else
    all-in-one's default ``sym_int4``); :class:`UsageError` naming what to do for values that
    streambench runs another way, and for unknown ones."""
    if test_api.startswith("deepspeed_"):
        if launched:  # under the deepspeed launcher: AutoTP over the ranks
            return {"tp": "deepspeed", "low_bit": None, "optimize_model": False}
        raise UsageError(
            f"config key 'test_api': {test_api!r} runs under the deepspeed launcher: "
            "deepspeed --num_gpus N --no_local_rank --module streambench run MODEL --tp deepspeed"
        )
    if test_api.startswith("speculative_"):
        raise UsageError(
            f"config key 'test_api': {test_api!r} is ipex-llm's self-speculative decoding, which "
            "is gone from ipex-llm; use --prompt-lookup N (prompt-lookup decoding) or "
            "--assistant-model PATH"
        )
    if test_api not in TEST_APIS:
        raise UsageError(
            f"config key 'test_api': unknown value {test_api!r} (streambench maps: "
            f"{', '.join(TEST_APIS)}, deepspeed_*, speculative_*)"
        )
    device, dtype, uses_low_bit, optimize = TEST_APIS[test_api]
    return {
        "device": device,
        "dtype": dtype,
        "low_bit": (low_bit or DEFAULT_LOW_BIT) if uses_low_bit else None,
        "optimize_model": optimize,
    }


def lookahead_settings(config: dict[str, Any], where: str) -> dict[str, Any]:
    """All-in-one's ``lookahead`` / ``max_matching_ngram_size`` as prompt-lookup decoding:
    ``{"prompt_lookup": N, "generate_kwargs": {"max_matching_ngram_size": M}}`` (what is given)."""
    from .keys import YAML_KEYS as KEYS

    out: dict[str, Any] = {}
    if config.get("lookahead") is not None:
        out["prompt_lookup"] = KEYS["prompt_lookup"].coerce(
            config["lookahead"], f"{where}: key 'lookahead'"
        )
    ngram = config.get("max_matching_ngram_size")
    if ngram is not None:
        if "prompt_lookup" not in out:
            raise UsageError(f"{where}: key 'max_matching_ngram_size' needs 'lookahead'")
        size = KEYS["prompt_lookup"].coerce(ngram, f"{where}: key 'max_matching_ngram_size'")
        out["generate_kwargs"] = [{"max_matching_ngram_size": size[0]}]
    return out
