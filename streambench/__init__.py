"""streambench: first-token and per-token latency and memory of ``transformers`` generation,
measured through ``generate(streamer=...)`` without touching ``generate()``.

``import streambench`` stays light: torch and transformers are imported only when a name that
needs them is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# name -> module that defines it; resolved on first access (PEP 562)
_LAZY = {
    "__version__": "streambench.version",
    "TimingStreamer": "streambench.streamer",
    "BenchmarkWrapper": "streambench.wrapper",
    "RunResult": "streambench.timing",
    "NoTokensError": "streambench.timing",
    "InterleavedRunsError": "streambench.timing",
    "RunsSummary": "streambench.stats",
    "Stats": "streambench.stats",
    "aggregate": "streambench.stats",
    "describe": "streambench.stats",
    "DeviceNotAvailableError": "streambench.devices",
    "EndpointSpec": "streambench.endpoint",
    "run_endpoint": "streambench.endpoint",
    "ClusterSummary": "streambench.cluster",
    "gather_summaries": "streambench.cluster",
}

__all__ = [
    "BenchmarkWrapper",
    "ClusterSummary",
    "DeviceNotAvailableError",
    "EndpointSpec",
    "InterleavedRunsError",
    "NoTokensError",
    "RunResult",
    "RunsSummary",
    "Stats",
    "TimingStreamer",
    "__version__",
    "aggregate",
    "describe",
    "gather_summaries",
    "run_endpoint",
]

if TYPE_CHECKING:
    from .cluster import ClusterSummary, gather_summaries
    from .devices import DeviceNotAvailableError
    from .endpoint import EndpointSpec, run_endpoint
    from .stats import RunsSummary, Stats, aggregate, describe
    from .streamer import TimingStreamer
    from .timing import InterleavedRunsError, NoTokensError, RunResult
    from .version import __version__
    from .wrapper import BenchmarkWrapper


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'streambench' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
