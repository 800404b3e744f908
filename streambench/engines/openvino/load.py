"""Loading a model for ``--engine openvino`` (optimum-intel) or ``--engine openvino-genai``.

Both get an IR directory from :mod:`.export` and return a
:class:`~streambench.engines.transformers.LoadedModel` whose ``model.generate()`` takes the timing
streamer:
``OVModelForCausalLM`` (transformers' own ``generate()``) or :class:`.genai.GenAIModel`. The
streamer times on the host (``device`` is the CPU): OpenVINO's ``generate()`` returns each token
to the host, so there is nothing to sync, and memory is this process's RSS (on an OpenVINO GPU
that excludes device memory, which streambench does not read yet). ``--dtype`` becomes
OpenVINO's inference precision hint, recorded as the configuration's dtype as OpenVINO reports
it. ``auto`` is what transformers' ``auto`` is on that device: ``f32`` on the CPU (OpenVINO's own
CPU default is ``bf16`` where the CPU has AMX or AVX-512 BF16, which would compare bf16 with
float32), the device's default elsewhere.
"""

from __future__ import annotations

import time
from typing import Any

from ...spec.models import ModelSpec
from ..export import ensure_ir, weight_format
from ..transformers.load import LoadedModel, load_tokenizer

__all__ = ["load_openvino", "precision_hint"]

_HINTS = {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}


def precision_hint(dtype: str, ov_device: str) -> dict[str, str]:
    """OpenVINO's ``ov_config`` for ``--dtype`` on ``ov_device`` (see the module doc).

    >>> precision_hint("auto", "CPU"), precision_hint("auto", "GPU")
    ({'INFERENCE_PRECISION_HINT': 'f32'}, {})
    >>> precision_hint("bfloat16", "CPU")
    {'INFERENCE_PRECISION_HINT': 'bf16'}
    """
    hint = _HINTS.get(dtype) or ("f32" if ov_device == "CPU" else None)
    return {"INFERENCE_PRECISION_HINT": hint} if hint else {}


def load_openvino(spec: ModelSpec, settings: Any, engine: str, ov_device: str) -> LoadedModel:
    """Export (or find) the IR of ``spec`` and load it for ``engine`` on ``ov_device``
    (``CPU``, ``GPU.1`` ...). ``load_time_s`` is the load alone; an export's own time is in the
    notes and ``export_time_s``."""
    import torch

    from ...peak_memory import rss_bytes

    before = rss_bytes()
    fmt = weight_format(settings.low_bit, settings.dtype)
    exported = ensure_ir(spec, settings, fmt, getattr(settings, "export_dir", None))
    config = {"PERFORMANCE_HINT": "LATENCY", **precision_hint(settings.dtype, ov_device)}
    threads = getattr(settings, "threads", None)
    if threads is not None and ov_device == "CPU":
        config["INFERENCE_NUM_THREADS"] = str(threads)  # OpenVINO's own CPU thread pool
    t0 = time.perf_counter()
    if engine == "openvino":
        from optimum.intel import OVModelForCausalLM

        model: Any = OVModelForCausalLM.from_pretrained(
            exported.path,
            device=ov_device,
            ov_config=config,
            compile=True,
            trust_remote_code=settings.trust_remote_code,
        )
        precision = _precision(model.request.get_compiled_model, ov_device)
        used = _property(model.request.get_compiled_model, "INFERENCE_NUM_THREADS")
    else:
        from .genai import GenAIModel

        model = GenAIModel(exported.path, ov_device, config, settings.trust_remote_code)
        precision = config.get("INFERENCE_PRECISION_HINT") or _precision(None, ov_device)
        used = threads  # the pipeline's compiled model is not exposed: what it was given
    load_time = time.perf_counter() - t0
    tokenizer = None
    # only with its files: transformers 5 otherwise builds an empty tokenizer from config.json
    if any((exported.path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
        tokenizer = load_tokenizer(str(exported.path), settings.trust_remote_code, offline=True)
    notes = [f"{engine} on {ov_device}, IR {exported.path}"]
    if exported.export_time_s is not None:
        notes.append(f"exported to OpenVINO IR ({fmt} weights) in {exported.export_time_s:.2f} s")
    elif exported.cached:
        notes.append(f"OpenVINO IR ({fmt} weights) from the export cache")
    if tokenizer is None:
        notes.append("no tokenizer in the IR directory: prompts are random token ids")
    return LoadedModel(
        spec,
        model,
        tokenizer,
        torch.device("cpu"),
        precision or settings.dtype,
        load_time,
        exported.weight_format,
        notes,
        rss_before_load_bytes=before,
        rss_after_load_bytes=rss_bytes(),
        engine={
            "name": engine,
            "device": ov_device,
            "weight_format": exported.weight_format,
            "inference_precision": precision,
            "inference_num_threads": used,
            "ir": str(exported.path),
            "export_time_s": exported.export_time_s,
        },
        threads=used if ov_device == "CPU" else None,
        weight_format=exported.weight_format,
        compute_precision=precision,
    )


def _property(get_compiled: Any, name: str) -> int | None:
    """A whole-number property of the compiled model (``INFERENCE_NUM_THREADS``); ``None`` when
    unreadable or 0 (OpenVINO's "its default")."""
    try:
        value = int(str(get_compiled().get_property(name)))
    except Exception:  # noqa: BLE001 - a property some devices lack
        return None
    return value or None


def _precision(get_compiled: Any, ov_device: str) -> str | None:
    """``INFERENCE_PRECISION_HINT`` (``f32``, ``bf16`` ...) of the compiled model, else the
    device's default; ``None`` if unreadable."""
    try:
        if get_compiled is not None:
            value = get_compiled().get_property("INFERENCE_PRECISION_HINT")
        else:
            import openvino

            value = openvino.Core().get_property(ov_device, "INFERENCE_PRECISION_HINT")
        return value.to_string() if hasattr(value, "to_string") else str(value)
    except Exception:  # noqa: BLE001 - a property some devices lack
        return None
