"""``--engine llama.cpp``: the :class:`~streambench.engines.base.Engine` of llama.cpp.

MODEL is a ``.gguf`` file (loaded as it is; prompts are then random token ids, a GGUF carries
no transformers tokenizer) or a transformers model converted once into the GGUF cache
(:mod:`.convert`; ``--low-bit`` picks the weight format, ``--export-dir`` the cache). The model
runs in this process on the CPU (:class:`.model.LlamaCppModel`); its tokens are timed on the
host: llama.cpp hands each step's logits to the host, so there is nothing to sync. llama.cpp's
threads (``n_threads`` and ``n_threads_batch``): ``--threads``, else torch's thread count.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ...errors import UsageError
from ..base import Engine
from .convert import DEFAULT_CACHE_DIR, FORMATS
from .model import MAX_BATCH

if TYPE_CHECKING:
    from ...spec.models import ModelSpec
    from ..transformers.load import LoadedModel

__all__ = ["LlamaCppEngine", "load_llamacpp"]

#: settings of transformers' own model and generate() that llama.cpp does not have
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


class LlamaCppEngine(Engine):
    """llama.cpp (llama-cpp-python) on the CPU: greedy or sampled decoding, batch up to
    :data:`~.model.MAX_BATCH` sequences per ``llama_decode``, GGUF weight formats."""

    name = "llama.cpp"
    description = "llama.cpp through llama-cpp-python, on the CPU (needs streambench[llamacpp])"
    beams = False
    low_bit_formats = tuple(FORMATS)
    low_bit_note = "GGUF formats; fp16 = f16, int8/sym_int8 = q8_0, int4/sym_int4 = q4_0"
    refuses = _TRANSFORMERS_ONLY
    requires = ("llama_cpp", "gguf")
    extra = "llamacpp"
    timed_on_host = True
    export_cache = DEFAULT_CACHE_DIR
    #: the model kinds it loads beyond transformers' (``streambench.spec.models.ModelSpec``):
    #: a ``.gguf`` file, which no other built-in engine reads
    model_kinds = ("gguf",)

    def check(self, settings: Any, variants: list[dict[str, Any]]) -> None:
        """Installed, beams, ``--low-bit``; ``--device`` the CPU; no ``--low-bit`` with a
        ``.gguf`` MODEL (used as it is)."""
        super().check(settings, variants)
        if str(settings.device).strip().lower() not in ("cpu", "auto"):
            raise UsageError(
                f"--device {settings.device}: --engine llama.cpp runs on the CPU (a CPU build of "
                "llama-cpp-python); use --device cpu"
            )
        from ..variant_load import load_settings

        given = [m.name for m in settings.models if m.kind == "gguf"]
        kinds = [load_settings(settings, v).low_bit for v in variants or [{}]]
        if given and any(kinds):
            raise UsageError(
                f"--low-bit {next(k for k in kinds if k)}: model {given[0]} is a .gguf file, "
                "used as it is; leave --low-bit out, or give the transformers directory to "
                "convert"
            )

    def configuration_problem(self, variant: dict[str, Any], batch: int) -> str | None:
        if batch > MAX_BATCH:
            return (
                f"batch {batch} asked: --engine llama.cpp decodes at most {MAX_BATCH} sequences "
                f"together; use --batch-size {MAX_BATCH} or less"
            )
        return None

    def load(
        self, spec: ModelSpec, settings: Any, device: Any, variant: dict[str, Any]
    ) -> LoadedModel:
        """``spec`` as a GGUF file (given, cached or converted now) loaded by llama.cpp; the
        streamer times on the host whatever ``device`` says."""
        from ..variant_load import load_settings

        return load_llamacpp(spec, load_settings(settings, variant))

    def forced_scores(self, loaded: LoadedModel, ids: list[int]) -> tuple[list[float], list[int]]:
        """``--quality``: llama.cpp's logits of every position of ``ids``, in a scoring context
        of its own (:meth:`.model.LlamaCppModel.forced_scores`): the timed context is not
        touched, so nothing the trials measured changes."""
        return loaded.model.forced_scores(ids)

    def record(self, loaded: LoadedModel, trials: int) -> dict[str, Any] | None:
        """What the load said and the medians of llama.cpp's own counters over the last
        ``trials`` calls (ms from its clock; :meth:`.model.LlamaCppModel.take_perf`)."""
        out = dict(loaded.engine or {})
        take = getattr(loaded.model, "take_perf", None)
        if take is not None:
            out["llama_cpp_perf"] = take(trials)
        return out


def load_llamacpp(spec: ModelSpec, settings: Any) -> LoadedModel:
    """Convert (or find) the GGUF of ``spec`` and load it. ``load_time_s`` is llama.cpp's load
    alone; a conversion's own time is in the notes and ``convert_time_s``."""
    import torch

    from ...peak_memory import rss_bytes
    from ..transformers.load import LoadedModel, tokenizer_and_context
    from .convert import ensure_gguf, gguf_format
    from .model import LlamaCppModel

    before = rss_bytes()
    fmt = None if spec.kind == "gguf" else gguf_format(settings.low_bit, settings.dtype)
    converted = ensure_gguf(spec, settings, fmt or "", getattr(settings, "export_dir", None))
    tokenizer = None if spec.kind == "gguf" else tokenizer_and_context(spec, settings)[0]
    threads = getattr(settings, "threads", None) or torch.get_num_threads()
    t0 = time.perf_counter()
    model = LlamaCppModel(converted.path, threads, None, _generation_config(spec))
    load_time = time.perf_counter() - t0
    about = model.describe()
    notes = [f"llama.cpp on the CPU ({threads} threads), GGUF {converted.path}"]
    if converted.convert_time_s is not None:
        notes.append(f"converted to GGUF ({fmt}) in {converted.convert_time_s:.2f} s")
    elif converted.cached:
        notes.append(f"GGUF ({fmt}) from the conversion cache")
    if tokenizer is None:
        notes.append("no tokenizer (a .gguf model): prompts are random token ids")
    from importlib.metadata import version

    return LoadedModel(
        spec,
        model,
        tokenizer,
        torch.device("cpu"),
        fmt or about["desc"],
        load_time,
        fmt if fmt not in (None, "f32", "f16") else None,
        notes,
        rss_before_load_bytes=before,
        rss_after_load_bytes=rss_bytes(),
        engine={
            "name": LlamaCppEngine.name,
            "device": "CPU",
            "weight_format": fmt,
            "gguf": str(converted.path),
            "convert_time_s": converted.convert_time_s,
            "n_threads": threads,
            "llama_cpp_python": version("llama-cpp-python"),
            **about,
        },
        threads=model.n_threads,
        weight_format=fmt or _gguf_type(about["desc"]),
        # ggml's CPU kernels keep activations in f32 (a quantized matmul converts them to its
        # dot-product type on the fly)
        compute_precision="f32",
    )


def _gguf_type(desc: str) -> str | None:
    """The weight type in llama.cpp's model description (``"llama ?B Q8_0"`` -> ``q8_0``;
    ``"all F32"`` is llama.cpp's name of an unquantized file).

    >>> _gguf_type("llama ?B Q4_K - Medium"), _gguf_type("llama 1B all F32"), _gguf_type("x")
    ('q4_k_m', 'f32', None)
    """
    words = [w for w in desc.replace(" - ", " ").split()[2:] if w.lower() != "all"]
    if not words:
        return None
    size = {"medium": "_m", "small": "_s", "large": "_l"}
    return words[0].lower() + (size.get(words[1].lower(), "") if len(words) > 1 else "")


def _generation_config(spec: ModelSpec) -> Any:
    """transformers' generation config of a local model directory (its EOS ids), else
    ``None`` (built from the GGUF)."""
    local = spec.local_directory
    if not local:
        return None
    from transformers import GenerationConfig

    try:
        return GenerationConfig.from_pretrained(local)
    except OSError:
        return None
