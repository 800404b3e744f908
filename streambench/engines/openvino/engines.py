"""``--engine openvino`` (optimum-intel's ``OVModelForCausalLM``) and ``--engine openvino-genai``
(OpenVINO GenAI's ``LLMPipeline``, :mod:`.genai`).

Both run an OpenVINO IR directory: given as the model, or exported once from a transformers
model into a cache (:mod:`.export`), loaded by :mod:`.openvino`. Their tokens are timed on the
host: OpenVINO hands each token to the host, so there is nothing to sync. ``openvino``,
``optimum`` and ``openvino_genai`` are imported only when used.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ...errors import UsageError
from ..base import Engine
from ..export import DEFAULT_EXPORT_DIR

if TYPE_CHECKING:
    from ...spec.models import ModelSpec
    from ..transformers.load import LoadedModel

__all__ = [
    "OV_WEIGHT_FORMATS",
    "GenAIEngine",
    "OpenVINOEngine",
    "check_openvino_device",
    "openvino_device",
]

#: ``--low-bit`` for the OpenVINO engines: NNCF weight compression at export
#: (``fp16``/``fp32``: no compression, weights stored in that precision)
OV_WEIGHT_FORMATS = ("fp32", "fp16", "int8", "int4_sym", "int4_asym")
#: settings of transformers' own model and generate() that the OpenVINO engines do not have
_TRANSFORMERS_ONLY = (
    "attn_implementation",
    "cache_implementation",
    "compile",
    "compile_mode",
    "assistant_model",
    "prompt_lookup",
    "model_kwargs",
    "test_api",
)


class OpenVINOEngine(Engine):
    """optimum-intel's ``OVModelForCausalLM``: transformers' ``generate()`` on OpenVINO."""

    name = "openvino"
    description = "optimum-intel's OVModelForCausalLM (needs streambench[openvino])"
    low_bit_formats = OV_WEIGHT_FORMATS
    low_bit_note = "NNCF weight compression at export"
    refuses = _TRANSFORMERS_ONLY
    requires = ("openvino", "optimum.intel")
    extra = "openvino"
    timed_on_host = True
    export_cache = DEFAULT_EXPORT_DIR

    def check(self, settings: Any, variants: list[dict[str, Any]]) -> None:
        """Installed, beams, ``--low-bit``, and ``--device`` available to OpenVINO."""
        super().check(settings, variants)
        check_openvino_device(settings.device)

    def check_installed(self, note: str = "") -> None:
        # installing optimum-intel may pin another transformers: say so before it happens
        super().check_installed(f" (it may move transformers: see the README, 'OpenVINO'){note}")

    def load(
        self, spec: ModelSpec, settings: Any, device: Any, variant: dict[str, Any]
    ) -> LoadedModel:
        """The IR of ``spec`` (exported or cached) on ``--device``'s OpenVINO device; the
        streamer times on the host whatever ``device`` says."""
        from ..variant_load import load_settings
        from .load import load_openvino

        setup = load_settings(settings, variant)
        return load_openvino(spec, setup, self.name, openvino_device(settings.device))


class GenAIEngine(OpenVINOEngine):
    """OpenVINO GenAI's ``LLMPipeline``: C++ generation, batch 1, greedy or sampled."""

    name = "openvino-genai"
    description = "OpenVINO GenAI's LLMPipeline (needs streambench[openvino])"
    batch = False
    beams = False
    refuses = (*_TRANSFORMERS_ONLY, "generate_kwargs")
    requires = ("openvino", "openvino_genai", "optimum.intel")

    def forced_scores(self, loaded: LoadedModel, ids: list[int]) -> tuple[list[float], list[int]]:
        """``--quality``: none; the results hold ``null`` and this reason."""
        raise NotImplementedError(
            "OpenVINO GenAI's LLMPipeline gives no logits to score a text; use --engine "
            "openvino for the same IR with logits"
        )

    def record(self, loaded: LoadedModel, trials: int) -> dict[str, Any] | None:
        """What the load said and the medians of GenAI's own ``PerfMetrics`` over the last
        ``trials`` calls (ms, its clock; :meth:`.genai.GenAIModel.take_perf_metrics`)."""
        out = dict(loaded.engine or {})
        take = getattr(loaded.model, "take_perf_metrics", None)
        if take is not None:
            out["genai_perf_metrics"] = take(trials)
        return out


def openvino_device(device: str) -> str:
    """``--device`` in OpenVINO's names: ``cpu``/``auto`` -> ``CPU``, ``xpu`` -> ``GPU``,
    ``xpu:1`` -> ``GPU.1``, ``npu`` -> ``NPU``; OpenVINO's own ``gpu``/``gpu.1`` are accepted.

    >>> openvino_device("xpu:1"), openvino_device("gpu.0"), openvino_device("auto")
    ('GPU.1', 'GPU.0', 'CPU')
    """
    text = str(device).strip().lower()
    if text in ("auto", "cpu"):
        return "CPU"
    found = re.fullmatch(r"(xpu|gpu|npu)(?:[:.](\d+))?", text)
    if not found:
        raise UsageError(
            f"--device {device}: the OpenVINO engines run on cpu, xpu[:N] (an Intel GPU; "
            "OpenVINO's gpu[.N] too) or npu"
        )
    kind = "NPU" if found.group(1) == "npu" else "GPU"
    return kind if found.group(2) is None else f"{kind}.{found.group(2)}"


def check_openvino_device(device: str) -> str:
    """The OpenVINO device of ``--device``, checked against ``openvino.Core().available_devices``
    (:class:`UsageError` naming the ones present when it is not)."""
    name = openvino_device(device)
    import openvino

    available = list(openvino.Core().available_devices)
    gpu_any = name == "GPU" and any(d.startswith("GPU") for d in available)
    if name not in available and not gpu_any:
        raise UsageError(
            f"--device {device}: OpenVINO has no {name} on this machine (available: "
            f"{', '.join(available) or 'none'}); use --device cpu"
        )
    return name
