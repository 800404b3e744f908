"""Inference engines as plug-ins (``--engine``), timed by the same core.

Built in:

- ``transformers``: the model's own ``generate()`` (:mod:`.transformers_engine`), the default;
- ``openvino``: optimum-intel's ``OVModelForCausalLM`` (:mod:`.openvino_engines`), whose
  ``generate()`` is transformers' and takes the :class:`~streambench.TimingStreamer` unchanged;
- ``openvino-genai``: OpenVINO GenAI's ``LLMPipeline`` (:mod:`.genai`), C++ generation whose
  streamer callback feeds the same timing core token by token;
- ``llama.cpp``: llama.cpp through llama-cpp-python (:mod:`.llamacpp`), a ``.gguf`` file or a
  transformers model converted to one; its steps feed the same timing core;
- ``onnxruntime-genai``: ONNX Runtime GenAI's ``Generator`` loop (:mod:`.ortgenai`), timed around
  each ``generate_next_token()``.

Other engines come from installed packages, through the entry-point group ``streambench.engines``
(``[project.entry-points."streambench.engines"] toy = "pkg.mod:ToyEngine"``), or from code,
through :func:`register` (in this process only: ``--isolate`` workers find the built-in and
entry-point engines). Every engine is an :class:`~.base.Engine`; a module is imported only when
its engine is asked for, so ``import streambench`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import UsageError
from .base import Engine

__all__ = [
    "DEFAULT_ENGINE",
    "ENTRY_POINT_GROUP",
    "Engine",
    "check_all",
    "engine_help",
    "engine_names",
    "engine_of",
    "engines_of",
    "export_caches",
    "get_engine",
    "register",
]

DEFAULT_ENGINE = "transformers"
ENTRY_POINT_GROUP = "streambench.engines"
#: the built-in engines: name -> "module:Class" (imported when asked for)
BUILTIN: dict[str, str] = {
    DEFAULT_ENGINE: "streambench.engines.transformers.engine:TransformersEngine",
    "openvino": "streambench.engines.openvino.engines:OpenVINOEngine",
    "openvino-genai": "streambench.engines.openvino.engines:GenAIEngine",
    "vllm": "streambench.engines.vllm:VllmEngine",
    "llama.cpp": "streambench.engines.llamacpp.engine:LlamaCppEngine",
    "onnxruntime-genai": "streambench.engines.ortgenai.engine:OrtGenAIEngine",
}
#: engines registered by code (:func:`register`)
_REGISTERED: dict[str, type[Engine]] = {}
#: one instance per engine name, made on first use
_INSTANCES: dict[str, Engine] = {}


def register(cls: type[Engine]) -> type[Engine]:
    """Make ``cls`` (an :class:`Engine` subclass with a ``name``) available as
    ``--engine cls.name`` in this process; returns ``cls`` (usable as a decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, Engine)) or not cls.name:
        raise TypeError(f"{cls!r} is not an Engine subclass with a name")
    _REGISTERED[cls.name] = cls
    _INSTANCES.pop(cls.name, None)
    return cls


def _entry_points() -> dict[str, Any]:
    """The installed packages' engines: name -> entry point (not loaded)."""
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def engine_names() -> tuple[str, ...]:
    """Every ``--engine`` value: the built-in ones first, then installed and registered ones."""
    names = list(BUILTIN)
    for name in sorted({*_entry_points(), *_REGISTERED}):
        if name not in names:
            names.append(name)
    return tuple(names)


def get_engine(name: str | None) -> Engine:
    """The engine called ``name`` (``None``: the default); :class:`UsageError` listing the
    registered names when there is none."""
    name = name or DEFAULT_ENGINE
    if name in _INSTANCES:
        return _INSTANCES[name]
    cls: Any = _REGISTERED.get(name)
    if cls is None and name in BUILTIN:
        module, _, attr = BUILTIN[name].partition(":")
        cls = getattr(importlib.import_module(module), attr)
    if cls is None:
        found = _entry_points().get(name)
        if found is None:
            known = ", ".join(engine_names())
            raise UsageError(f"--engine {name}: no such engine; use one of {known}")
        try:
            cls = found.load()
        except Exception as exc:  # noqa: BLE001 - a broken plug-in: say which one and why
            raise UsageError(
                f"--engine {name}: its entry point {found.value} does not load "
                f"({type(exc).__name__}: {exc}); fix or uninstall that package"
            ) from None
        if not (isinstance(cls, type) and issubclass(cls, Engine)):
            raise UsageError(f"--engine {name}: {found.value} is not a streambench Engine")
    if cls.name != name:  # an entry point's name is what --engine says, whatever the class says
        cls = type(cls.__name__, (cls,), {"name": name, "__module__": cls.__module__})
    engine = _INSTANCES[name] = cls()
    return engine


def engine_of(variant: Any) -> str:
    """The engine of a generation variant (the default when it does not say)."""
    return str(variant.get("engine") or DEFAULT_ENGINE)


def engines_of(variants: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The engines of a sweep, sorted by name, each with its variants."""
    out: dict[str, list[dict[str, Any]]] = {}
    for variant in variants:
        out.setdefault(engine_of(variant), []).append(variant)
    return dict(sorted(out.items()))


def export_caches(variants: list[dict[str, Any]], export_dir: str | None) -> list[str]:
    """The export caches a run may read and write: ``--export-dir`` when given (every engine's
    cache is then there), else the default cache of every built-in engine and of the sweep's
    (:attr:`Engine.export_cache`): protected as inputs of any run, as a model directory is."""
    if export_dir:
        return [export_dir]
    names = dict.fromkeys([*BUILTIN, *engines_of(variants)])
    found = (get_engine(name).export_cache for name in names)
    return list(dict.fromkeys(cache for cache in found if cache))


def check_all(settings: Any) -> Any:
    """Before anything loads: every engine of the sweep checked (:meth:`Engine.check`). Returns
    the torch device the sweep times on: the host's CPU when every engine times there, else
    ``--device`` (:meth:`Engine.timing_device`)."""
    engines = [(get_engine(name), mine) for name, mine in engines_of(settings.variants).items()]
    for engine, mine in engines:
        engine.check(settings, mine)
    on_device = [engine for engine, _ in engines if not engine.timed_on_host]
    return (on_device or [engine for engine, _ in engines])[0].timing_device(settings)


def engine_help() -> str:
    """``--engine``'s help: the built-in and registered engines with their descriptions.
    Installed plug-ins are not looked up (building the parser must stay light): ``run``
    lists them when it refuses an unknown name."""
    described = []
    for name in [*BUILTIN, *(n for n in _REGISTERED if n not in BUILTIN)]:
        default = " (default)" if name == DEFAULT_ENGINE else ""
        described.append(f"{name}{default}: {get_engine(name).description}")
    return (
        "; ".join(described)
        + f"; or an installed plug-in (entry points {ENTRY_POINT_GROUP}, see README, "
        "Adding an engine); a comma-separated list sweeps them"
    )
