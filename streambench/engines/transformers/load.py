"""Loading one whole model onto one device: :func:`load_on_device` -> :class:`LoadedModel`.

The embedded tiny Llama (built in memory), random weights from a bundled preset or a local
config, or pretrained weights (a local directory or a hub id; ``--low-bit`` through torchao,
bitsandbytes or ipex-llm; ``--ipex``). The device comes from a
:class:`~streambench.engines.transformers.placement.Placement`, already resolved. Splitting a model
over
ranks is :mod:`streambench.engines.transformers.tensor_parallel`, which builds on this module
(never the
other way round); :func:`streambench.engines.transformers.load_model` picks one of the two.

torch and transformers are imported inside the functions.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ...errors import UsageError
from ...spec.models import ModelSpec
from .placement import Placement
from .quantization import (
    load_ipex_llm_model,
    low_bit_backend,
    quantization_config,
    quantized_weights,
    torchao_config,
)

__all__ = [
    "DTYPES",
    "LoadOptions",
    "LoadedModel",
    "check_ipex_available",
    "dtype_kwargs",
    "load_on_device",
    "load_tokenizer",
    "resolve_dtype",
]

#: ``--dtype`` values
DTYPES = ("auto", "float32", "float16", "bfloat16")

_IPEX_MISSING = (
    "--ipex needs intel-extension-for-pytorch, which is not installed: pip install "
    "intel-extension-for-pytorch with its matching torch (IPEX 2.8 needs torch 2.8.x; "
    "see README, 'Intel Extension for PyTorch')"
)
_NO_TOKENIZER = "no tokenizer found: prompts are random token ids"


class LoadOptions(Protocol):
    """What loading reads from the sweep's settings (:class:`streambench.sweep.SweepSettings`
    has all of it)."""

    dtype: str
    low_bit: str | None
    trust_remote_code: bool
    ipex: bool
    num_layers: int | None
    seed: int
    tp: str


@dataclass
class LoadedModel:
    """A model ready to time: the model, its tokenizer (``None`` for random-weight configs, which
    get random token ids), where it runs, and how long loading took (seconds)."""

    spec: ModelSpec
    model: Any
    tokenizer: Any
    device: Any
    dtype: Any
    load_time_s: float
    low_bit: str | None = None
    notes: list[str] = field(default_factory=list)
    #: resident memory of this process just before and after loading (bytes; Linux, else None)
    rss_before_load_bytes: int | None = None
    rss_after_load_bytes: int | None = None
    #: the assistant model of assisted decoding (``--assistant-model``), loaded beside it
    assistant: Any = None
    #: ``--engine`` other than transformers (:mod:`streambench.engines`): its name, device,
    #: weight format, inference precision, IR directory and export time
    engine: dict[str, Any] | None = None
    #: how it computes (:class:`streambench.engines.threads.Execution`): the CPU threads its
    #: engine uses (``None``: the runtime's default, unreported), the weights' format as stored,
    #: the type its activations are computed in (``None``: ``low_bit`` / ``dtype`` say it)
    threads: int | None = None
    weight_format: str | None = None
    compute_precision: str | None = None

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def is_encoder_decoder(self) -> bool:
        return bool(getattr(self.model.config, "is_encoder_decoder", False))

    @property
    def context_length(self) -> int | None:
        """Longest sequence the model accepts, tokens (``max_position_embeddings`` or
        equivalent); ``None`` when the config sets no limit."""
        cfg = self.model.config
        if self.is_encoder_decoder:
            return None  # relative positions (T5 & co.): no hard limit in the config
        for key in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
            value = getattr(cfg, key, None)
            if isinstance(value, int) and value > 0:
                return value
        return None


# -- transformers' spelling ----------------------------------------------------------------------
def resolve_dtype(name: str, device: Any) -> Any:
    """``--dtype`` -> ``torch.dtype``. ``auto``: float32 on CPU, bfloat16 on CUDA GPUs that support
    it, else float16."""
    import torch

    if name == "auto":
        if device.type == "cpu":
            return torch.float32
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16
    if name not in DTYPES:
        raise UsageError(f"unknown --dtype {name!r}: use one of {', '.join(DTYPES)}")
    return getattr(torch, name)


def dtype_kwargs(dtype: Any) -> dict[str, Any]:
    """``dtype=`` on transformers >= 4.56 (where ``torch_dtype`` is deprecated), else
    ``torch_dtype=``: the one place that checks the transformers version for it."""
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}


def _auto_class(config: Any) -> Any:
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    encoder_decoder = getattr(config, "is_encoder_decoder", False)
    return AutoModelForSeq2SeqLM if encoder_decoder else AutoModelForCausalLM


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _offline_kwargs(spec: ModelSpec) -> dict[str, Any]:
    return {"local_files_only": True} if spec.offline else {}


def load_tokenizer(source: str, trust_remote_code: bool, offline: bool = False) -> Any:
    """``AutoTokenizer.from_pretrained(source)``, or ``None`` when there is none to load. A
    tokenizer's own code runs only when ``trust_remote_code`` is ``True`` (never asked on the
    terminal: transformers would prompt when it is not given)."""
    from transformers import AutoTokenizer

    extra = {"local_files_only": True} if offline else {}
    allowed = trust_remote_code is True
    try:
        return AutoTokenizer.from_pretrained(source, trust_remote_code=allowed, **extra)
    except (OSError, ValueError, TypeError):
        return None


# -- the three kinds of model --------------------------------------------------------------------
def _model_kwargs(settings: LoadOptions) -> dict[str, Any]:
    """``from_pretrained()`` / ``from_config()`` keywords of the variant (``--model-kwargs``,
    ``--attn-implementation``); none by default."""
    return dict(getattr(settings, "model_kwargs", None) or {})


def _overrides(settings: LoadOptions) -> dict[str, Any]:
    if settings.num_layers is None:
        return {}
    return {"num_hidden_layers": settings.num_layers}


def _embedded_model(settings: LoadOptions, device: Any, dtype: Any) -> tuple[Any, Any]:
    """The bundled tiny Llama, built in memory, and its tokenizer."""
    from ... import tiny

    config = tiny.tiny_llama_config(**_overrides(settings))
    model = tiny.build_model(config, seed=settings.seed, **_model_kwargs(settings))
    return model.to(device=device, dtype=dtype), tiny.build_tokenizer()


def _random_config(spec: ModelSpec, settings: LoadOptions) -> tuple[Any, Any]:
    """The config of a preset or a local config file, and the tokenizer beside that file."""
    from ...spec.presets import config_from_dict, load_preset

    if spec.kind == "preset":
        return load_preset(spec.source or spec.name, **_overrides(settings)), None
    from ...reading import read_bounded

    raw = read_bounded(spec.source or "", "config", "model config")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise UsageError(f"cannot read model config {spec.source}: {exc}") from None
    try:
        config = config_from_dict(data, **_overrides(settings))
    except (ValueError, KeyError) as exc:
        raise UsageError(f"model config {spec.source}: {exc}") from None
    tok_dir = Path(spec.source or "").parent
    tokenizer = None
    if (tok_dir / "tokenizer_config.json").is_file():
        tokenizer = load_tokenizer(str(tok_dir), settings.trust_remote_code)
    return config, tokenizer


def _random_weights_model(
    spec: ModelSpec, settings: LoadOptions, device: Any, dtype: Any
) -> tuple[Any, Any]:
    """Random weights (seeded) for a preset or a config, built on ``device``."""
    import torch

    config, tokenizer = _random_config(spec, settings)
    torch.manual_seed(settings.seed)
    with torch.device(device):
        model = _auto_class(config).from_config(
            config,
            trust_remote_code=settings.trust_remote_code,
            **dtype_kwargs(dtype),
            **_model_kwargs(settings),
        )
    return model.to(dtype=dtype).eval(), tokenizer


def _pretrained_model(spec: ModelSpec, settings: LoadOptions, device: Any, dtype: Any) -> Any:
    """``from_pretrained`` (a local directory or a hub id), quantized while loading for the
    torchao and bitsandbytes ``--low-bit`` kinds, through ipex-llm for the others."""
    source = spec.source or spec.name
    if settings.low_bit and low_bit_backend(settings.low_bit) == "ipex-llm":
        model = load_ipex_llm_model(spec.source, settings.low_bit, settings.trust_remote_code)
        return model.to(device)
    from transformers import AutoConfig

    offline = _offline_kwargs(spec)
    try:
        config = AutoConfig.from_pretrained(
            source, trust_remote_code=settings.trust_remote_code, **offline
        )
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot load model {source!r}: {_first_line(exc)}") from None
    kwargs: dict[str, Any] = {**offline, **_model_kwargs(settings)}
    if settings.low_bit:  # torchao or bitsandbytes: quantized while loading
        kwargs["quantization_config"] = quantization_config(settings.low_bit, dtype)
        kwargs["device_map"] = str(device)
    try:
        model = _auto_class(config).from_pretrained(
            source,
            trust_remote_code=settings.trust_remote_code,
            **kwargs,
            **dtype_kwargs(dtype),
        )
    except OSError as exc:
        raise UsageError(f"cannot load model {source!r}: {_first_line(exc)}") from None
    return model if settings.low_bit else model.to(device)


def _finish(
    model: Any, spec: ModelSpec, settings: LoadOptions, placement: Placement, dtype: Any,
    notes: list[str],
) -> Any:  # fmt: skip
    """Quantize built weights (torchao), eval mode, ``--ipex``; notes say what was done."""
    if settings.low_bit and spec.kind != "pretrained":
        # torchao only (checked up front): quantize the weights just built
        from torchao.quantization import quantize_

        quantize_(model, torchao_config(settings.low_bit))
    if settings.low_bit:
        notes.append(
            f"--low-bit {settings.low_bit} ({low_bit_backend(settings.low_bit)}): "
            f"{quantized_weights(model)} weight tensors quantized"
        )
    model.eval()
    if getattr(settings, "optimize_model", False):
        model = _ipex_llm_optimize(model, settings.low_bit)
        notes.append(f"ipex-llm optimize_model (low_bit {settings.low_bit}) applied")
    if settings.ipex:
        model = _apply_ipex(model, dtype, placement.device)
        notes.append("ipex.llm.optimize applied")
    return model


def load_on_device(spec: ModelSpec, settings: LoadOptions, placement: Placement) -> LoadedModel:
    """Load (or build) the whole model of ``spec`` onto ``placement.device`` and time it
    (``load_time_s``, seconds, device synced). ``settings.tp`` is not looked at: this is the
    plain loader that tensor parallelism builds on. Raises :class:`UsageError` when the model
    cannot be found or read."""
    device = placement.device
    dtype = resolve_dtype(settings.dtype, device)
    notes: list[str] = []
    t0 = time.perf_counter()
    if spec.kind == "embedded":
        model, tokenizer = _embedded_model(settings, device, dtype)
    elif spec.kind in ("preset", "config"):
        model, tokenizer = _random_weights_model(spec, settings, device, dtype)
    else:
        model = _pretrained_model(spec, settings, device, dtype)
        tokenizer = load_tokenizer(
            spec.source or spec.name, settings.trust_remote_code, spec.offline
        )
        if tokenizer is None:
            notes.append(_NO_TOKENIZER)
    model = _finish(model, spec, settings, placement, dtype, notes)
    placement.sync()
    load_time = time.perf_counter() - t0
    return LoadedModel(spec, model, tokenizer, device, dtype, load_time, settings.low_bit, notes)


# -- Intel Extension for PyTorch -----------------------------------------------------------------
def _apply_ipex(model: Any, dtype: Any, device: Any) -> Any:
    try:
        import intel_extension_for_pytorch as ipex
    except ImportError:
        raise UsageError(_IPEX_MISSING) from None
    return ipex.llm.optimize(model, dtype=dtype, device=device.type, inplace=True)


def _ipex_llm_optimize(model: Any, low_bit: str | None) -> Any:
    """ipex-llm's ``optimize_model`` (all-in-one's ``optimize_model`` test_api)."""
    try:
        from ipex_llm import optimize_model
    except ImportError:
        raise UsageError(
            "test_api optimize_model needs ipex-llm, which is not installed (it runs beside "
            "transformers 4.37: see noxfile.py, stack 4.37-ipex-llm)"
        ) from None
    return optimize_model(model, low_bit=low_bit or "sym_int4")


def check_ipex_available() -> None:
    """Raise :class:`UsageError` early when ``--ipex`` was asked for without IPEX installed."""
    import importlib.util

    if importlib.util.find_spec("intel_extension_for_pytorch") is None:
        raise UsageError(_IPEX_MISSING)


def tokenizer_and_context(spec: ModelSpec, settings: LoadOptions) -> tuple[Any, int | None, int]:
    """``(tokenizer, context length, vocabulary size)`` of ``spec`` without building its
    weights: what a workload's pre-flight check needs (``None`` where there is none)."""
    if spec.kind == "embedded":
        from ... import tiny

        config, tokenizer = tiny.tiny_llama_config(**_overrides(settings)), tiny.build_tokenizer()
    elif spec.kind in ("preset", "config"):
        config, tokenizer = _random_config(spec, settings)
    else:
        from transformers import AutoConfig

        source = spec.source or spec.name
        try:
            config = AutoConfig.from_pretrained(
                source, trust_remote_code=settings.trust_remote_code, **_offline_kwargs(spec)
            )
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot load model {source!r}: {_first_line(exc)}") from None
        tokenizer = load_tokenizer(source, settings.trust_remote_code, spec.offline)
    context = None
    if not getattr(config, "is_encoder_decoder", False):
        for key in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
            value = getattr(config, key, None)
            if isinstance(value, int) and value > 0:
                context = value
                break
    return tokenizer, context, int(getattr(config, "vocab_size", 0) or 32000)
