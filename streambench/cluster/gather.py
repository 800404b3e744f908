"""Gathering every rank's :class:`~streambench.cluster.RankSummary` without deadlocks: the
roll call through the process group's store, then (when every rank arrived) one collective.
See :mod:`streambench.cluster` for the protocol. Nothing here imports torch."""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from typing import Any

from ..ranks import torch_distributed
from .summary import ClusterSummary, RankSummary, find_problems, summarize_rank

__all__ = ["GATHER_SEQUENCE", "GatherSequence", "gather_entry", "gather_summaries"]


class GatherSequence:
    """How many gathers this process has started per process group. Every rank counts its own
    calls, so the n-th :func:`gather_summaries` of each rank meets the others' n-th under the
    same store keys (``streambench/gather/<group>/<n>``). One per process:
    :data:`GATHER_SEQUENCE`."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def next(self, tag: str) -> int:
        """The number of this gather for the group ``tag`` (1 for the first)."""
        self._counts[tag] = self._counts.get(tag, 0) + 1
        return self._counts[tag]


#: the process's gather counter
GATHER_SEQUENCE = GatherSequence()


def _group_ranks(dist: Any, group: Any) -> list[int]:
    if group is None:
        return list(range(dist.get_world_size()))
    return [int(r) for r in dist.get_process_group_ranks(group)]


def _default_store(dist: Any) -> Any | None:
    try:
        from torch.distributed import distributed_c10d

        return distributed_c10d._get_default_store()
    except (ImportError, AttributeError, RuntimeError, ValueError):
        return None


def _roll_call(
    store: Any, prefix: str, me: int, ranks: list[int], row: dict[str, Any], timeout_s: float
) -> tuple[bool, dict[int, dict[str, Any]]]:
    """Post this rank's row, wait for the others' up to ``timeout_s`` and agree with them on
    whether the collective runs (``True``) or was abandoned (``False``). Never blocks on a peer
    for longer than ``timeout_s`` plus one poll interval."""
    keys = {r: f"{prefix}/row/{r}" for r in ranks}
    state = f"{prefix}/state"
    store.set(keys[me], json.dumps(row))
    deadline = time.monotonic() + timeout_s
    delay = 0.005
    decision: bytes | None = None
    while decision is None:
        if store.check([state]):
            decision = store.get(state)
        elif store.check(list(keys.values())):
            decision = store.compare_set(state, "", "go")
        elif time.monotonic() >= deadline:
            decision = store.compare_set(state, "", "abandoned")
        else:
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
    rows = {}
    for r, key in keys.items():
        if store.check([key]):
            rows[r] = json.loads(store.get(key))
    return decision == b"go", rows


def _single_process(
    mine: RankSummary, timeout_s: float, details: bool, t0: float
) -> ClusterSummary:
    """Without ``torch.distributed`` initialized: a world of this one process."""
    return ClusterSummary(
        world_size=1,
        backend=None,
        this_rank=0,
        ranks=(mine,),
        problems=tuple(find_problems([mine])),
        timeout_s=timeout_s,
        details_gathered=details,
        gather_s=time.perf_counter() - t0,
    )


@dataclass(frozen=True)
class _Group:
    """The process group of one gather, seen from this rank."""

    dist: Any
    group: Any
    me: int
    ranks: list[int]
    backend: str
    store: Any

    @classmethod
    def current(cls, dist: Any, group: Any) -> _Group:
        me = int(dist.get_rank())
        ranks = _group_ranks(dist, group)
        if me not in ranks:
            raise ValueError(f"rank {me} is not in the process group passed to gather_summaries()")
        backend = str(dist.get_backend(group))
        return cls(dist, group, me, ranks, backend, _default_store(dist))

    @property
    def tag(self) -> str:
        return "all" if self.group is None else "-".join(map(str, self.ranks))


def _hold_roll_call(
    g: _Group, mine: RankSummary, timeout_s: float
) -> tuple[bool | None, dict[int, dict[str, Any]], list[str]]:
    """The roll call: ``(go, rows, problems)``. ``go`` is ``True`` (run the collective),
    ``False`` (abandoned after ``timeout_s`` seconds) or ``None`` (the store itself failed).
    Without a store, or alone in the group, straight to the collective."""
    key = f"streambench/gather/{g.tag}/{GATHER_SEQUENCE.next(g.tag)}"
    if g.store is None or len(g.ranks) <= 1:
        return True, {}, []
    try:
        go, rows = _roll_call(g.store, key, g.me, g.ranks, mine.row(), timeout_s)
    except Exception as exc:  # noqa: BLE001 - e.g. the rank hosting the store is gone
        why = f"the process group's store failed on rank {g.me} ({exc!r}): no collective ran"
        return None, {}, [why]
    if go:
        return go, rows, []
    return (
        go,
        rows,
        [
            f"gather abandoned: a rank waited more than {timeout_s:g} s for the others, so "
            "no collective ran and the per-token details were not exchanged"
        ],
    )


def _exchange_details(
    g: _Group, mine: RankSummary, *, dst: int | None, details: bool
) -> tuple[dict[int, RankSummary], bool, list[str]]:
    """The collective (every rank arrived): ``(summaries received, details gathered,
    problems)``. A failing collective becomes a problem line, never an exception."""
    payload = mine.to_dict() if details else mine.row()
    received: dict[int, RankSummary] = {}
    try:
        if dst is None or g.store is None:  # without a store, every rank needs the rows
            out: list[Any] = [None] * len(g.ranks)
            g.dist.all_gather_object(out, payload, group=g.group)
        else:
            out = [None] * len(g.ranks) if g.me == dst else []
            g.dist.gather_object(payload, out if g.me == dst else None, dst=dst, group=g.group)
        for item in out:
            if item is not None:
                received[int(item["rank"])] = RankSummary.from_row(item)
        return received, bool(out) and details, []
    except Exception as exc:  # noqa: BLE001 - report, do not crash the benchmark
        return received, False, [f"collective {g.backend} gather failed on rank {g.me}: {exc!r}"]


def _ordered_rows(
    summaries: dict[int, RankSummary], ranks: list[int], timeout_s: float, gathered: bool
) -> tuple[RankSummary, ...]:
    """Every rank of the group in order, those that never arrived marked ``missing``."""
    for r in ranks:
        if r not in summaries:
            summaries[r] = RankSummary(
                rank=r,
                status="missing",
                error=f"did not reach gather_summaries() within {timeout_s:g} s "
                "(crashed, hung in a collective, or called it fewer times than the others)",
            )
    ordered = tuple(summaries[r] for r in ranks)
    if not gathered:  # rows came from the roll call: strip the local-only details for symmetry
        ordered = tuple(
            RankSummary.from_row(s.row()) if s.details is not None else s for s in ordered
        )
    return ordered


def gather_summaries(
    source: Any = None,
    *,
    error: BaseException | str | None = None,
    warmup: int = 0,
    group: Any = None,
    dst: int | None = None,
    timeout_s: float = 300.0,
    details: bool = True,
) -> ClusterSummary:
    """Gather every rank's timings into one :class:`ClusterSummary`. Call it on *every* rank of
    ``group`` (default: all ranks), also on a rank whose ``generate()`` raised (pass
    ``error=exc``).

    Args:
        source: this rank's timings: a :class:`~streambench.TimingStreamer`, a ``RunResult``, a
            list of them, an object with ``.runs`` or ``.streamer`` (``BenchmarkWrapper``), an
            exception (same as ``error=``) or ``None`` (no run).
        error: this rank failed; its row says so and the others still get their view.
        warmup: runs to skip at the start of each rank's list.
        group: a ``torch.distributed`` process group (default: the default group).
        dst: ``None``: every rank receives every rank's per-token ``details``
            (``all_gather_object``); a global rank: only that rank does (``gather_object``). The
            small per-rank rows (what :meth:`ClusterSummary.table` shows) reach every rank.
        timeout_s: how long a rank waits for the others at the roll call, seconds. Ranks that
            do not arrive in time are reported ``missing`` and no collective runs.
        details: gather each measured run's per-token data (:meth:`RunResult.to_dict`).

    On nccl (and xccl) the collective moves the pickled data through this rank's current
    device: select it first (``torch.cuda.set_device(LOCAL_RANK)``; :func:`init_distributed`,
    torchrun + ``tp_plan="auto"`` and DeepSpeed do).

    Without ``torch.distributed`` initialized this summarizes the one process (world size 1).
    Never raises because of another rank; a failing collective (after every rank arrived)
    becomes a problem line.
    """
    t0 = time.perf_counter()
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be > 0 seconds, got {timeout_s}")
    mine = summarize_rank(source, error=error, warmup=warmup, details=details)
    dist = torch_distributed()
    if dist is None:
        return _single_process(mine, timeout_s, details, t0)
    g = _Group.current(dist, group)
    go, rows, problems = _hold_roll_call(g, mine, timeout_s)
    summaries = {r: RankSummary.from_row(row) for r, row in rows.items()}
    summaries[g.me] = mine
    gathered = details if len(g.ranks) == 1 else False
    if len(g.ranks) > 1 and go and (details or g.store is None):
        received, gathered, failed = _exchange_details(g, mine, dst=dst, details=details)
        summaries.update(received)
        problems += failed
    ordered = _ordered_rows(summaries, g.ranks, timeout_s, gathered)
    return ClusterSummary(
        world_size=len(g.ranks),
        backend=g.backend,
        this_rank=g.me,
        ranks=ordered,
        problems=tuple(find_problems(ordered) + problems),
        timeout_s=timeout_s,
        details_gathered=gathered,
        gather_s=time.perf_counter() - t0,
    )


def gather_entry(entry: Any, *, timeout_s: float = 600.0) -> Any:
    """``streambench run``'s cross-rank step, after each configuration on every rank: gathers
    every rank's runs (:func:`gather_summaries`, details to rank 0) and returns, on rank 0, the
    configuration with ``ranks`` = :meth:`ClusterSummary.to_dict` (per-rank rows and per-token
    details, the slowest rank, problems). A configuration that went wrong on any rank is
    ``"failed"`` with the problems as its error. Other ranks get their own configuration back.

    ``entry``: a :class:`~streambench.results.schema.ConfigurationResult` (what the runner
    builds: the one returned is a copy with ``ranks`` in its ``extra``) or a configuration
    object (a dict, as a results file holds it: a dict is returned)."""
    typed = not isinstance(entry, dict)
    if typed:
        status, error = entry.status, entry.error
        warm = [r.to_dict() for r in entry.warmup_runs]
        runs = warm + [r.to_dict() for r in entry.trials]
    else:
        status, error = entry.get("status"), entry.get("error")
        warm = list(entry.get("warmup_runs") or [])
        runs = warm + list(entry.get("trials") or [])
    failed = status not in ("ok", "pending")
    cluster = gather_summaries(
        runs,
        error=(error or status) if failed else None,
        warmup=len(warm),
        dst=0,
        timeout_s=timeout_s,
    )
    if cluster.this_rank != 0:
        return entry
    if cluster.world_size > 1:
        cluster.report(force=True)  # the per-rank table, on the writer
    out = copy.copy(entry) if typed else dict(entry)
    if typed:
        from ..results.percentiles import statistics_tree

        # as a results file reads it back (the ranks' statistics in the results/2 form)
        out.extra = {**entry.extra, "ranks": statistics_tree(cluster.to_dict())}
    else:
        out["ranks"] = cluster.to_dict()
    if status == "ok" and not cluster.ok:
        problems = "; ".join(cluster.problems)
        if typed:
            out.status, out.error = "failed", problems
        else:
            out["status"], out["error"] = "failed", problems
    return out
