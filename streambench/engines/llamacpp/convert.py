"""A transformers Llama-like model as one GGUF file for llama.cpp, converted once into a cache.

Written here with the ``gguf`` package's :class:`gguf.GGUFWriter`, not with llama.cpp's
``convert_hf_to_gguf.py`` (which refuses tokenizers it does not know): streambench tokenizes with
the model's own tokenizer and hands llama.cpp token ids, so the GGUF's tokenizer section is the
minimum llama.cpp loads (an SPM-type list of the model's token strings, all scores 0, special
tokens marked as control, the BOS/EOS/PAD ids). llama.cpp's own tokenizer of such a file is not
the model's; nothing here uses it.

Architectures (``config.model_type``): ``llama`` and ``mistral`` (GGUF architecture ``llama``,
whose rotary embedding pairs neighbouring dimensions, so the q/k projections are permuted from
transformers' half-split layout as llama.cpp's converter does; Mistral's sliding window is not
written, which is exact for sequences shorter than the window), and ``qwen2`` (GGUF ``qwen2``,
half-split rotary embedding, q/k/v biases). Rotary scaling: none, ``linear``, ``llama3``.

Weight formats (``--low-bit``; the names other engines use map to the GGUF format that means
the same; without ``--low-bit``, ``--dtype`` float16/bfloat16 gives ``f16``, else ``f32``):

============================  =========  =================================================
``--low-bit``                 GGUF       how
============================  =========  =================================================
``f32``, ``fp32``             F32        written directly
``f16``, ``fp16``             F16        written directly (1-D norms stay F32)
``q8_0``, ``int8``,           Q8_0       8-bit blocks of 32, one scale each (symmetric):
``sym_int8``                             llama.cpp's ``llama_model_quantize`` of the F32/F16
``q4_0``, ``int4``,           Q4_0       4-bit blocks of 32, one scale each (symmetric):
``sym_int4``                             ``llama_model_quantize``
``q4_k_m``                    Q4_K_M     llama.cpp's k-quant mix: ``llama_model_quantize``
============================  =========  =================================================

The cache (``--export-dir``, default ``~/.cache/streambench/llama.cpp``) holds one
``<model>-<format>-<hash>.gguf`` per model, format and stack (gguf, llama-cpp-python and
transformers versions, this converter's version), keyed like the OpenVINO export cache
(:func:`streambench.engines.export.cache_key`): a sweep converts once, a changed model converts
again. A file is written beside its final name and renamed when complete: never half-written.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import UsageError

__all__ = [
    "DEFAULT_CACHE_DIR",
    "FORMATS",
    "ConversionError",
    "Converted",
    "convert_directory",
    "ensure_gguf",
    "gguf_format",
]

DEFAULT_CACHE_DIR = "~/.cache/streambench/llama.cpp"
#: ``--low-bit`` -> GGUF weight format (see the module doc's table)
FORMATS: dict[str, str] = {
    "f32": "f32",
    "fp32": "f32",
    "f16": "f16",
    "fp16": "f16",
    "q8_0": "q8_0",
    "int8": "q8_0",
    "sym_int8": "q8_0",
    "q4_0": "q4_0",
    "int4": "q4_0",
    "sym_int4": "q4_0",
    "q4_k_m": "q4_k_m",
}
#: formats made by llama.cpp's quantizer from an F32/F16 file: its ``LLAMA_FTYPE_*`` name
_QUANTIZED = {
    "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
    "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
}
#: transformers ``model_type`` -> GGUF architecture
_ARCHITECTURES = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2"}
#: bump when the files written change: the cache key holds it
_CONVERTER_VERSION = 1
#: transformers tensor name (per layer: after ``model.layers.N.``) -> GGUF name
_LAYER_TENSORS = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
_GLOBAL_TENSORS = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}


class ConversionError(UsageError):
    """A model this converter cannot write as GGUF (architecture, tensor, rotary scaling)."""


@dataclass(frozen=True)
class Converted:
    """A GGUF file ready to load: ``path``; ``weight_format`` (``None`` for a ``.gguf`` given
    as the model); ``convert_time_s`` (seconds, ``None`` when cached or given); ``cached``."""

    path: Path
    weight_format: str | None
    convert_time_s: float | None = None
    cached: bool = False


def gguf_format(low_bit: str | None, dtype: str) -> str:
    """The GGUF weight format of ``--low-bit`` (see :data:`FORMATS`), else of ``--dtype``.

    >>> gguf_format("int4", "auto"), gguf_format(None, "bfloat16"), gguf_format(None, "auto")
    ('q4_0', 'f16', 'f32')
    """
    if low_bit:
        if low_bit not in FORMATS:
            raise UsageError(
                f"--low-bit {low_bit} is not a weight format of --engine llama.cpp: use one of "
                f"{', '.join(FORMATS)}"
            )
        return FORMATS[low_bit]
    return "f16" if dtype in ("float16", "bfloat16") else "f32"


# -- the cache ----------------------------------------------------------------------------------
def _versions() -> dict[str, str]:
    from ..export import package_versions

    return {"converter": str(_CONVERTER_VERSION)} | package_versions(
        "gguf", "llama-cpp-python", "transformers"
    )


def cache_name(spec: Any, settings: Any, fmt: str) -> str:
    """The cached file's name: the model's name, the format and a hash of what it depends on."""
    from ..export import model_identity

    data = {"model": model_identity(spec, settings), "weights": fmt, **_versions()}
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in spec.name)[-40:]
    return f"{stem}-{fmt}-{digest}.gguf"


def ensure_gguf(spec: Any, settings: Any, fmt: str, cache_dir: str | None) -> Converted:
    """The GGUF file of ``spec``: as given (a ``.gguf`` MODEL), from the cache, or converted
    now (timed: ``convert_time_s``)."""
    if spec.kind == "gguf":
        return Converted(Path(str(spec.source)).resolve(), None)
    root = Path(os.path.expanduser(cache_dir or DEFAULT_CACHE_DIR)).resolve()
    target = root / cache_name(spec, settings, fmt)
    if target.is_file():
        return Converted(target, fmt, cached=True)
    try:
        root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".convert-", dir=root))
    except OSError as exc:
        raise UsageError(
            f"--export-dir {root}: cannot write the llama.cpp GGUF cache ({exc.strerror}); "
            "pass --export-dir DIR"
        ) from None
    try:
        t0 = time.perf_counter()
        source = _source_directory(spec, settings, work)
        written = work / "model.gguf"
        convert_directory(source, written, fmt, settings.trust_remote_code)
        elapsed = time.perf_counter() - t0
        os.replace(written, target)  # atomic: another process's identical file is replaced
        return Converted(target, fmt, elapsed)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _source_directory(spec: Any, settings: Any, work: Path) -> Path:
    """A local transformers directory of ``spec``: its own, the hub's snapshot, or (random
    weights) the model built as for transformers and saved into ``work``."""
    local = spec.local_directory
    if local:
        return Path(local)
    if spec.kind == "pretrained":
        from huggingface_hub import snapshot_download

        patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "tokenizer*"]
        return Path(
            snapshot_download(
                spec.source or spec.name, allow_patterns=patterns, local_files_only=spec.offline
            )
        )
    from ..export import _source

    staged, _ = _source(spec, settings, work)  # built, then saved into work/_source
    return Path(staged)


# -- conversion ---------------------------------------------------------------------------------
def convert_directory(
    source: str | Path, target: str | Path, fmt: str = "f32", trust_remote_code: bool = False
) -> Path:
    """Write the transformers model directory ``source`` to the GGUF file ``target`` in the
    GGUF format ``fmt`` (``f32``, ``f16``, ``q8_0``, ``q4_0``, ``q4_k_m``). Returns ``target``."""
    from transformers import AutoConfig

    source, target = Path(source), Path(target)
    config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code is True)
    if fmt not in _QUANTIZED:
        _write_gguf(source, config, target, fmt, trust_remote_code)
        return target
    plain = target.with_name(target.name + ".plain.gguf")
    try:  # llama.cpp quantizes from a float file: the model's own precision, then quantized
        # transformers 5 says ``dtype`` (its ``torch_dtype`` warns), 4 ``torch_dtype``
        dtype = str(getattr(config, "dtype", None) or getattr(config, "torch_dtype", ""))
        base = "f16" if dtype.endswith(("float16", "bfloat16")) else "f32"
        _write_gguf(source, config, plain, base, trust_remote_code)
        quantize(plain, target, fmt)
    finally:
        plain.unlink(missing_ok=True)
    return target


def quantize(source: Path, target: Path, fmt: str) -> None:
    """llama.cpp's ``llama_model_quantize`` of the F32/F16 GGUF ``source`` to ``fmt``."""
    try:
        import llama_cpp
    except ImportError:
        raise UsageError(
            f"--low-bit {fmt}: quantizing needs llama-cpp-python: pip install "
            "'streambench[llamacpp]', or use --low-bit f32 or f16"
        ) from None
    if not hasattr(llama_cpp, "llama_model_quantize"):
        raise UsageError(
            f"--low-bit {fmt}: this llama-cpp-python has no llama_model_quantize; use --low-bit "
            "f32 or f16, or a .gguf quantized by llama.cpp as MODEL"
        )
    from .model import quiet_llama_log

    quiet_llama_log(llama_cpp)  # its per-tensor progress is not streambench's output
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, _QUANTIZED[fmt])
    params.nthread = max(1, os.cpu_count() or 1)
    failed = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), params)
    if failed:
        raise ConversionError(f"--low-bit {fmt}: llama.cpp's quantizer failed (code {failed})")


def _architecture(config: Any) -> str:
    kind = getattr(config, "model_type", None)
    if kind not in _ARCHITECTURES:
        raise ConversionError(
            f"--engine llama.cpp converts Llama, Mistral and Qwen2 models, not {kind!r}: pass a "
            ".gguf file (llama.cpp's convert_hf_to_gguf.py) as the model"
        )
    return _ARCHITECTURES[kind]


def _rope(config: Any) -> tuple[float, dict[str, Any]]:
    """The rotary base (``rope_theta``) and scaling of ``config`` (transformers 4 and 5)."""
    params = dict(getattr(config, "rope_parameters", None) or {})
    scaling = dict(getattr(config, "rope_scaling", None) or params)
    theta = params.get("rope_theta") or getattr(config, "rope_theta", None) or 10000.0
    return float(theta), scaling


def _head_dim(config: Any) -> int:
    return int(
        getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    )


def _write_metadata(writer: Any, config: Any, arch: str, fmt: str) -> dict[str, Any]:
    """The model's hyperparameters as GGUF keys; returns the rotary scaling to write as a
    tensor (``llama3``: ``rope_freqs.weight``), else an empty dict."""
    import gguf

    heads = int(config.num_attention_heads)
    head_dim = _head_dim(config)
    writer.add_name(Path(str(getattr(config, "_name_or_path", "") or arch)).name or arch)
    writer.add_context_length(int(config.max_position_embeddings))
    writer.add_embedding_length(int(config.hidden_size))
    writer.add_block_count(int(config.num_hidden_layers))
    writer.add_feed_forward_length(int(config.intermediate_size))
    writer.add_head_count(heads)
    writer.add_head_count_kv(int(getattr(config, "num_key_value_heads", None) or heads))
    writer.add_rope_dimension_count(head_dim)
    if head_dim * heads != int(config.hidden_size):
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    theta, scaling = _rope(config)
    writer.add_rope_freq_base(theta)
    writer.add_vocab_size(int(config.vocab_size))
    ftype = gguf.LlamaFileType.ALL_F32 if fmt == "f32" else gguf.LlamaFileType.MOSTLY_F16
    writer.add_file_type(int(ftype))
    kind = scaling.get("rope_type") or scaling.get("type") or "default"
    if kind == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(scaling["factor"]))
    elif kind == "llama3":
        return scaling
    elif kind != "default":
        raise ConversionError(
            f"--engine llama.cpp: rotary scaling {kind!r} is not converted here; pass a .gguf "
            "file (llama.cpp's convert_hf_to_gguf.py) as the model"
        )
    return {}


def _llama3_rope_factors(config: Any, scaling: dict[str, Any]) -> Any:
    """Llama 3.1's per-frequency rotary factors, as llama.cpp's converter computes them."""
    import numpy as np

    theta, _ = _rope(config)
    dim = _head_dim(config)
    factor = float(scaling.get("factor", 8.0))
    low, high = (
        float(scaling.get("low_freq_factor", 1.0)),
        float(scaling.get("high_freq_factor", 4.0)),
    )
    old = float(scaling.get("original_max_position_embeddings", 8192))
    out = []
    for freq in 1.0 / (theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim)):
        wavelen = 2 * math.pi / freq
        if wavelen < old / high:
            out.append(1.0)
        elif wavelen > old / low:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.asarray(out, dtype=np.float32)


def _write_tokenizer(writer: Any, source: Path, config: Any, trust_remote_code: bool) -> None:
    """The minimal tokenizer section (see the module doc): the model's token strings (unique,
    placeholders where the tokenizer has none), scores 0, specials as control tokens."""
    import gguf

    vocab = int(config.vocab_size)
    tokens = [f"<streambench_token_{i}>" for i in range(vocab)]
    special: set[int] = set()
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code is True)
        for text, i in tok.get_vocab().items():
            if 0 <= i < vocab and text:
                tokens[i] = text
        special = {i for i in tok.all_special_ids if 0 <= i < vocab}
    except Exception:  # noqa: BLE001 - no usable tokenizer: placeholders (ids are all we use)
        pass
    seen: set[str] = set()
    for i, text in enumerate(tokens):  # llama.cpp requires unique strings
        if text in seen:
            tokens[i] = f"{text}<streambench_dup_{i}>"
        seen.add(tokens[i])
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * vocab)
    control, normal = int(gguf.TokenType.CONTROL), int(gguf.TokenType.NORMAL)
    writer.add_token_types([control if i in special else normal for i in range(vocab)])
    for key, add in (
        ("bos_token_id", writer.add_bos_token_id),
        ("eos_token_id", writer.add_eos_token_id),
        ("pad_token_id", writer.add_pad_token_id),
    ):
        value = getattr(config, key, None)
        value = value[0] if isinstance(value, (list, tuple)) and value else value
        if isinstance(value, int) and 0 <= value < vocab:
            add(value)


# -- tensors ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Tensor:
    """One GGUF tensor to write: its name, numpy shape and dtype, and how to read it."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    read: Any  # () -> numpy array of shape/dtype


def _checkpoint(source: Path) -> dict[str, tuple[tuple[int, ...], Any]]:
    """transformers tensor name -> (shape, () -> torch tensor), read lazily: safetensors (one
    file or an index), else ``pytorch_model*.bin``."""
    import torch

    index = source / "model.safetensors.index.json"
    if index.is_file() or (source / "model.safetensors").is_file():
        from safetensors import safe_open

        files = (
            sorted(set(json.loads(index.read_text())["weight_map"].values()))
            if index.is_file()
            else ["model.safetensors"]
        )
        out: dict[str, tuple[tuple[int, ...], Any]] = {}
        for file in files:
            handle = safe_open(str(source / file), framework="pt")
            for key in handle.keys():
                shape = tuple(handle.get_slice(key).get_shape())
                out[key] = (shape, lambda h=handle, k=key: h.get_tensor(k))
        return out
    bins = sorted(source.glob("pytorch_model*.bin"))
    if not bins:
        raise ConversionError(
            f"model directory {source}: no model.safetensors nor pytorch_model.bin to convert "
            "for --engine llama.cpp"
        )
    state: dict[str, Any] = {}
    for file in bins:
        state.update(torch.load(file, map_location="cpu", weights_only=True, mmap=True))
    return {k: (tuple(v.shape), lambda v=v: v) for k, v in state.items()}


def _gguf_name(name: str) -> str | None:
    """The GGUF name of a transformers tensor (``None``: not written); :class:`ConversionError`
    for a tensor this converter does not know (it would be silently dropped)."""
    if name in _GLOBAL_TENSORS:
        return _GLOBAL_TENSORS[name]
    if name.endswith("rotary_emb.inv_freq"):
        return None  # recomputed by llama.cpp from the rotary base
    parts = name.split(".", 3)
    if len(parts) == 4 and parts[:2] == ["model", "layers"] and parts[3] in _LAYER_TENSORS:
        return f"blk.{int(parts[2])}.{_LAYER_TENSORS[parts[3]]}"
    raise ConversionError(
        f"--engine llama.cpp: tensor {name!r} is not part of the Llama layout converted here; "
        "pass a .gguf file (llama.cpp's convert_hf_to_gguf.py) as the model"
    )


def _permute(weights: Any, heads: int) -> Any:
    """transformers' half-split rotary layout -> GGUF ``llama``'s interleaved one (per head),
    as llama.cpp's converter does (a bias is permuted the same way)."""
    rows = weights.shape[0]
    return (
        weights.reshape(heads, 2, rows // heads // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def _plan(source: Path, config: Any, arch: str, fmt: str) -> list[_Tensor]:
    """The tensors to write, in order, each read only when written (one in memory at a time)."""
    import torch

    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    out = []
    for name, (shape, load) in _checkpoint(source).items():
        target = _gguf_name(name)
        if target is None or (target == "output.weight" and tied):
            continue  # tied: llama.cpp reuses token_embd when output.weight is absent
        kind = target.split(".")[-2]  # blk.N.attn_q.weight -> attn_q
        permute = 0
        if arch == "llama" and kind in ("attn_q", "attn_k"):
            permute = heads if kind == "attn_q" else kv_heads
        dtype = "float16" if fmt == "f16" and len(shape) == 2 else "float32"

        def read(load: Any = load, permute: int = permute, dtype: str = dtype) -> Any:
            tensor = load().to(torch.float32)
            if permute:
                tensor = _permute(tensor, permute)
            return tensor.numpy().astype(dtype, copy=False)

        out.append(_Tensor(target, shape, dtype, read))
    if not tied and not any(t.name == "output.weight" for t in out):
        raise ConversionError(
            f"model directory {source}: no lm_head.weight and tie_word_embeddings is false"
        )
    return out


def _write_gguf(source: Path, config: Any, target: Path, fmt: str, trust_remote_code: bool) -> None:
    """``source`` as a GGUF file in ``f32`` or ``f16``, written tensor by tensor (streamed: a
    model needs no more memory than its largest tensor)."""
    import gguf
    import numpy as np

    arch = _architecture(config)
    plan = _plan(source, config, arch, fmt)
    writer = gguf.GGUFWriter(str(target), arch)
    try:
        scaling = _write_metadata(writer, config, arch, fmt)
        _write_tokenizer(writer, source, config, trust_remote_code)
        if scaling:
            factors = _llama3_rope_factors(config, scaling)
            plan.append(_Tensor("rope_freqs.weight", factors.shape, "float32", lambda: factors))
        for t in plan:
            nbytes = int(np.prod(t.shape)) * np.dtype(t.dtype).itemsize
            writer.add_tensor_info(t.name, t.shape, np.dtype(t.dtype), nbytes)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for t in plan:
            writer.write_tensor_data(np.ascontiguousarray(t.read()))
    finally:
        writer.close()
