"""Several ranks (``torch.distributed``): one cross-rank view of the timings.

Tensor-parallel inference (DeepSpeed AutoTP, transformers ``tp_plan="auto"`` under ``torchrun``)
runs one process per device. Every rank times its own ``generate()`` with its own
:class:`~streambench.TimingStreamer`; this module gathers every rank's timings into one
:class:`ClusterSummary` (:func:`gather_summaries`): per-rank first token, rest tokens and peak
memory, and the slowest rank, which is what a user of a tensor-parallel model waits for. Who
prints is decided in :mod:`streambench.ranks`.

How the gather avoids deadlocks. A collective only works when every rank of the group calls it.
A rank whose ``generate()`` raised, or that is stuck in the model's own all-reduce because a peer
died, would leave its peers blocked forever. So :func:`gather_summaries` first holds a *roll call*
through the process group's key-value store (the ``TCPStore`` that ``torchrun``, ``deepspeed``
and ``init_process_group`` set up), which never blocks on a peer: each rank posts its summary row
(or its error), then waits for the others' rows up to ``timeout_s``. The ranks agree atomically
(``store.compare_set``) on one outcome: either all arrived and they run the collective
(``all_gather_object`` / ``gather_object`` on the group's backend: gloo, nccl, xccl, ccl) for the
per-token details, or the wait timed out and every rank returns the rows that did arrive, the
others marked ``missing``. Failed ranks, ranks that generated a different number of tokens and
incomplete runs are listed in :attr:`ClusterSummary.problems`.

Example (every rank runs this)::

    streamer = TimingStreamer(device, do_print=True)   # prints on rank 0 only
    try:
        model.generate(ids, streamer=streamer, max_new_tokens=64, min_new_tokens=64)
        error = None
    except Exception as exc:   # join the gather anyway, with the error
        error = exc
    cluster = gather_summaries(streamer, error=error)
    cluster.report()           # one table, printed on rank 0

Nothing here imports torch at module import time.
"""

from __future__ import annotations

from .gather import GATHER_SEQUENCE, GatherSequence, gather_entry, gather_summaries
from .summary import ClusterSummary, RankSummary, find_problems, summarize_rank

__all__ = [
    "GATHER_SEQUENCE",
    "ClusterSummary",
    "GatherSequence",
    "RankSummary",
    "find_problems",
    "gather_entry",
    "gather_summaries",
    "summarize_rank",
]
