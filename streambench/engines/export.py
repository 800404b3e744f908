"""A transformers model as an OpenVINO IR directory, exported once into a cache.

A model given as an IR directory (``openvino_model.xml`` in it) is used as it is. Any other
model is exported with optimum-intel (``OVModelForCausalLM.from_pretrained(export=True)``) into
``--export-dir`` (default ``~/.cache/streambench/openvino``), one subdirectory per key: the
model (a local directory's path and the newest modification time of its files, a hub id, or the
embedded / random-weight model with its seed and layers), the weight format, and the versions of
openvino, optimum-intel and transformers. A sweep therefore exports once, a changed model or
stack exports again, and deleting the directory clears the cache. An export is written to a
temporary directory beside its final place and renamed when complete: never half-written.

The weight format is always passed explicitly: optimum-intel's export compresses the weights of
models of 1 B parameters or more to int8 unless told otherwise, which would compare an int8
OpenVINO model with a float transformers one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError

__all__ = ["DEFAULT_EXPORT_DIR", "Exported", "ensure_ir", "is_ir_directory", "weight_format"]

DEFAULT_EXPORT_DIR = "~/.cache/streambench/openvino"
_IR = "openvino_model.xml"


@dataclass(frozen=True)
class Exported:
    """An IR directory ready to load: ``path``; ``export_time_s`` (seconds, ``None`` when it came
    from the cache or was given as IR); ``cached`` (found in the cache); ``weight_format``."""

    path: Path
    weight_format: str | None
    export_time_s: float | None = None
    cached: bool = False


def is_ir_directory(path: str | None) -> bool:
    return bool(path) and Path(str(path), _IR).is_file()


def weight_format(low_bit: str | None, dtype: str) -> str:
    """The weight format of an export: ``--low-bit`` if given, else the model's dtype
    (``float16``/``bfloat16`` -> ``fp16``, otherwise ``fp32``)."""
    if low_bit:
        return low_bit
    return "fp16" if dtype in ("float16", "bfloat16") else "fp32"


def package_versions(*names: str) -> dict[str, str]:
    """Installed version of each distribution (``"absent"`` when not installed): part of every
    export cache's key, so an upgrade converts again instead of reusing an old export."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    return out


def _versions() -> dict[str, str]:
    return package_versions("openvino", "optimum-intel", "transformers")


def model_identity(spec: Any, settings: Any) -> dict[str, Any]:
    """What identifies the source model in an export cache's key (every engine's cache)."""
    local = spec.local_directory
    if local:
        files = [p for p in Path(local).rglob("*") if p.is_file()]
        newest = max((p.stat().st_mtime_ns for p in files), default=0)
        return {"path": str(Path(local).resolve()), "mtime_ns": newest}
    if spec.kind == "pretrained":
        return {"hub": spec.source or spec.name}
    if spec.kind == "config":
        src = Path(spec.source or "")
        return {"config": str(src.resolve()), "mtime_ns": src.stat().st_mtime_ns}
    return {
        "kind": spec.kind,
        "name": spec.source or spec.name,
        "seed": settings.seed,
        "num_layers": settings.num_layers,
    }


def cache_key(spec: Any, settings: Any, fmt: str) -> str:
    """The cache subdirectory's name: the model's name and a hash of everything it depends on."""
    data = {"model": model_identity(spec, settings), "weights": fmt, **_versions()}
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in spec.name)[-40:]
    return f"{stem}-{fmt}-{digest}"


def ensure_ir(spec: Any, settings: Any, fmt: str, export_dir: str | None) -> Exported:
    """The IR directory of ``spec``: as given, from the cache, or exported now (timed)."""
    if is_ir_directory(spec.local_directory):
        return Exported(Path(spec.local_directory).resolve(), None)
    root = Path(os.path.expanduser(export_dir or DEFAULT_EXPORT_DIR)).resolve()
    target = root / cache_key(spec, settings, fmt)
    if is_ir_directory(str(target)):
        return Exported(target, fmt, cached=True)
    try:
        root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".export-", dir=root))
    except OSError as exc:
        raise UsageError(
            f"--export-dir {root}: cannot write the OpenVINO export cache ({exc.strerror}); "
            "pass --export-dir DIR"
        ) from None
    try:
        t0 = time.perf_counter()
        _export(spec, settings, fmt, work)
        elapsed = time.perf_counter() - t0
        try:
            os.replace(work, target)
        except OSError:  # another process exported it meanwhile: use theirs
            if not is_ir_directory(str(target)):
                raise
        return Exported(target, fmt, elapsed)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _quantization(fmt: str) -> dict[str, Any]:
    """optimum-intel keywords for the weight format (always explicit, see the module doc)."""
    if fmt in ("fp32", "fp16"):
        return {"load_in_8bit": False}
    from optimum.intel import OVWeightQuantizationConfig

    if fmt == "int8":
        return {"quantization_config": OVWeightQuantizationConfig(bits=8)}
    # int4: group size 128 where the layers allow it, else per channel (tiny test models)
    return {
        "quantization_config": OVWeightQuantizationConfig(
            bits=4, sym=fmt == "int4_sym", group_size=-1, ratio=1.0
        )
    }


def _export(spec: Any, settings: Any, fmt: str, work: Path) -> None:
    """Export into ``work`` (the model, its config, the transformers tokenizer and, where
    openvino_tokenizers can convert it, the OpenVINO tokenizer and detokenizer)."""
    from optimum.intel import OVModelForCausalLM

    source, tokenizer = _source(spec, settings, work)
    kwargs = _quantization(fmt)
    model = OVModelForCausalLM.from_pretrained(
        source, export=True, compile=False, trust_remote_code=settings.trust_remote_code, **kwargs
    )
    if fmt == "fp16":
        model.half()
    model.save_pretrained(work)
    if tokenizer is not None:
        tokenizer.save_pretrained(work)
        _convert_tokenizer(tokenizer, work)
    shutil.rmtree(work / "_source", ignore_errors=True)


def _source(spec: Any, settings: Any, work: Path) -> tuple[str, Any]:
    """A directory (or hub id) optimum-intel can export, and the model's tokenizer."""
    from .transformers.load import load_tokenizer

    if spec.kind == "pretrained":
        source = spec.source or spec.name
        return source, load_tokenizer(source, settings.trust_remote_code, spec.offline)
    # the embedded / random-weight model: built as for transformers, saved, then exported
    import dataclasses

    from .transformers.load import load_on_device
    from .transformers.placement import Placement

    plain = dataclasses.replace(settings, dtype="float32", low_bit=None, ipex=False)
    loaded = load_on_device(spec, plain, Placement.resolve("cpu", "none"))
    staged = work / "_source"
    loaded.model.generation_config.pad_token_id = 0
    loaded.model.save_pretrained(staged)
    if loaded.tokenizer is not None:
        loaded.tokenizer.save_pretrained(staged)
    return str(staged), loaded.tokenizer


def _convert_tokenizer(tokenizer: Any, work: Path) -> None:
    """OpenVINO GenAI's tokenizer files, where openvino_tokenizers converts this tokenizer
    (streambench hands GenAI token ids, so they are optional)."""
    try:
        import openvino
        from openvino_tokenizers import convert_tokenizer

        ov_tok, ov_detok = convert_tokenizer(tokenizer, with_detokenizer=True)
        openvino.save_model(ov_tok, str(work / "openvino_tokenizer.xml"))
        openvino.save_model(ov_detok, str(work / "openvino_detokenizer.xml"))
    except Exception:  # noqa: BLE001 - optional: timing feeds token ids
        pass
