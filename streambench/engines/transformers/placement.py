"""Where a model runs, decided once: :class:`Placement`.

``--device`` becomes a ``torch.device`` (:func:`streambench.devices.resolve_device`), then this
rank's own device under a launcher (``cuda`` -> ``cuda:LOCAL_RANK``,
:func:`streambench.ranks.rank_device`); the launch's rank facts and the tensor-parallel mode
travel with it. Loading (:mod:`streambench.engines.transformers`) receives one :class:`Placement`
and never
resolves the device again.

>>> p = Placement.resolve("cpu")
>>> p.device.type, p.world_size, p.tp
('cpu', 1, 'none')
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...devices import device_backend, resolve_device
from ...ranks import RankFacts, rank_device

if TYPE_CHECKING:
    import torch

__all__ = ["TP_LOADERS", "Placement"]

#: resolved tensor-parallel modes (``--tp auto`` is resolved before, see
#: :func:`streambench.engines.transformers.tensor_parallel.resolve_tp_mode`)
TP_LOADERS = ("none", "transformers", "deepspeed")


@dataclass(frozen=True)
class Placement:
    """This rank's device, its place in the launch and how the model is split.

    ``device``: a validated ``torch.device``, already this rank's own (``cuda:LOCAL_RANK``
    under a launcher when ``--device cuda`` named no index). ``ranks``: rank, world size and
    local rank of the launch (rank 0 of 1 without a launcher). ``tp``: ``"none"`` (one full
    replica per rank), ``"transformers"`` (``tp_plan="auto"``) or ``"deepspeed"`` (AutoTP)."""

    device: torch.device
    ranks: RankFacts = field(default_factory=RankFacts)
    tp: str = "none"

    @classmethod
    def resolve(
        cls, device: Any = None, tp: str = "none", ranks: RankFacts | None = None
    ) -> Placement:
        """Resolve ``device`` once: a ``torch.device`` is taken as validated, anything else
        (``"auto"``, ``"cuda"``, ``None`` ...) goes through :func:`resolve_device` (``ValueError``
        / :class:`~streambench.devices.DeviceNotAvailableError`); then this rank's device.
        ``ranks`` default: read from the environment."""
        import torch

        ranks = RankFacts.from_env() if ranks is None else ranks
        dev = device if isinstance(device, torch.device) else resolve_device(device)
        return cls(rank_device(dev, ranks), ranks, str(tp))

    @property
    def world_size(self) -> int:
        """Ranks in the launch (1 without a launcher)."""
        return self.ranks.world_size

    @property
    def launched(self) -> bool:
        """More than one rank."""
        return self.ranks.launched

    @property
    def on_cpu(self) -> Placement:
        """The same placement with the CPU as device (loading before sharding)."""
        import torch

        return dataclasses.replace(self, device=torch.device("cpu"))

    def sync(self) -> None:
        """Wait until the device has finished its queued work (nothing to do on the CPU)."""
        if self.device.type == "cpu":
            return
        sync = device_backend(self.device, memory=False).sync
        if sync is not None:
            sync()
