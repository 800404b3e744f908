"""The served backends of ``streambench endpoint`` (``--backend``), by name.

Built-in: ``openai`` (:class:`~.openai.OpenAIBackend`). A package adds one through the
entry-point group :data:`ENTRY_POINT_GROUP`, naming a :class:`~.base.ServedBackend` subclass (or
instance)::

    [project.entry-points."streambench.backends"]
    mine = "my_package.backend:MyBackend"

Backends are loaded lazily: only the one a run asks for is imported, and the installed entry
points are read only for a name that is not built in (or to list the known names in an error).
Built-ins are named the same way (``module:attribute``), so this module imports none of them.
"""

from __future__ import annotations

import importlib
from typing import Any

from ...errors import UsageError
from .base import ServedBackend

__all__ = [
    "DEFAULT_BACKEND",
    "ENTRY_POINT_GROUP",
    "BackendError",
    "ServedBackend",
    "backend_names",
    "get_backend",
]

#: the entry-point group third-party served backends register in
ENTRY_POINT_GROUP = "streambench.backends"
#: the backend used without ``--backend``
DEFAULT_BACKEND = "openai"
#: the built-in backends: name -> ``module:attribute``
BUILTIN = {"openai": "streambench.endpoint.backends.openai:OpenAIBackend"}

_loaded: dict[str, ServedBackend] = {}  # one instance per name and process


class BackendError(UsageError):
    """A ``--backend`` that is unknown or cannot be loaded (one line, exit 2)."""


def _entry_points() -> dict[str, Any]:
    """The installed entry points of :data:`ENTRY_POINT_GROUP`, by name (a built-in name is
    never replaced by one)."""
    from importlib import metadata

    found = {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    return {name: ep for name, ep in found.items() if name not in BUILTIN}


def backend_names() -> list[str]:
    """Every backend that ``--backend`` accepts here: the built-ins, then the installed ones."""
    return [*BUILTIN, *sorted(_entry_points())]


def get_backend(name: str) -> ServedBackend:
    """The backend called ``name``, loaded on first use; :class:`BackendError` naming the
    option and the known backends otherwise."""
    if name in _loaded:
        return _loaded[name]
    if name in BUILTIN:
        module, _, attribute = BUILTIN[name].partition(":")
        target = getattr(importlib.import_module(module), attribute)
    else:
        entry = _entry_points().get(name) if isinstance(name, str) else None
        if entry is None:
            raise BackendError(
                f"--backend {name!r}: no served backend of that name (known: "
                f"{', '.join(backend_names())}); install the package that provides it"
            )
        try:
            target = entry.load()
        except Exception as exc:  # noqa: BLE001 - a plugin's own failure, said in one line
            raise BackendError(
                f"--backend {name}: its entry point {entry.value!r} could not be loaded "
                f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); reinstall or "
                "upgrade the package that provides it"
            ) from None
    backend = _instance(name, target)
    _loaded[name] = backend
    return backend


def _instance(name: str, target: Any) -> ServedBackend:
    """A :class:`ServedBackend` from what an entry point names: a subclass (built with no
    arguments) or an instance; its ``name`` must be the name it is registered under."""
    if isinstance(target, type) and issubclass(target, ServedBackend):
        target = target()
    if not isinstance(target, ServedBackend):
        raise BackendError(
            f"--backend {name}: {target!r} is not a streambench.endpoint.backends.ServedBackend"
        )
    if target.name != name:  # the results say which backend measured: one name for it
        raise BackendError(
            f"--backend {name}: the backend registered as {name!r} calls itself "
            f"{target.name!r}; fix its entry point"
        )
    return target
