"""The benchmark sweep behind ``streambench run``: load a model, build prompts of exactly N tokens,
run warm-ups and trials of ``model.generate(streamer=TimingStreamer)`` for every
(input/output length x batch size) configuration, and turn each into a result entry.

Everything here works on plain data that :mod:`streambench.report` writes (see
``docs/results-schema.md``): a *configuration entry* is a dict with ``config``, ``status``,
``aggregates``, ``trials`` (one :meth:`RunResult.to_dict` per measured run) and friends.

Timing reference: every run is marked with :meth:`TimingStreamer.mark_start` right before
``generate()``, so ``first_token_s`` counts from the ``generate()`` call (input preparation and,
for encoder-decoder models, the encoder included; that part alone is ``pre_prompt_s``).

torch and transformers are imported inside the functions, so ``streambench --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UsageError, describe_exception  # UsageError re-exported (its old home)

__all__ = [
    "EMBEDDED_MODEL",
    "ConfigurationError",
    "LoadedModel",
    "ModelSpec",
    "RankContext",
    "SweepSettings",
    "UsageError",
    "build_prompt",
    "load_model",
    "parse_in_out",
    "parse_int_list",
    "resolve_model_spec",
    "run_configuration",
]

#: name shown for the embedded default model (``streambench run`` without MODEL)
EMBEDDED_MODEL = "streambench/tiny-llama"

#: text repeated and cut to build prompts of exactly N tokens (any tokenizer)
PROMPT_TEXT = (
    "Once upon a time, in a small town by the sea, there lived an old clockmaker who repaired "
    "every clock the townspeople brought him. Each morning he opened his shop at seven, swept "
    "the floor, wound the great pendulum clock by the door and waited for the first customer. "
    "One winter a girl arrived with a pocket watch that had stopped at a quarter past three, "
    "and she asked him whether time itself could be repaired. "
)

DTYPES = ("auto", "float32", "float16", "bfloat16")


class ConfigurationError(RuntimeError):
    """One configuration of the sweep cannot run (e.g. a prompt longer than the context)."""


# -- parsing ------------------------------------------------------------------------------------
def parse_in_out(text: str | list[Any], where: str = "--in-out") -> list[tuple[int, int]]:
    """``"32-32,1024-128"`` (or a list of ``"32-32"`` strings) -> ``[(32, 32), (1024, 128)]``;
    token counts bounded (:data:`streambench.config.BOUNDS`)."""
    from .config import parse_in_out_text

    return parse_in_out_text(text, where)


def parse_int_list(text: Any, what: str, minimum: int = 1) -> list[int]:
    """``"1,4"`` / ``4`` / ``[1, 4]`` -> ``[1, 4]``; each value ``>= minimum``."""
    items = text if isinstance(text, (list, tuple)) else str(text).split(",")
    out: list[int] = []
    for raw in items:
        item = str(raw).strip()
        if not item:
            continue
        try:
            value = int(item)
        except ValueError:
            raise UsageError(f"{what}: {item!r} is not a whole number") from None
        if value < minimum:
            raise UsageError(f"{what}: {value} is below {minimum}")
        out.append(value)
    if not out:
        raise UsageError(f"{what}: no value given")
    return out


# -- what to benchmark ---------------------------------------------------------------------------
@dataclass
class ModelSpec:
    """Which model to load and how.

    ``kind``: ``"embedded"`` (the bundled tiny Llama, built in memory), ``"pretrained"`` (a local
    directory or hub id, ``from_pretrained``), ``"preset"`` (a bundled shape preset, random
    weights) or ``"config"`` (a local config.json or directory, random weights).
    """

    name: str
    kind: str
    source: str | None = None
    #: load from the local cache only (a hub id already downloaded, hub unreachable)
    offline: bool = False

    @property
    def local_directory(self) -> str | None:
        """The directory this model is read from, when it is a local one."""
        if self.kind == "pretrained" and self.source and Path(self.source).is_dir():
            return self.source
        return None


def hub_cache_directory() -> str:
    """The Hugging Face hub cache (``HF_HUB_CACHE``, ``HF_HOME/hub``, ``~/.cache/...``), found
    without importing huggingface_hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface"
    )
    return os.path.join(home, "hub")


def protected_directories(
    specs: list[ModelSpec], local_model_hub: str | None = None
) -> list[tuple[str, str]]:
    """``(what, path)`` pairs (directories, or a config file) that a run reads and no output may
    be written into."""
    out = [("model", d) for d in (s.local_directory for s in specs) if d]
    # random weights from a config: only that file is read (and maybe its tokenizer beside it)
    out += [("model config", s.source) for s in specs if s.kind == "config" and s.source]
    if local_model_hub:
        out.append(("local_model_hub", local_model_hub))
    out.append(("Hugging Face cache", hub_cache_directory()))
    return out


def _hub_host() -> tuple[str, int]:
    from urllib.parse import urlsplit

    url = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        port = url.port
    except ValueError:
        port = None
    return url.hostname or "huggingface.co", port or (443 if url.scheme != "http" else 80)


def _offline_env() -> bool:
    return any(
        os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
        for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def check_hub_models(specs: list[ModelSpec], probe_timeout_s: float = 3.0) -> None:
    """Fail fast, in one line, for a hub id that is neither in the local cache nor reachable
    (instead of minutes of download retries). A cached model with the hub unreachable (or
    ``HF_HUB_OFFLINE=1``) is loaded from the cache only."""
    import socket

    hub_ids = [s for s in specs if s.kind == "pretrained" and s.local_directory is None]
    if not hub_ids:
        return
    reachable: bool | None = None if not _offline_env() else False
    for spec in hub_ids:
        cached = _in_hub_cache(spec.source or spec.name)
        if reachable is None:
            try:
                socket.create_connection(_hub_host(), timeout=probe_timeout_s).close()
                reachable = True
            except OSError:
                reachable = False
        if reachable:
            continue
        if cached:
            spec.offline = True
            continue
        why = "HF_HUB_OFFLINE is set" if _offline_env() else f"{_hub_host()[0]} is unreachable"
        raise UsageError(
            f"model {spec.name!r} is not a local directory nor in the Hugging Face cache, and "
            f"{why}: download it where there is network, or pass a local directory"
        )


def _in_hub_cache(repo_id: str) -> bool:
    folder = Path(hub_cache_directory()) / ("models--" + repo_id.replace("/", "--"))
    return any(folder.glob("snapshots/*/config.json"))


def _looks_like_path(text: str) -> bool:
    return (
        text.startswith((".", "/", "~", "\\"))
        or text.endswith(("/", ".json"))
        or text.count("/") > 1
        or (os.sep != "/" and os.sep in text)
    )


def resolve_model_spec(
    model: str | None, random_weights: bool = False, local_model_hub: str | None = None
) -> ModelSpec:
    """Decide what ``MODEL`` means; raises :class:`UsageError` for a path that does not exist."""
    from .presets import PRESETS

    if model is None or model.strip() == "":
        return ModelSpec(EMBEDDED_MODEL, "embedded")
    model = model.strip()
    if local_model_hub:
        hub = Path(local_model_hub).expanduser()
        if not hub.is_dir():
            raise UsageError(f"local_model_hub {local_model_hub!r} is not a directory")
        candidate = hub / model.rstrip("/").split("/")[-1]
        if not candidate.exists():
            raise UsageError(
                f"model {model!r} not found in local_model_hub: {candidate} does not exist"
            )
        return resolve_model_spec(str(candidate), random_weights)
    path = Path(model).expanduser()
    if random_weights:
        if model.lower() in PRESETS and not path.exists():
            return ModelSpec(model.lower(), "preset", model.lower())
        if path.is_dir():
            if not (path / "config.json").is_file():
                raise UsageError(f"{model}: no config.json in this directory")
            return ModelSpec(path.name, "config", str(path / "config.json"))
        if path.is_file():
            return ModelSpec(path.stem, "config", str(path))
        raise UsageError(
            f"--random-weights {model!r}: neither a local config (directory or .json file) nor a "
            f"bundled preset ({', '.join(sorted(PRESETS))})"
        )
    if path.exists():
        if not path.is_dir():
            raise UsageError(f"model path {model!r} is not a directory")
        if not (path / "config.json").is_file():
            raise UsageError(f"model directory {model!r} has no config.json")
        return ModelSpec(path.name, "pretrained", str(path))
    if _looks_like_path(model):
        raise UsageError(f"model path {model!r} does not exist")
    if model.lower() in PRESETS:
        raise UsageError(f"{model!r} is a shape preset: add --random-weights to benchmark it")
    return ModelSpec(model, "pretrained", model)  # a hub id


@dataclass
class SweepSettings:
    """Everything that applies to every configuration of a sweep."""

    models: list[ModelSpec]
    in_out: list[tuple[int, int]]
    batch_sizes: list[int]
    warmup: int = 1
    trials: int = 3
    device: str = "auto"
    dtype: str = "auto"
    num_beams: int = 1
    low_bit: str | None = None
    trust_remote_code: bool = False
    ipex: bool = False
    num_layers: int | None = None
    seed: int = 0
    verbose: bool = False
    tp: str = "none"  # tensor parallelism: none | transformers | deepspeed

    @property
    def configurations_per_model(self) -> int:
        return len(self.in_out) * len(self.batch_sizes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "models": [m.name for m in self.models],
            "in_out": [f"{i}-{o}" for i, o in self.in_out],
            "batch_sizes": list(self.batch_sizes),
            "warmup": self.warmup,
            "trials": self.trials,
            "device": self.device,
            "dtype": self.dtype,
            "num_beams": self.num_beams,
            "low_bit": self.low_bit,
            "trust_remote_code": self.trust_remote_code,
            "ipex": self.ipex,
            "num_layers": self.num_layers,
            "seed": self.seed,
            "tp": self.tp,
        }


@dataclass
class RankContext:
    """Where this process stands in a distributed run (``torch.distributed``; rank 0 of 1 when
    not distributed). Only the *writer* (rank 0) prints tables and writes result files.

    Multi-rank support (torchrun / deepspeed) plugs in here: :meth:`gather` receives this rank's
    configuration entry and returns what the writer records (by default the entry itself).
    """

    rank: int = 0
    world_size: int = 1
    gather: Callable[[dict[str, Any]], dict[str, Any]] = field(default=lambda entry: entry)

    @property
    def is_writer(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: Any = None) -> RankContext:
        """Rank and world size from the launcher's environment (``RANK``/``WORLD_SIZE``). With
        several ranks, the process group is initialized and :meth:`gather` collects every
        rank's runs into the writer's entry (:func:`streambench.distributed.gather_entry`)."""
        try:
            ctx = cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)))
        except ValueError:
            return cls()
        if ctx.world_size > 1:
            from .distributed import gather_entry, init_distributed, rank_device

            init_distributed(rank_device(device) if device is not None else None)
            ctx.gather = gather_entry
        return ctx


# -- loading -------------------------------------------------------------------------------------
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

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def is_encoder_decoder(self) -> bool:
        return bool(getattr(self.model.config, "is_encoder_decoder", False))

    @property
    def context_length(self) -> int | None:
        """Longest sequence the model accepts (``max_position_embeddings`` or equivalent)."""
        cfg = self.model.config
        if self.is_encoder_decoder:
            return None  # relative positions (T5 & co.): no hard limit in the config
        for key in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
            value = getattr(cfg, key, None)
            if isinstance(value, int) and value > 0:
                return value
        return None


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


def _dtype_kwargs(dtype: Any) -> dict[str, Any]:
    """``dtype=`` on transformers >= 4.56 (where ``torch_dtype`` is deprecated), else
    ``torch_dtype=``."""
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}


def _auto_class(config: Any) -> Any:
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    return (
        AutoModelForSeq2SeqLM
        if getattr(config, "is_encoder_decoder", False)
        else (AutoModelForCausalLM)
    )


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


def _torchao_config(low_bit: str) -> Any:
    import torchao.quantization as q

    return getattr(q, TORCHAO_KINDS[low_bit])()


def _quantization_config(low_bit: str, dtype: Any) -> Any:
    """The ``quantization_config=`` for ``from_pretrained`` (torchao and bitsandbytes kinds)."""
    if low_bit_backend(low_bit) == "torchao":
        from transformers import TorchAoConfig

        return TorchAoConfig(_torchao_config(low_bit))
    from transformers import BitsAndBytesConfig

    if low_bit == "bnb_int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type=low_bit[4:], bnb_4bit_compute_dtype=dtype
    )


def _low_bit_model(spec: ModelSpec, low_bit: str, settings: SweepSettings, dtype: Any) -> Any:
    """Load ``spec`` in ``low_bit`` (e.g. ``sym_int4``) through ipex-llm."""
    try:
        from ipex_llm.transformers import AutoModelForCausalLM as IpexAuto
    except ImportError:
        raise UsageError(_low_bit_missing(low_bit)) from None
    kwargs: dict[str, Any] = {"trust_remote_code": settings.trust_remote_code}
    if low_bit == "sym_int4":
        kwargs["load_in_4bit"] = True
    else:
        kwargs["load_in_low_bit"] = low_bit
    return IpexAuto.from_pretrained(spec.source, **kwargs)


def load_model(spec: ModelSpec, settings: SweepSettings, device: Any) -> LoadedModel:
    """Load (or build) the model of ``spec`` onto ``device``; time it. Raises
    :class:`UsageError` when the model cannot be found or read."""
    import torch

    from . import tiny
    from .distributed import rank_device
    from .presets import config_from_dict, load_preset

    device = rank_device(device)  # under a launcher: cuda -> cuda:LOCAL_RANK
    if settings.tp != "none":
        import dataclasses

        from .distributed import load_model_tensor_parallel

        plain = dataclasses.replace(settings, tp="none")
        return load_model_tensor_parallel(
            spec, settings, device, settings.tp, lambda s, _, d: load_model(s, plain, d)
        )
    dtype = resolve_dtype(settings.dtype, device)
    overrides: dict[str, Any] = {}
    if settings.num_layers is not None:
        overrides["num_hidden_layers"] = settings.num_layers
    notes: list[str] = []
    t0 = time.perf_counter()
    tokenizer = None
    if spec.kind == "embedded":
        model = tiny.build_model(tiny.tiny_llama_config(**overrides), seed=settings.seed)
        tokenizer = tiny.build_tokenizer()
        model = model.to(device=device, dtype=dtype)
    elif spec.kind in ("preset", "config"):
        if spec.kind == "preset":
            config = load_preset(spec.source or spec.name, **overrides)
        else:
            import json

            try:
                data = json.loads(Path(spec.source or "").read_text())
            except (OSError, ValueError) as exc:
                raise UsageError(f"cannot read model config {spec.source}: {exc}") from None
            try:
                config = config_from_dict(data, **overrides)
            except (ValueError, KeyError) as exc:
                raise UsageError(f"model config {spec.source}: {exc}") from None
            tok_dir = Path(spec.source or "").parent
            if (tok_dir / "tokenizer_config.json").is_file():
                tokenizer = _load_tokenizer(str(tok_dir), settings.trust_remote_code)
        torch.manual_seed(settings.seed)
        with torch.device(device):
            model = _auto_class(config).from_config(
                config, trust_remote_code=settings.trust_remote_code, **_dtype_kwargs(dtype)
            )
        model = model.to(dtype=dtype).eval()
    else:
        source = spec.source or spec.name
        if settings.low_bit and low_bit_backend(settings.low_bit) == "ipex-llm":
            model = _low_bit_model(spec, settings.low_bit, settings, dtype)
            model = model.to(device)
        else:
            from transformers import AutoConfig

            try:
                config = AutoConfig.from_pretrained(
                    source, trust_remote_code=settings.trust_remote_code, **_offline_kwargs(spec)
                )
            except (OSError, ValueError) as exc:
                raise UsageError(f"cannot load model {source!r}: {_first_line(exc)}") from None
            kwargs: dict[str, Any] = {
                "trust_remote_code": settings.trust_remote_code,
                **_offline_kwargs(spec),
            }
            if settings.low_bit:  # torchao or bitsandbytes: quantized while loading
                kwargs["quantization_config"] = _quantization_config(settings.low_bit, dtype)
                kwargs["device_map"] = str(device)
            try:
                model = _auto_class(config).from_pretrained(
                    source, **kwargs, **_dtype_kwargs(dtype)
                )
            except OSError as exc:
                raise UsageError(f"cannot load model {source!r}: {_first_line(exc)}") from None
            if not settings.low_bit:
                model = model.to(device)
        tokenizer = _load_tokenizer(source, settings.trust_remote_code, spec.offline)
        if tokenizer is None:
            notes.append("no tokenizer found: prompts are random token ids")
    if settings.low_bit and spec.kind != "pretrained":
        # torchao only (checked up front): quantize the weights just built
        from torchao.quantization import quantize_

        quantize_(model, _torchao_config(settings.low_bit))
    if settings.low_bit:
        notes.append(
            f"--low-bit {settings.low_bit} ({low_bit_backend(settings.low_bit)}): "
            f"{_quantized_weights(model)} weight tensors quantized"
        )
    model.eval()
    if settings.ipex:
        model = _apply_ipex(model, dtype, device)
        notes.append("ipex.llm.optimize applied")
    if device.type != "cpu":
        from .devices import get_backend

        sync = get_backend(device, memory=False).sync
        if sync is not None:
            sync()
    load_time = time.perf_counter() - t0
    return LoadedModel(spec, model, tokenizer, device, dtype, load_time, settings.low_bit, notes)


def _quantized_weights(model: Any) -> int:
    """How many modules hold a weight that is not a plain tensor (a quantized tensor subclass of
    torchao, bitsandbytes' Params4bit/Int8Params, ipex-llm's FP4Params ...)."""
    plain = {"Parameter", "Tensor", "NoneType"}
    return sum(1 for m in model.modules() if type(getattr(m, "weight", None)).__name__ not in plain)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _offline_kwargs(spec: ModelSpec) -> dict[str, Any]:
    return {"local_files_only": True} if spec.offline else {}


def _load_tokenizer(source: str, trust_remote_code: bool, offline: bool = False) -> Any:
    from transformers import AutoTokenizer

    extra = {"local_files_only": True} if offline else {}
    try:
        return AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code, **extra)
    except (OSError, ValueError, TypeError):
        return None


def _apply_ipex(model: Any, dtype: Any, device: Any) -> Any:
    try:
        import intel_extension_for_pytorch as ipex
    except ImportError:
        raise UsageError(
            "--ipex needs intel-extension-for-pytorch, which is not installed: pip install "
            "intel-extension-for-pytorch with its matching torch (IPEX 2.8 needs torch 2.8.x; "
            "see README, 'Intel Extension for PyTorch')"
        ) from None
    return ipex.llm.optimize(model, dtype=dtype, device=device.type, inplace=True)


def check_ipex_available() -> None:
    """Raise :class:`UsageError` early when ``--ipex`` was asked for without IPEX installed."""
    import importlib.util

    if importlib.util.find_spec("intel_extension_for_pytorch") is None:
        raise UsageError(
            "--ipex needs intel-extension-for-pytorch, which is not installed: pip install "
            "intel-extension-for-pytorch with its matching torch (IPEX 2.8 needs torch 2.8.x; "
            "see README, 'Intel Extension for PyTorch')"
        )


def _low_bit_missing(low_bit: str) -> str:
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
        raise UsageError(_low_bit_missing(low_bit))
    if random_weights and backend != "torchao":
        raise UsageError(
            f"--low-bit {low_bit} loads pretrained weights; with --random-weights or the "
            f"embedded model use a torchao kind ({', '.join(TORCHAO_KINDS)})"
        )


def beam_wrapper_class() -> Any:
    """``streambench.BenchmarkWrapper`` (times beam search through a logits processor), or a
    :class:`UsageError` saying that this install lacks it."""
    try:
        from .wrapper import BenchmarkWrapper  # type: ignore[import-not-found]
    except ImportError:
        raise UsageError(
            "--num-beams > 1: transformers cannot stream beam search, and timing it needs "
            "streambench.BenchmarkWrapper, which this install of streambench does not have yet; "
            "use --num-beams 1"
        ) from None
    return BenchmarkWrapper


# -- prompts -------------------------------------------------------------------------------------
def build_prompt(loaded: LoadedModel, n_tokens: int, batch_size: int, seed: int = 0) -> Any:
    """A ``[batch_size, n_tokens]`` tensor of input ids: exactly ``n_tokens`` per row.

    With a tokenizer: :data:`PROMPT_TEXT`, repeated as needed, tokenized (with the tokenizer's
    special tokens, e.g. BOS) and cut to ``n_tokens`` ids. Without one: random ids of the vocabulary
    (seeded). Every row is the same prompt, so no padding is needed.
    """
    import torch

    tok = loaded.tokenizer
    if tok is not None:
        reps = 1
        while True:  # double the text until it has enough tokens
            ids = list(tok(PROMPT_TEXT * reps).input_ids)
            if len(ids) >= n_tokens:
                break
            reps *= 2
        row = ids[:n_tokens]
    else:
        vocab = int(getattr(loaded.config, "vocab_size", 0) or 32000)
        gen = torch.Generator().manual_seed(seed)
        low = min(10, vocab - 1)
        row = torch.randint(low, vocab, (n_tokens,), generator=gen).tolist()
    return torch.tensor([row] * batch_size, dtype=torch.long)


def _pad_token_id(loaded: LoadedModel) -> int:
    tok = loaded.tokenizer
    for value in (
        getattr(tok, "pad_token_id", None) if tok is not None else None,
        getattr(loaded.model.generation_config, "pad_token_id", None),
        getattr(loaded.config, "pad_token_id", None),
        getattr(tok, "eos_token_id", None) if tok is not None else None,
        getattr(loaded.config, "eos_token_id", None),
    ):
        if isinstance(value, list):
            value = value[0] if value else None
        if isinstance(value, int):
            return value
    return 0


# -- running one configuration -------------------------------------------------------------------
def configuration_id(model: str, n_in: int, n_out: int, batch: int, beams: int = 1) -> str:
    """Stable key of a configuration, e.g. ``"tiny-llama|32-32|bs1"`` (``|beams4`` when > 1)."""
    key = f"{model}|{n_in}-{n_out}|bs{batch}"
    return key + (f"|beams{beams}" if beams > 1 else "")


def new_entry(
    settings: SweepSettings, model_name: str, n_in: int, n_out: int, batch: int
) -> dict[str, Any]:
    """An empty configuration entry (status ``"pending"``) for ``docs/results-schema.md``."""
    return {
        "id": configuration_id(model_name, n_in, n_out, batch, settings.num_beams),
        "label": f"{model_name} {n_in}-{n_out} bs{batch}"
        + (f" beams{settings.num_beams}" if settings.num_beams > 1 else ""),
        "config": {
            "model": model_name,
            "input_tokens": n_in,
            "output_tokens": n_out,
            "batch_size": batch,
            "num_beams": settings.num_beams,
            "low_bit": settings.low_bit,
            "dtype": settings.dtype,
            "device": settings.device,
            "warmup": settings.warmup,
            "trials": settings.trials,
        },
        "status": "pending",
        "error": None,
        "actual_input_tokens": None,
        "actual_output_tokens": None,
        "model_loading_time_s": None,
        "started_at": None,
        "duration_s": None,
        "aggregates": None,
        "warmup_runs": [],
        "trials": [],
    }


def run_configuration(
    loaded: LoadedModel,
    entry: dict[str, Any],
    settings: SweepSettings,
    on_run: Callable[[int, bool], None] | None = None,
    print_fn: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the warm-ups and trials of one configuration and fill ``entry`` in place.

    ``on_run(i, is_warmup)`` is called after each ``generate()``. Raises
    :class:`ConfigurationError` when the configuration cannot run (the entry then says why);
    any exception of ``generate()`` propagates after the entry was marked ``"failed"``.
    """
    import datetime

    import torch

    from .stats import aggregate, describe
    from .streamer import TimingStreamer

    cfg = entry["config"]
    n_in, n_out, batch = cfg["input_tokens"], cfg["output_tokens"], cfg["batch_size"]
    entry["started_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    entry["model_loading_time_s"] = loaded.load_time_s
    entry["config"]["dtype"] = str(loaded.dtype).replace("torch.", "")
    entry["config"]["device"] = str(loaded.device)
    t0 = time.perf_counter()
    try:
        limit = loaded.context_length
        if limit is not None and n_in + n_out > limit:
            raise ConfigurationError(
                f"prompt of {n_in} tokens + {n_out} new tokens = {n_in + n_out} exceeds the "
                f"model's context of {limit} tokens (max_position_embeddings)"
            )
        input_ids = build_prompt(loaded, n_in, batch, seed=settings.seed).to(loaded.device)
        attention_mask = torch.ones_like(input_ids)
        streamer = TimingStreamer(
            loaded.device, verbose=settings.verbose, do_print=settings.verbose, print_fn=print_fn
        )
        gen_kwargs: dict[str, Any] = dict(
            attention_mask=attention_mask,
            max_new_tokens=n_out,
            min_new_tokens=n_out,
            do_sample=False,
            num_beams=settings.num_beams,
            pad_token_id=_pad_token_id(loaded),
        )
        if settings.num_beams > 1:
            # Beam search cannot be streamed: BenchmarkWrapper times it through a logits
            # processor feeding the same timing core (and marks the start of each call).
            timer: Any = beam_wrapper_class()(
                loaded.model,
                device=loaded.device,
                do_print=settings.verbose,
                verbose=settings.verbose,
                print_fn=print_fn,
            )
            generate = timer.generate
        else:
            timer = streamer
            gen_kwargs["streamer"] = streamer
            generate = loaded.model.generate
        total = settings.warmup + settings.trials
        with torch.inference_mode():
            for i in range(total):
                if settings.verbose:
                    kind = "warm-up" if i < settings.warmup else "trial"
                    n = i + 1 if i < settings.warmup else i + 1 - settings.warmup
                    of = settings.warmup if i < settings.warmup else settings.trials
                    print_fn(f"-- {entry['label']}: {kind} {n}/{of}")
                if timer is streamer:
                    streamer.mark_start()
                generate(input_ids, **gen_kwargs)
                if on_run is not None:
                    on_run(i, i < settings.warmup)
        runs = timer.runs
        warm, measured = runs[: settings.warmup], runs[settings.warmup :]
        bad = [r for r in measured if not r.complete or not r.has_tokens]
        if bad:
            raise ConfigurationError(
                f"{len(bad)} of {len(measured)} trials produced no timed token (beam search or a "
                "generate() that skipped the streamer)"
            )
        summary = aggregate(runs, warmup=settings.warmup)
        aggregates = summary.to_dict()
        pre = describe(r.pre_prompt_s for r in measured if r.pre_prompt_s is not None)
        aggregates["pre_prompt_s"] = pre.to_dict() if pre else None
        aggregates["memory_kind"] = measured[0].memory_kind
        aggregates["prefill_tokens_per_s"] = _stats_dict(
            describe(r.prefill_tokens_per_s for r in measured if r.prefill_tokens_per_s)
        )
        aggregates["decode_throughput_tokens_per_s"] = _stats_dict(
            describe(
                r.decode_throughput_tokens_per_s
                for r in measured
                if r.decode_throughput_tokens_per_s
            )
        )
        entry["actual_input_tokens"] = (
            int(input_ids.shape[-1]) if loaded.is_encoder_decoder else measured[-1].prompt_tokens
        )
        entry["actual_output_tokens"] = measured[-1].new_tokens
        entry["encoder_decoder"] = loaded.is_encoder_decoder
        entry["aggregates"] = aggregates
        entry["warmup_runs"] = [r.to_dict(per_token=False) for r in warm]
        entry["trials"] = [r.to_dict() for r in measured]
        entry["status"] = "ok"
    except KeyboardInterrupt as exc:
        entry["status"] = "interrupted"
        entry["error"] = f"interrupted ({exc or 'SIGINT'}) before this configuration finished"
        raise
    except ConfigurationError as exc:
        entry["status"] = "failed"
        entry["error"] = str(exc)
        raise
    except Exception as exc:
        entry["status"] = "failed"
        entry["error"] = describe_exception(exc).splitlines()[0]
        raise
    finally:
        entry["duration_s"] = time.perf_counter() - t0
    return entry


def _stats_dict(stats: Any) -> dict[str, Any] | None:
    return stats.to_dict() if stats is not None else None


def iter_configurations(settings: SweepSettings) -> Iterator[tuple[ModelSpec, int, int, int]]:
    """(model, input tokens, output tokens, batch size) in sweep order: model, then pair, then
    batch size."""
    for spec in settings.models:
        for n_in, n_out in settings.in_out:
            for batch in settings.batch_sizes:
                yield spec, n_in, n_out, batch


@contextlib.contextmanager
def quiet_transformers(verbose: bool) -> Iterator[None]:
    """Silence transformers' generation warnings unless ``verbose``."""
    if verbose:
        yield
        return
    import warnings

    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # "Loading weights" bars would cut through the tables
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()
