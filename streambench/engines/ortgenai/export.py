"""A transformers model as an ONNX Runtime GenAI model directory, built once into a cache.

A model given as an ORT GenAI directory (``genai_config.json`` in it) is used as it is. Any other
model is converted by ORT GenAI's model builder (``python -m onnxruntime_genai.models.builder``,
run as a subprocess: it imports its own modules by path and holds the whole model in memory
while it writes) into ``--export-dir`` (default ``~/.cache/streambench/onnxruntime-genai``), one
subdirectory per key: the model (a local directory's path and the newest modification time of
its files, a hub id, or the embedded / random-weight model with its seed and layers), the
precision, the execution provider the graph is built for, and the versions of
onnxruntime-genai, onnxruntime and transformers. A sweep therefore converts once, a changed
model or stack converts again, and deleting the directory clears the cache. A build is written
to a temporary directory beside its final place and renamed when complete: never half-written.

The builder makes a graph for one execution provider (its ``-e``): the cache key has it, and
the precisions it builds for each are :data:`VALID` (the builder's own list).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import UsageError

__all__ = [
    "DEFAULT_EXPORT_DIR",
    "GENAI_CONFIG",
    "VALID",
    "BuildError",
    "Exported",
    "cache_key",
    "ensure_genai_dir",
    "is_genai_directory",
    "precision",
]

DEFAULT_EXPORT_DIR = "~/.cache/streambench/onnxruntime-genai"
GENAI_CONFIG = "genai_config.json"
#: execution provider -> the precisions ORT GenAI's builder makes for it (its own list: fp16 on
#: the CPU builds, then fails at run time)
VALID: dict[str, tuple[str, ...]] = {
    "cpu": ("fp32", "int8", "int4"),
    "cuda": ("fp32", "fp16", "bf16", "int8", "int4"),
    "dml": ("fp16", "int4"),
}
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
_TOKENIZER_WRITES = ("tokenizer", "special_tokens", "chat_template", "added_tokens", "vocab")


class BuildError(RuntimeError):
    """ORT GenAI's model builder failed (the message ends with its last line of output)."""


@dataclass(frozen=True)
class Exported:
    """An ORT GenAI directory ready to load: ``path``; ``precision`` (``None`` when given as an
    ONNX directory); ``export_time_s`` (seconds the builder took, ``None`` when it came from the
    cache or was given); ``cached`` (found in the cache)."""

    path: Path
    precision: str | None
    export_time_s: float | None = None
    cached: bool = False


def is_genai_directory(path: str | None) -> bool:
    """``path`` is an ORT GenAI model directory (it has ``genai_config.json``)."""
    return bool(path) and Path(str(path), GENAI_CONFIG).is_file()


def precision(low_bit: str | None, dtype: str) -> str:
    """The builder's precision: ``--low-bit`` if given, else the model's dtype (``float16`` ->
    ``fp16``, ``bfloat16`` -> ``bf16``, otherwise ``fp32``).

    >>> precision(None, "auto"), precision("int4", "float16"), precision(None, "bfloat16")
    ('fp32', 'int4', 'bf16')
    """
    if low_bit:
        return low_bit
    return {"float16": "fp16", "bfloat16": "bf16"}.get(dtype, "fp32")


def _versions() -> dict[str, str]:
    from ..export import package_versions

    return package_versions("onnxruntime-genai", "onnxruntime", "transformers")


def cache_key(spec: Any, settings: Any, prec: str, provider: str) -> str:
    """The cache subdirectory's name: the model's name, provider, precision and a hash of
    everything the build depends on."""
    from ..export import model_identity

    data = {
        "model": model_identity(spec, settings),
        "precision": prec,
        "provider": provider,
        **_versions(),
    }
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in spec.name)[-40:]
    return f"{stem}-ortgenai-{provider}-{prec}-{digest}"


def ensure_genai_dir(
    spec: Any, settings: Any, prec: str, provider: str, export_dir: str | None
) -> Exported:
    """The ORT GenAI directory of ``spec``: as given, from the cache, or built now (timed)."""
    if is_genai_directory(spec.local_directory):
        return Exported(Path(spec.local_directory).resolve(), None)
    root = Path(os.path.expanduser(export_dir or DEFAULT_EXPORT_DIR)).resolve()
    target = root / cache_key(spec, settings, prec, provider)
    if is_genai_directory(str(target)):
        return Exported(target, prec, cached=True)
    try:
        root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".export-", dir=root))
    except OSError as exc:
        raise UsageError(
            f"--export-dir {root}: cannot write the ONNX Runtime GenAI export cache "
            f"({exc.strerror}); pass --export-dir DIR"
        ) from None
    try:
        t0 = time.perf_counter()
        _build(spec, settings, prec, provider, work)
        elapsed = time.perf_counter() - t0
        try:
            os.replace(work / "model", target)
        except OSError:  # another process built it meanwhile: use theirs
            if not is_genai_directory(str(target)):
                raise
        return Exported(target, prec, elapsed)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _build(spec: Any, settings: Any, prec: str, provider: str, work: Path) -> None:
    """Run the builder into ``work/model`` (its download / scratch cache in ``work/cache``)."""
    source, had_tokenizer = _source(spec, settings, work)
    out = work / "model"
    cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder"]
    cmd += ["-i", source] if Path(source).is_dir() else ["-m", source]
    cmd += ["-o", str(out), "-p", prec, "-e", provider, "-c", str(work / "cache")]
    extra = ["hf_remote=true"] if settings.trust_remote_code is True else []
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if Path(source).is_dir():
        env["HF_HUB_OFFLINE"] = "1"  # everything is on disk: never reach for the hub
        extra.append("hf_token=false")  # its default (token=True) fails offline without a login
    if extra:
        cmd += ["--extra_options", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=work)
    if proc.returncode != 0 or not is_genai_directory(str(out)):
        lines = [x.strip() for x in (proc.stderr or proc.stdout or "").splitlines() if x.strip()]
        last = lines[-1] if lines else f"exit status {proc.returncode}"
        raise BuildError(
            f"ORT GenAI's model builder could not convert {spec.name} ({prec}, {provider}): {last}"
        )
    if not had_tokenizer:  # the builder needed one (see _source); the model has none
        for name in (*_TOKENIZER_FILES, "special_tokens_map.json", "chat_template.jinja"):
            (out / name).unlink(missing_ok=True)


def _has_tokenizer(path: Path) -> bool:
    return any((path / f).is_file() for f in _TOKENIZER_FILES)


def _source(spec: Any, settings: Any, work: Path) -> tuple[str, bool]:
    """A directory (or hub id) the builder can read, and whether the model has a tokenizer.

    The builder loads a tokenizer whatever the model (it copies it beside the graph): a local
    directory without one is staged as links with streambench's byte-level tokenizer, removed
    again after the build, so the run still feeds random token ids as transformers does."""
    if spec.kind == "pretrained":
        local = spec.local_directory
        if not local:
            return str(spec.source or spec.name), True  # a hub id: the builder downloads it
        if _has_tokenizer(Path(local)):
            return str(Path(local).resolve()), True  # absolute: the builder runs in work/
        staged = work / "_source"
        staged.mkdir()
        for item in Path(local).iterdir():
            # never a name the tokenizer writes: it would write through the link into MODEL
            if not item.name.startswith(_TOKENIZER_WRITES):
                (staged / item.name).symlink_to(item.resolve())
        _placeholder_tokenizer(staged)
        return str(staged), False
    # the embedded / random-weight model: built as for transformers, saved, then converted
    import dataclasses

    from ..transformers.load import load_on_device
    from ..transformers.placement import Placement

    plain = dataclasses.replace(settings, dtype="float32", low_bit=None, ipex=False)
    loaded = load_on_device(spec, plain, Placement.resolve("cpu", "none"))
    staged = work / "_source"
    loaded.model.generation_config.pad_token_id = 0
    loaded.model.save_pretrained(staged)
    if loaded.tokenizer is not None:
        loaded.tokenizer.save_pretrained(staged)
        return str(staged), True
    _placeholder_tokenizer(staged)
    return str(staged), False


def _placeholder_tokenizer(path: Path) -> None:
    from ...tiny import build_tokenizer

    build_tokenizer().save_pretrained(path)
