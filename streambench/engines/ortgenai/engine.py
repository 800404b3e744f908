"""``--engine onnxruntime-genai``: the :class:`~streambench.engines.Engine` of ONNX Runtime GenAI.

What it refuses before any model loads (one-line usage errors, exit 2): ``onnxruntime_genai``
missing, ``--num-beams`` > 1, a ``--low-bit`` that is not one of :data:`LOW_BIT`, a precision the
model builder does not make for the device (fp16 on the CPU ...), a ``--device`` it has no
provider for, and the transformers-only settings (``--compile``, ``--generate-kwargs`` ...).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ...errors import UsageError
from ..base import Engine
from .export import DEFAULT_EXPORT_DIR

if TYPE_CHECKING:
    from ...spec.models import ModelSpec
    from ..transformers.load import LoadedModel

__all__ = ["LOW_BIT", "OrtGenAIEngine", "check_device"]

#: ``--low-bit``: the model builder's precision (int4/int8: its MatMulNBits weight-only
#: quantization, block-wise; fp16/fp32: weights and activations in that type)
LOW_BIT = ("fp32", "fp16", "int8", "int4")
#: settings of transformers' own model and generate() that ORT GenAI does not have
_TRANSFORMERS_ONLY = (
    "attn_implementation",
    "cache_implementation",
    "compile",
    "compile_mode",
    "assistant_model",
    "prompt_lookup",
    "model_kwargs",
    "test_api",
    "generate_kwargs",
)


class OrtGenAIEngine(Engine):
    """ONNX Runtime GenAI's ``Generator`` loop (:mod:`.model`) on an ORT GenAI directory, given
    or built by its model builder into the export cache (:mod:`.export`)."""

    name = "onnxruntime-genai"
    description = "ONNX Runtime GenAI's generator loop (needs streambench[ortgenai])"
    beams = False
    low_bit_formats = LOW_BIT
    low_bit_note = "ORT GenAI's model builder precision"
    refuses = _TRANSFORMERS_ONLY
    requires = ("onnxruntime_genai",)
    extra = "ortgenai"
    timed_on_host = True  # each step's tokens are copied to the host before they are timed
    export_cache = DEFAULT_EXPORT_DIR

    def check(self, settings: Any, variants: list[dict[str, Any]]) -> None:
        """Installed, beams, ``--low-bit``, ``--device`` and the precision it builds there."""
        super().check(settings, variants)
        provider, _ = check_device(settings.device)
        from .export import VALID, is_genai_directory, precision

        if all(is_genai_directory(m.local_directory) for m in settings.models):
            return  # ONNX directories run as they are: nothing to build
        from ..variant_load import load_settings

        for variant in variants or [{}]:  # a variant may have its own (--low-bit a,b)
            one = load_settings(settings, variant)
            prec = precision(one.low_bit, one.dtype)
            if prec not in VALID[provider]:
                option = f"--low-bit {prec}" if one.low_bit else f"--dtype {one.dtype}"
                raise UsageError(
                    f"{option}: ORT GenAI's model builder makes no {prec} model for {provider}; "
                    f"use --low-bit {' or '.join(VALID[provider])} (or another --device)"
                )

    def load(
        self, spec: ModelSpec, settings: Any, device: Any, variant: dict[str, Any]
    ) -> LoadedModel:
        """The ORT GenAI directory of ``spec`` (given, cached or built now) on ``--device``'s
        provider; the streamer times on the host whatever ``device`` says."""
        from ..variant_load import load_settings

        return load_ortgenai(spec, load_settings(settings, variant), self.name)

    def forced_scores(self, loaded: LoadedModel, ids: list[int]) -> tuple[list[float], list[int]]:
        """``--quality``: ORT GenAI's logits of every position of ``ids``
        (:meth:`.model.OrtGenAIModel.forced_scores`)."""
        return loaded.model.forced_scores(ids)


def check_device(device: str) -> tuple[str, int | None]:
    """``--device`` as ORT GenAI's ``(provider, index)``, available in this onnxruntime-genai
    (:class:`UsageError` saying which package has it when not)."""
    import onnxruntime_genai as og

    from .model import provider_of

    try:
        provider, index = provider_of(device, bool(og.is_cuda_available()))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    has = {"cpu": True, "cuda": og.is_cuda_available(), "dml": og.is_dml_available()}
    if not has[provider]:
        package = {"cuda": "onnxruntime-genai-cuda", "dml": "onnxruntime-genai-directml"}
        raise UsageError(
            f"--device {device}: this onnxruntime-genai has no {provider} provider; install "
            f"{package[provider]} instead of onnxruntime-genai, or use --device cpu"
        )
    return provider, index


def load_ortgenai(spec: ModelSpec, settings: Any, engine: str) -> LoadedModel:
    """Build (or find) the ORT GenAI directory of ``spec`` and load it. ``load_time_s`` is the
    load alone; a build's own time is in the notes and ``export_time_s``."""
    import torch

    from ...peak_memory import rss_bytes
    from ..transformers.load import LoadedModel, load_tokenizer
    from .export import ensure_genai_dir, precision
    from .model import OrtGenAIModel

    before = rss_bytes()
    provider, index = check_device(settings.device)
    prec = precision(settings.low_bit, settings.dtype)
    exported = ensure_genai_dir(
        spec, settings, prec, provider, getattr(settings, "export_dir", None)
    )
    t0 = time.perf_counter()
    model = OrtGenAIModel(exported.path, provider, index, getattr(settings, "threads", None))
    load_time = time.perf_counter() - t0
    tokenizer = None
    # only with its files: transformers 5 otherwise builds an empty tokenizer
    if any((exported.path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
        tokenizer = load_tokenizer(str(exported.path), settings.trust_remote_code, offline=True)
    where = provider if index is None else f"{provider}:{index}"
    notes = [f"{engine} on {where}, ONNX model {exported.path}"]
    if exported.export_time_s is not None:
        notes.append(
            f"built with ORT GenAI's model builder ({prec}) in {exported.export_time_s:.2f} s"
        )
    elif exported.cached:
        notes.append(f"ORT GenAI model ({prec}) from the export cache")
    if tokenizer is None:
        notes.append("no tokenizer in the ONNX directory: prompts are random token ids")
    return LoadedModel(
        spec,
        model,
        tokenizer,
        torch.device("cpu"),
        exported.precision or "as built",
        load_time,
        exported.precision,
        notes,
        rss_before_load_bytes=before,
        rss_after_load_bytes=rss_bytes(),
        engine={
            "name": engine,
            "device": where,
            "precision": exported.precision,
            "onnx_dir": str(exported.path),
            "export_time_s": exported.export_time_s,
            "intra_op_num_threads": model.threads,
        },
        threads=model.threads if provider == "cpu" else None,
        weight_format=exported.precision,
        compute_precision=_io_type(exported.precision),
    )


def _io_type(precision: str | None) -> str | None:
    """The type the model builder computes activations in for ``precision``: fp16 for fp16,
    else fp32 (int4/int8 are weight-only: MatMulNBits dequantizes to the fp32 inputs on the
    CPU); ``None`` for a directory given as it is (not built here)."""
    if precision is None:
        return None
    return "fp16" if precision == "fp16" else "fp32"
