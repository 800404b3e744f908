"""Old home of the multi-rank helpers: a re-export shim, kept so that existing imports
(``from streambench.distributed import gather_summaries, should_print``) keep working.

Where things live now:

- rank facts, the process group, who prints (:func:`should_print`, :func:`set_print_ranks`,
  ``$STREAMBENCH_PRINT_RANKS``; the default policy object is :data:`PRINT_POLICY`) and this
  rank's device (:func:`rank_device`): :mod:`streambench.ranks`;
- the cross-rank view (:class:`RankSummary`, :class:`ClusterSummary`,
  :func:`gather_summaries`, :func:`gather_entry`): :mod:`streambench.cluster`;
- tensor-parallel loading (``--tp``): :mod:`streambench.engines.transformers.tensor_parallel`.

Nothing here imports torch at module import time.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

from .cluster import (
    ClusterSummary,
    RankSummary,
    find_problems,
    gather_entry,
    gather_summaries,
    summarize_rank,
)
from .engines.transformers import tensor_parallel as _tp
from .engines.transformers.load import dtype_kwargs
from .engines.transformers.placement import Placement
from .engines.transformers.tensor_parallel import (
    TP_ENV,
    TP_MODES,
    resolve_tp_mode,
    tensor_parallel_kwargs,
)
from .ranks import (
    PRINT_POLICY,
    PRINT_RANKS_ENV,
    PrintPolicy,
    PrintRanks,
    get_print_ranks,
    get_rank,
    get_world_size,
    init_distributed,
    is_initialized,
    launched_world_size,
    parse_print_ranks,
    rank_device,
    set_print_ranks,
    should_print,
)
from .stats import Stats, describe
from .units import GiB

warnings.warn(
    "streambench.distributed is deprecated: import from streambench.ranks, streambench.cluster or "
    "streambench.engines.transformers.tensor_parallel",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = [
    "PRINT_POLICY",
    "PRINT_RANKS_ENV",
    "TP_ENV",
    "TP_MODES",
    "ClusterSummary",
    "GiB",
    "Placement",
    "PrintPolicy",
    "PrintRanks",
    "RankSummary",
    "Stats",
    "describe",
    "dtype_kwargs",
    "find_problems",
    "gather_entry",
    "gather_summaries",
    "get_print_ranks",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_initialized",
    "launched_world_size",
    "load_model_tensor_parallel",
    "parse_print_ranks",
    "rank_device",
    "resolve_tp_mode",
    "set_print_ranks",
    "should_print",
    "summarize_rank",
    "tensor_parallel_kwargs",
]


def load_model_tensor_parallel(
    spec: Any, settings: Any, device: Any, mode: str, load_plain: Callable[..., Any] | None = None
) -> Any:
    """Old signature of
    :func:`streambench.engines.transformers.tensor_parallel.load_model_tensor_parallel`:
    ``device`` and ``mode`` become one :class:`~streambench.engines.transformers.Placement`.
    ``load_plain``
    is ignored: the whole-model loader is
    :func:`streambench.engines.transformers.load.load_on_device`."""
    return _tp.load_model_tensor_parallel(spec, settings, Placement.resolve(device, mode))


def _accepts_dtype() -> bool:
    """Whether ``from_pretrained`` takes ``dtype=`` (transformers >= 4.56) rather than
    ``torch_dtype=``; see :func:`streambench.engines.transformers.load.dtype_kwargs`."""
    return "dtype" in dtype_kwargs(None)
