"""What ``MODEL`` means (:class:`ModelSpec`, :func:`resolve_model_spec`), where it is read from
(:func:`protected_directories`) and whether a hub id can be loaded at all
(:func:`check_hub_models`: in the local cache, or the hub reachable).

Imports nothing heavy; the hub is probed with one socket connection, never through
huggingface_hub.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError

__all__ = [
    "EMBEDDED_MODEL",
    "ModelSpec",
    "check_hub_models",
    "hub_cache_directory",
    "protected_directories",
    "resolve_model_spec",
    "resolve_model_specs",
]

#: name shown for the embedded default model (``streambench run`` without MODEL)
EMBEDDED_MODEL = "streambench/tiny-llama"


@dataclass
class ModelSpec:
    """Which model to load and how.

    ``kind``: ``"embedded"`` (the bundled tiny Llama, built in memory), ``"pretrained"`` (a local
    directory or hub id, ``from_pretrained``), ``"preset"`` (a bundled shape preset, random
    weights), ``"config"`` (a local config.json or directory, random weights) or ``"gguf"`` (a
    llama.cpp ``.gguf`` file, for ``--engine llama.cpp`` only).
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
    be written into. ``local_model_hub`` adds nothing: the models found in it are protected as
    model directories, the rest of the hub is not."""
    out = [("model", d) for d in (s.local_directory for s in specs) if d]
    # random weights from a config: only that file is read (and maybe its tokenizer beside it)
    out += [("model config", s.source) for s in specs if s.kind == "config" and s.source]
    out += [("model file", s.source) for s in specs if s.kind == "gguf" and s.source]
    # the models of a local_model_hub are among the model directories above; the hub itself is
    # not protected (a results folder beside the models is fine)
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


def _hub_candidate(hub: Path, model: str) -> Path:
    """Where all-in-one looks for ``model`` in a hub: the last part of the repo id."""
    return hub / model.strip().rstrip("/").split("/")[-1]


def resolve_model_specs(
    models: list[str | None], random_weights: bool = False, local_model_hub: str | None = None
) -> list[ModelSpec]:
    """:func:`resolve_model_spec` of each model; with a ``local_model_hub``, one
    :class:`UsageError` naming every model missing from it (empty or ``None``: no hub, each
    model as it is)."""
    if local_model_hub:
        hub = Path(local_model_hub).expanduser()
        if not hub.is_dir():
            raise UsageError(f"local_model_hub {local_model_hub!r} is not a directory")
        missing = [
            f"{m!r} (no {_hub_candidate(hub, m)})"
            for m in models
            if m is not None and m.strip() and not _hub_candidate(hub, m).exists()
        ]
        if missing:
            raise UsageError(
                f"local_model_hub {local_model_hub}: {len(missing)} of {len(models)} models "
                f"not found there: {', '.join(missing)}; put them in the hub or leave "
                "local_model_hub empty to use the repo ids as they are"
            )
    return [resolve_model_spec(m, random_weights, local_model_hub) for m in models]


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
        candidate = _hub_candidate(hub, model)
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
    if path.is_file() and path.suffix.lower() == ".gguf":
        # a llama.cpp model, used as it is by --engine llama.cpp (checked with the engines)
        return ModelSpec(path.stem, "gguf", str(path.resolve()))
    if path.exists():
        if not path.is_dir():
            raise UsageError(f"model path {model!r} is not a directory")
        # genai_config.json: an ONNX Runtime GenAI model (--engine onnxruntime-genai)
        if not any((path / f).is_file() for f in ("config.json", "genai_config.json")):
            raise UsageError(f"model directory {model!r} has no config.json")
        return ModelSpec(path.name, "pretrained", str(path))
    if _looks_like_path(model):
        raise UsageError(f"model path {model!r} does not exist")
    if model.lower() in PRESETS:
        raise UsageError(f"{model!r} is a shape preset: add --random-weights to benchmark it")
    return ModelSpec(model, "pretrained", model)  # a hub id
