"""``--low-bit KIND``: which library serves each kind (torchao, bitsandbytes, ipex-llm), the
checks made before any model is loaded, and the quantization configs handed to
``from_pretrained``.

Imports nothing heavy (the libraries are looked up with ``importlib.util.find_spec`` and
imported inside the functions that use them).
"""

from __future__ import annotations

from typing import Any

from ...errors import UsageError

__all__ = [
    "BNB_KINDS",
    "IPEX_LLM_KINDS",
    "TORCHAO_KINDS",
    "check_low_bit_available",
    "check_low_bit_kind",
    "load_ipex_llm_model",
    "low_bit_backend",
    "low_bit_missing",
    "quantization_config",
    "quantized_weights",
    "torchao_config",
]

#: ``--low-bit`` kinds served by torchao (weight quantization applied at load, any model) and by
#: bitsandbytes (``BitsAndBytesConfig``); every other kind goes to ipex-llm (``sym_int4`` ...).
TORCHAO_KINDS = {
    "int8_weight_only": "Int8WeightOnlyConfig",
    "int8_dynamic": "Int8DynamicActivationInt8WeightConfig",
    "int4_weight_only": "Int4WeightOnlyConfig",
}
BNB_KINDS = ("bnb_nf4", "bnb_fp4", "bnb_int8")
#: ``load_in_low_bit`` kinds of ipex-llm 2.2 (``ipex_llm.ggml.quantize.ggml_tensor_qtype``)
IPEX_LLM_KINDS = (
    "sym_int4", "asym_int4", "sym_int5", "asym_int5", "sym_int8", "nf3", "nf4", "fp4", "fp6",
    "fp8", "fp8_e4m3", "fp8_e5m2", "fp16", "bf16", "mixed_fp4", "mixed_fp8", "woq_int4",
    "gguf_iq2_xxs", "gguf_iq2_xs", "gguf_iq1_s", "gguf_q4k_m", "gguf_q4k_s", "q4_k", "q5_k",
    "q6_k", "fp6_k", "sym_int4_rtn", "sym_int8_rtn", "asym_int4_rtn",
)  # fmt: skip


def check_low_bit_kind(low_bit: str) -> None:
    """:class:`UsageError` for a ``--low-bit`` kind that no backend knows."""
    if low_bit in TORCHAO_KINDS or low_bit in BNB_KINDS or low_bit in IPEX_LLM_KINDS:
        return
    raise UsageError(
        f"unknown --low-bit kind {low_bit!r}: use a torchao kind ({', '.join(TORCHAO_KINDS)}), "
        f"a bitsandbytes kind ({', '.join(BNB_KINDS)}) or an ipex-llm kind "
        f"({', '.join(IPEX_LLM_KINDS[:6])}, ...)"
    )


def low_bit_backend(low_bit: str) -> str:
    """Which library serves ``--low-bit KIND``: ``"torchao"``, ``"bitsandbytes"`` or
    ``"ipex-llm"``."""
    if low_bit in TORCHAO_KINDS:
        return "torchao"
    if low_bit in BNB_KINDS:
        return "bitsandbytes"
    return "ipex-llm"


def torchao_config(low_bit: str) -> Any:
    """torchao's config object for a torchao kind (e.g. ``Int8WeightOnlyConfig()``)."""
    import torchao.quantization as q

    return getattr(q, TORCHAO_KINDS[low_bit])()


def quantization_config(low_bit: str, dtype: Any) -> Any:
    """The ``quantization_config=`` for ``from_pretrained`` (torchao and bitsandbytes kinds)."""
    if low_bit_backend(low_bit) == "torchao":
        from transformers import TorchAoConfig

        return TorchAoConfig(torchao_config(low_bit))
    from transformers import BitsAndBytesConfig

    if low_bit == "bnb_int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type=low_bit[4:], bnb_4bit_compute_dtype=dtype
    )


def low_bit_missing(low_bit: str) -> str:
    """The one-line message for a ``--low-bit`` kind whose library is not installed."""
    backend = low_bit_backend(low_bit)
    if backend == "torchao":
        return f"--low-bit {low_bit} needs torchao, which is not installed: pip install torchao"
    if backend == "bitsandbytes":
        return (
            f"--low-bit {low_bit} needs bitsandbytes, which is not installed: "
            "pip install bitsandbytes"
        )
    return (
        f"--low-bit {low_bit} needs ipex-llm, which is not installed: pip install "
        "ipex-llm==2.2.0 --no-deps beside transformers 4.37 (README: 'Command line'); "
        f"or use torchao ({', '.join(TORCHAO_KINDS)}) or bitsandbytes ({', '.join(BNB_KINDS)})"
    )


def check_low_bit_available(low_bit: str, random_weights: bool = False) -> None:
    """Raise :class:`UsageError` early when the library that serves ``--low-bit`` is missing, or
    when the kind cannot apply to random weights (only torchao quantizes a built model)."""
    import importlib.util

    backend = low_bit_backend(low_bit)
    module = {"torchao": "torchao", "bitsandbytes": "bitsandbytes"}.get(backend, "ipex_llm")
    if importlib.util.find_spec(module) is None:
        raise UsageError(low_bit_missing(low_bit))
    if random_weights and backend != "torchao":
        raise UsageError(
            f"--low-bit {low_bit} loads pretrained weights; with --random-weights or the "
            f"embedded model use a torchao kind ({', '.join(TORCHAO_KINDS)})"
        )


def load_ipex_llm_model(source: str | None, low_bit: str, trust_remote_code: bool) -> Any:
    """Load the pretrained model at ``source`` in ``low_bit`` (e.g. ``sym_int4``) through
    ipex-llm (on the CPU; the caller moves it)."""
    try:
        from ipex_llm.transformers import AutoModelForCausalLM as IpexAuto
    except ImportError:
        raise UsageError(low_bit_missing(low_bit)) from None
    kwargs: dict[str, Any] = {}
    if low_bit == "sym_int4":
        kwargs["load_in_4bit"] = True
    else:
        kwargs["load_in_low_bit"] = low_bit
    # explicit: never left to transformers' interactive prompt
    return IpexAuto.from_pretrained(source, trust_remote_code=trust_remote_code is True, **kwargs)


def quantized_weights(model: Any) -> int:
    """How many modules hold a weight that is not a plain tensor (a quantized tensor subclass of
    torchao, bitsandbytes' Params4bit/Int8Params, ipex-llm's FP4Params ...)."""
    plain = {"Parameter", "Tensor", "NoneType"}
    return sum(1 for m in model.modules() if type(getattr(m, "weight", None)).__name__ not in plain)
