"""Where this process stands among the ranks of a launch, and who prints.

Ground floor: imports nothing from the package and nothing heavy (torch only inside the
functions that need it, and ``torch.distributed`` is only *looked up*, never imported, by the
cheap checks).

- Rank facts from the launcher's environment (``torchrun``, ``deepspeed``: ``RANK``,
  ``WORLD_SIZE``, ``LOCAL_RANK``): :class:`RankFacts`, :func:`launched_world_size`.
- The live process group: :func:`is_initialized`, :func:`get_rank`, :func:`get_world_size`,
  :func:`init_distributed`.
- Who prints: :class:`PrintPolicy` (the one default instance is :data:`PRINT_POLICY`;
  :func:`set_print_ranks`, :func:`get_print_ranks` and :func:`should_print` use it).
- This rank's device: :func:`rank_device` (``cuda`` -> ``cuda:LOCAL_RANK`` under a launcher).

>>> parse_print_ranks("0,2") == frozenset({0, 2})
True
>>> RankFacts.from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
RankFacts(rank=3, world_size=4, local_rank=1)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Union

__all__ = [
    "PRINT_POLICY",
    "PRINT_RANKS_ENV",
    "PrintPolicy",
    "PrintRanks",
    "RankFacts",
    "get_print_ranks",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_initialized",
    "launched_world_size",
    "parse_print_ranks",
    "rank_device",
    "set_print_ranks",
    "should_print",
    "torch_distributed",
]

#: environment variable with the default print ranks (``0``, ``0,4``, ``all``, ``none``)
PRINT_RANKS_ENV = "STREAMBENCH_PRINT_RANKS"

#: a rank, several ranks, ``"all"``/``None`` (every rank) or ``"none"``
PrintRanks = Union[int, str, Iterable[int], None]

_UNSET: Any = object()

#: the launcher's environment variables and their values without a launcher
_LAUNCH_KEYS = (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"))


# -- the launch, from the environment ------------------------------------------------------------
@dataclass(frozen=True)
class RankFacts:
    """This process's place in a launch, as the launcher's environment says it: global
    ``rank``, ``world_size`` (ranks in the launch, at least 1) and ``local_rank`` (index of
    this rank on its host, which picks its accelerator). ``rank 0 of 1`` without a launcher."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RankFacts:
        """Read ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (``os.environ`` by default; unset:
        0, 1, 0). An environment where one of them is not a whole number is no launch: rank 0
        of 1."""
        env = os.environ if env is None else env
        try:
            rank, world, local = (int(env.get(k, d)) for k, d in _LAUNCH_KEYS)
        except ValueError:
            return cls()
        return cls(rank=rank, world_size=max(world, 1), local_rank=local)

    @property
    def launched(self) -> bool:
        """More than one rank: started by ``torchrun``, ``deepspeed`` or the like."""
        return self.world_size > 1

    @property
    def is_writer(self) -> bool:
        """Rank 0: the one that prints tables and writes result files in ``streambench run``."""
        return self.rank == 0


def launched_world_size() -> int:
    """``WORLD_SIZE`` set by the launcher (``torchrun``, ``deepspeed``), 1 without one."""
    return RankFacts.from_env().world_size


# -- the live process group ----------------------------------------------------------------------
def torch_distributed() -> Any | None:
    """``torch.distributed`` when it is imported, available and initialized, else ``None``.

    Cheap: no import when torch was never imported (then nothing can be initialized)."""
    dist = sys.modules.get("torch.distributed")
    if dist is None:
        return None
    try:
        if dist.is_available() and dist.is_initialized():
            return dist
    except (AttributeError, RuntimeError):
        return None
    return None


def is_initialized() -> bool:
    """``True`` when a default ``torch.distributed`` process group exists."""
    return torch_distributed() is not None


def get_rank() -> int | None:
    """This process's global rank, or ``None`` when ``torch.distributed`` is not initialized."""
    dist = torch_distributed()
    return None if dist is None else int(dist.get_rank())


def get_world_size() -> int:
    """Number of ranks in the default process group (1 when not initialized)."""
    dist = torch_distributed()
    return 1 if dist is None else int(dist.get_world_size())


def init_distributed(
    device: Any = None, *, backend: str | None = None, timeout_s: float = 1800.0
) -> bool:
    """Initialize the default process group from the launcher's environment (``torchrun``,
    ``deepspeed``: ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``), with a timeout.

    No-op (returns ``False``) when already initialized or when ``WORLD_SIZE`` is unset or 1.
    ``backend`` defaults to the device's (``cuda`` -> nccl, ``xpu`` -> xccl, ``cpu`` -> gloo);
    for accelerators the device ``LOCAL_RANK`` is selected first. ``timeout_s`` bounds every
    collective, seconds, so a rank that died cannot hang the others longer than that.
    Returns ``True`` when this call initialized the group."""
    if is_initialized():
        return False
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    import datetime

    import torch
    import torch.distributed as dist

    kind = str(device or "cpu").split(":")[0]
    if kind in ("auto", "none"):
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if kind == "cuda":
        torch.cuda.set_device(local_rank)
    elif kind == "xpu" and hasattr(torch, "xpu"):
        torch.xpu.set_device(local_rank)
    if backend is None:
        mapping = getattr(dist.Backend, "default_device_backend_map", {})
        backend = mapping.get(kind, "gloo")
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    return True


# -- who prints ----------------------------------------------------------------------------------
def parse_print_ranks(value: PrintRanks) -> frozenset[int] | None:
    """``"all"``/``None`` -> ``None`` (every rank prints); ``0`` / ``"0,2"`` / ``[0, 2]`` -> those
    ranks; ``"none"`` or ``[]`` -> no rank."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"print_ranks must be a rank, a list of ranks or 'all', got {value!r}")
    if isinstance(value, int):
        return frozenset([value])
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("all", "*"):
            return None
        if text in ("none", ""):
            return frozenset()
        try:
            return frozenset(int(part) for part in text.split(",") if part.strip())
        except ValueError:
            raise ValueError(
                f"print ranks {value!r} not understood: use 'all', 'none', a rank like '0' or "
                f"a comma-separated list like '0,4' (also in ${PRINT_RANKS_ENV})"
            ) from None
    try:
        return frozenset(int(r) for r in value)
    except (TypeError, ValueError):
        raise ValueError(
            f"print_ranks must be a rank, a list of ranks or 'all', got {value!r}"
        ) from None


class PrintPolicy:
    """Which ranks print by default: what was :meth:`set`, else ``$STREAMBENCH_PRINT_RANKS``
    (read on first use), else rank 0. ``None`` means every rank.

    The process has one default policy, :data:`PRINT_POLICY`; streamers built with
    ``print_ranks=None`` and :meth:`ClusterSummary.report` follow it."""

    def __init__(self) -> None:
        self._ranks: Any = _UNSET  # frozenset of ranks, None for every rank; parsed on first use

    def set(self, ranks: PrintRanks) -> None:
        """Make ``ranks`` the default (``"all"``: every rank prints)."""
        self._ranks = parse_print_ranks(ranks)

    def get(self) -> frozenset[int] | None:
        """The default print ranks (``None`` = every rank); ``ValueError`` for an unreadable
        ``$STREAMBENCH_PRINT_RANKS``."""
        if self._ranks is _UNSET:
            self._ranks = parse_print_ranks(os.environ.get(PRINT_RANKS_ENV, "0"))
        return self._ranks  # type: ignore[no-any-return]

    def reset(self) -> None:
        """Forget what was set or read: the next :meth:`get` reads the environment again."""
        self._ranks = _UNSET

    def should_print(self, print_ranks: PrintRanks | object = _UNSET) -> bool:
        """See :func:`should_print`."""
        rank = get_rank()
        if rank is None:
            return True
        ranks = self.get() if print_ranks is _UNSET else parse_print_ranks(print_ranks)  # type: ignore[arg-type]
        return ranks is None or rank in ranks


#: the process's default print policy
PRINT_POLICY = PrintPolicy()


def set_print_ranks(ranks: PrintRanks) -> None:
    """Which ranks print reports by default (streamers built with ``print_ranks=None`` and
    :meth:`ClusterSummary.report`). Default: ``$STREAMBENCH_PRINT_RANKS``, else rank 0.
    ``"all"`` lets every rank print."""
    PRINT_POLICY.set(ranks)


def get_print_ranks() -> frozenset[int] | None:
    """The default print ranks (``None`` = every rank)."""
    return PRINT_POLICY.get()


def should_print(print_ranks: PrintRanks | object = _UNSET) -> bool:
    """Whether this process should print: always when ``torch.distributed`` is not initialized,
    else when its rank is in ``print_ranks`` (default :func:`get_print_ranks`).

    One ``is_initialized()`` check; call it once per report, not per token."""
    return PRINT_POLICY.should_print(print_ranks)


# -- this rank's device --------------------------------------------------------------------------
def rank_device(device: Any, facts: RankFacts | None = None) -> Any:
    """Under a launcher, an accelerator without an index (``cuda``, ``xpu``) becomes this
    rank's own (``cuda:LOCAL_RANK``); anything else is returned unchanged (as a
    ``torch.device``). ``facts``: the rank facts to use (default: read from the environment)."""
    import torch

    facts = RankFacts.from_env() if facts is None else facts
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    if facts.launched and dev.type in ("cuda", "xpu") and dev.index is None:
        return torch.device(dev.type, facts.local_rank)
    return dev
