"""Where a benchmark ran: the ``environment`` object of a results document (versions of
streambench, Python and the libraries, the device and its name, the CPU, the OS, the date)."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

__all__ = ["environment", "library_versions"]


def environment(device: Any = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Versions and machine: streambench, Python, torch and transformers (when imported or
    importable), device and its name, CPU model and count, OS, argv, date (UTC, ISO 8601, to the
    second); ``extra`` keys last."""
    import datetime

    from ..devices import cpu_model
    from ..version import __version__

    env: dict[str, Any] = {
        "streambench": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": cpu_model() or platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "argv": list(sys.argv),
    }
    env.update(library_versions())
    if device is not None:
        from ..devices import device_name

        env["device"] = str(device)
        env["device_name"] = device_name(device)
    if extra:
        env.update(extra)
    return env


def library_versions() -> dict[str, str]:
    """Versions of torch and transformers (installed), and of accelerate, ipex-llm and
    intel-extension-for-pytorch where loaded. Call again after loading a model to catch the
    libraries that loading imported."""
    out: dict[str, str] = {}
    for mod, dist in (
        ("torch", "torch"),
        ("transformers", "transformers"),
        ("accelerate", "accelerate"),
        ("ipex_llm", "ipex-llm"),
        ("intel_extension_for_pytorch", "intel-extension-for-pytorch"),
    ):
        module = sys.modules.get(mod)
        version = getattr(module, "__version__", None) if module is not None else None
        if version is None and (module is not None or mod in ("torch", "transformers")):
            version = dist_version(dist)
        if version is not None:
            out[mod] = str(version)
    return out


def dist_version(dist: str) -> str | None:
    """The installed version of distribution ``dist``, ``None`` when not installed."""
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None
