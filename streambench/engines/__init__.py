"""Inference engines besides transformers, timed by the same core (``--engine``).

- ``transformers``: the model's own ``generate()`` (:mod:`streambench.loading`), the default;
- ``openvino``: optimum-intel's ``OVModelForCausalLM`` (:mod:`.openvino`), whose ``generate()``
  is transformers' and takes the :class:`~streambench.TimingStreamer` unchanged;
- ``openvino-genai``: OpenVINO GenAI's ``LLMPipeline`` (:mod:`.genai`), C++ generation whose
  streamer callback feeds the same timing core token by token.

Both OpenVINO engines run an OpenVINO IR directory: given as the model, or exported once from a
transformers model into a cache (:mod:`.export`). Everything here is checked before any model
loads; ``openvino``, ``optimum`` and ``openvino_genai`` are imported only when used.
"""

from __future__ import annotations

import importlib.util
import re
from typing import Any

from ..config import ENGINES
from ..errors import UsageError

__all__ = [
    "ENGINES",
    "INSTALL",
    "OPENVINO_ENGINES",
    "OV_WEIGHT_FORMATS",
    "check_engine_available",
    "check_engines",
    "check_openvino_device",
    "check_weight_format",
    "engine_of",
    "engine_record",
    "openvino_device",
]

OPENVINO_ENGINES = ("openvino", "openvino-genai")
#: the command that installs the OpenVINO engines from PyPI (see README, "OpenVINO"; messages
#: say what fits the running copy: :func:`streambench.extras.install_hint`)
INSTALL = "pip install 'streambench[openvino]'"
#: ``--low-bit`` for the OpenVINO engines: NNCF weight compression at export
#: (``fp16``/``fp32``: no compression, weights stored in that precision)
OV_WEIGHT_FORMATS = ("fp32", "fp16", "int8", "int4_sym", "int4_asym")
_NEEDS = {
    "openvino": ("openvino", "optimum.intel"),
    "openvino-genai": ("openvino", "openvino_genai", "optimum.intel"),
}


def engine_of(variant: Any) -> str:
    """The engine of a generation variant (``transformers`` when it does not say)."""
    return str(variant.get("engine") or "transformers")


def engine_record(loaded: Any, trials: int) -> dict[str, Any]:
    """A configuration's ``engine`` object: what the engine ran (``loaded.engine``) and, for
    OpenVINO GenAI, the medians of its own ``PerfMetrics`` over the last ``trials`` calls (ms,
    its clock; see :meth:`.genai.GenAIModel.take_perf_metrics`)."""
    out = dict(loaded.engine or {})
    take = getattr(loaded.model, "take_perf_metrics", None)
    if take is not None:
        out["genai_perf_metrics"] = take(trials)
    return out


def check_engine_available(engine: str) -> None:
    """:class:`UsageError` with the pip command when ``engine``'s packages are missing."""
    from ..extras import install_hint

    missing = [m for m in _NEEDS.get(engine, ()) if not _importable(m)]
    if missing:
        raise UsageError(
            f"--engine {engine} needs {', '.join(missing)}, which is not installed: "
            f"{install_hint('openvino')} "
            "(it may move transformers: see the README, 'OpenVINO')"
        )


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


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


def check_engines(settings: Any) -> Any:
    """Before anything loads: every engine of the sweep installed, ``--device`` available to
    OpenVINO. Returns the timing device (``torch.device("cpu")``: OpenVINO hands tokens to the
    host) when every variant is an OpenVINO engine, else ``None`` (``--device`` is then also a
    torch device, resolved by the caller)."""
    engines = {engine_of(v) for v in settings.variants}
    for engine in sorted(engines & set(OPENVINO_ENGINES)):
        check_engine_available(engine)
        check_openvino_device(settings.device)
        if engine == "openvino-genai":
            if settings.num_beams > 1:
                raise UsageError(
                    "--engine openvino-genai streams greedy or sampled decoding only: use "
                    "--num-beams 1 (beam search is for --engine transformers, openvino)"
                )
    if engines <= set(OPENVINO_ENGINES):
        import torch

        return torch.device("cpu")
    return None


def check_weight_format(low_bit: str | None, engine: str) -> None:
    """``--low-bit`` checked for one engine (:data:`OV_WEIGHT_FORMATS` for OpenVINO)."""
    if engine in OPENVINO_ENGINES and low_bit is not None and low_bit not in OV_WEIGHT_FORMATS:
        raise UsageError(
            f"--low-bit {low_bit} is not a weight format of --engine {engine}: use one of "
            f"{', '.join(OV_WEIGHT_FORMATS)} (NNCF weight compression at export)"
        )
