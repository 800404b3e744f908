"""Several ranks (``torch.distributed``): who prints, and one cross-rank view of the timings.

Tensor-parallel inference (DeepSpeed AutoTP, transformers ``tp_plan="auto"`` under ``torchrun``)
runs one process per device. Every rank times its own ``generate()`` with its own
:class:`~streambench.TimingStreamer`; this module

- decides which ranks print (:func:`should_print`; rank 0 by default, see :func:`set_print_ranks`
  and the ``STREAMBENCH_PRINT_RANKS`` environment variable), and
- gathers every rank's timings into one :class:`ClusterSummary` (:func:`gather_summaries`):
  per-rank first token, rest tokens and peak memory, and the slowest rank, which is what a user
  of a tensor-parallel model waits for.

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

import json
import math
import os
import socket
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Union

from .stats import Stats, describe

if TYPE_CHECKING:
    from .timing import RunResult

__all__ = [
    "PRINT_RANKS_ENV",
    "ClusterSummary",
    "RankSummary",
    "gather_summaries",
    "get_print_ranks",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_initialized",
    "set_print_ranks",
    "should_print",
    "tensor_parallel_kwargs",
]

PRINT_RANKS_ENV = "STREAMBENCH_PRINT_RANKS"
GiB = 1024**3

PrintRanks = Union[int, str, Iterable[int], None]

_UNSET: Any = object()
_print_ranks: Any = _UNSET  # frozenset of ranks, or None for every rank; parsed on first use
_gather_seq: dict[str, int] = {}


# -- rank awareness ----------------------------------------------------------------------------
def _dist() -> Any | None:
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
    return _dist() is not None


def get_rank() -> int | None:
    """This process's global rank, or ``None`` when ``torch.distributed`` is not initialized."""
    dist = _dist()
    return None if dist is None else int(dist.get_rank())


def get_world_size() -> int:
    """Number of ranks in the default process group (1 when not initialized)."""
    dist = _dist()
    return 1 if dist is None else int(dist.get_world_size())


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


def set_print_ranks(ranks: PrintRanks) -> None:
    """Which ranks print reports by default (streamers built with ``print_ranks=None`` and
    :meth:`ClusterSummary.report`). Default: ``$STREAMBENCH_PRINT_RANKS``, else rank 0.
    ``"all"`` lets every rank print."""
    global _print_ranks
    _print_ranks = parse_print_ranks(ranks)


def get_print_ranks() -> frozenset[int] | None:
    """The default print ranks (``None`` = every rank)."""
    global _print_ranks
    if _print_ranks is _UNSET:
        _print_ranks = parse_print_ranks(os.environ.get(PRINT_RANKS_ENV, "0"))
    return _print_ranks  # type: ignore[no-any-return]


def should_print(print_ranks: PrintRanks | object = _UNSET) -> bool:
    """Whether this process should print: always when ``torch.distributed`` is not initialized,
    else when its rank is in ``print_ranks`` (default :func:`get_print_ranks`).

    One ``is_initialized()`` check; call it once per report, not per token."""
    rank = get_rank()
    if rank is None:
        return True
    ranks = get_print_ranks() if print_ranks is _UNSET else parse_print_ranks(print_ranks)  # type: ignore[arg-type]
    return ranks is None or rank in ranks


# -- setting up ---------------------------------------------------------------------------------
def init_distributed(
    device: Any = None, *, backend: str | None = None, timeout_s: float = 1800.0
) -> bool:
    """Initialize the default process group from the launcher's environment (``torchrun``,
    ``deepspeed``: ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``), with a timeout.

    No-op (returns ``False``) when already initialized or when ``WORLD_SIZE`` is unset or 1.
    ``backend`` defaults to the device's (``cuda`` -> nccl, ``xpu`` -> xccl, ``cpu`` -> gloo);
    for accelerators the device ``LOCAL_RANK`` is selected first. ``timeout_s`` bounds every
    collective, so a rank that died cannot hang the others longer than that.
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


def tensor_parallel_kwargs(tp_plan: Any = "auto") -> dict[str, Any]:
    """``from_pretrained`` keyword arguments that load a model tensor-parallel across the ranks
    of the launch, in the spelling of the installed transformers: ``distributed_config=
    DistributedConfig(tp_plan=...)`` where it exists (5.x), else ``tp_plan=...`` (4.50+)."""
    try:
        from transformers.distributed import DistributedConfig
    except ImportError:
        DistributedConfig = None
    fields = getattr(DistributedConfig, "__dataclass_fields__", {})
    if DistributedConfig is not None and "tp_plan" in fields:
        return {"distributed_config": DistributedConfig(tp_plan=tp_plan)}
    return {"tp_plan": tp_plan}


# -- per-rank rows -----------------------------------------------------------------------------
def _median(values: Sequence[float | None]) -> float | None:
    stats = describe(v for v in values if v is not None)
    return stats.median if stats else None


@dataclass(frozen=True)
class RankSummary:
    """One rank's timings over its measured runs (warm-up runs skipped). Times in seconds,
    memory in bytes; the per-run tuples have one entry per measured run, oldest first.

    ``status``: ``"ok"``; ``"failed"`` (the rank passed an error, see ``error``); ``"empty"``
    (no measured run); ``"missing"`` (the rank did not reach the gather within the timeout: it
    crashed, hung, or called :func:`gather_summaries` fewer times than the others).
    ``details``: each measured run's :meth:`RunResult.to_dict` (per-token lists included), present
    when the collective ran and this rank received it."""

    rank: int
    status: str
    error: str | None = None
    host: str | None = None
    pid: int | None = None
    local_rank: int | None = None
    device: str | None = None
    warmup: int = 0
    recorded_runs: int = 0
    new_tokens: tuple[int, ...] = ()
    first_token_s: tuple[float | None, ...] = ()
    rest_token_mean_s: tuple[float | None, ...] = ()
    peak_memory_bytes: tuple[int | None, ...] = ()
    complete: tuple[bool, ...] = ()
    memory_kind: str | None = None
    details: tuple[dict[str, Any], ...] | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def runs(self) -> int:
        """Measured runs (after warm-up)."""
        return len(self.new_tokens)

    @property
    def incomplete(self) -> int:
        """Measured runs whose ``generate()`` never ended."""
        return sum(1 for c in self.complete if not c)

    def _good(self, values: Sequence[Any]) -> list[Any]:
        return [v for v, c in zip(values, self.complete) if c and v is not None]

    @property
    def first_token_median_s(self) -> float | None:
        """Median time to first token over the complete measured runs, seconds."""
        return _median(self._good(self.first_token_s))

    @property
    def rest_token_median_s(self) -> float | None:
        """Median over complete measured runs of the mean seconds per token after the first."""
        return _median(self._good(self.rest_token_mean_s))

    @property
    def peak_memory_max_bytes(self) -> int | None:
        """Largest peak memory over the measured runs, bytes (``memory_kind`` says which)."""
        peaks = [p for p in self.peak_memory_bytes if p is not None]
        return max(peaks) if peaks else None

    def row(self) -> dict[str, Any]:
        """The small JSON-friendly record exchanged in the roll call (no ``details``)."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "details"}
        for k, v in out.items():
            if isinstance(v, tuple):
                out[k] = list(v)
        return out

    def to_dict(self) -> dict[str, Any]:
        out = self.row()
        out["runs"] = self.runs
        out["incomplete"] = self.incomplete
        out["first_token_median_s"] = self.first_token_median_s
        out["rest_token_median_s"] = self.rest_token_median_s
        out["peak_memory_max_bytes"] = self.peak_memory_max_bytes
        if self.details is not None:
            out["details"] = list(self.details)
        return out

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> RankSummary:
        kwargs = {k: row[k] for k in cls.__dataclass_fields__ if k in row}
        for k, v in kwargs.items():
            if isinstance(v, list):
                kwargs[k] = tuple(v)
        return cls(**kwargs)


class _RunView:
    """Dict-style read access to a RunResult (so rows can come from RunResults or to_dict())."""

    __slots__ = ("run",)

    def __init__(self, run: RunResult) -> None:
        self.run = run

    def __getitem__(self, key: str) -> Any:
        return getattr(self.run, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self.run, key, default)

    def to_dict(self) -> dict[str, Any]:
        return self.run.to_dict()


def _runs_of(source: Any) -> list[Any]:
    from .timing import RunResult

    if isinstance(source, RunResult):
        return [source]
    if isinstance(source, (list, tuple)):
        return list(source)  # RunResults or RunResult.to_dict() dicts
    for attr in ("runs", "streamer"):
        value = getattr(source, attr, None)
        if value is None:
            continue
        if attr == "streamer":
            return _runs_of(value)
        return list(value)
    raise TypeError(
        "gather_summaries() takes a TimingStreamer, a RunResult, a list of RunResults (or of "
        "their to_dict()), an "
        f"object with .runs or .streamer (BenchmarkWrapper), an exception, or None; got "
        f"{type(source).__name__}"
    )


def _format_error(error: BaseException | str) -> str:
    if isinstance(error, BaseException):
        text = f"{type(error).__name__}: {error}"
    else:
        text = str(error)
    return text if len(text) <= 2000 else text[:1997] + "..."


def summarize_rank(
    source: Any = None,
    *,
    error: BaseException | str | None = None,
    warmup: int = 0,
    rank: int | None = None,
    details: bool = True,
) -> RankSummary:
    """This rank's :class:`RankSummary` (what :func:`gather_summaries` contributes)."""
    if isinstance(source, BaseException) and error is None:
        source, error = None, source
    rank = get_rank() if rank is None else rank
    local = os.environ.get("LOCAL_RANK")
    base: dict[str, Any] = dict(
        rank=rank if rank is not None else 0,
        host=socket.gethostname(),
        pid=os.getpid(),
        local_rank=int(local) if local and local.isdigit() else None,
        warmup=warmup,
    )
    runs = [] if source is None else _runs_of(source)
    base["recorded_runs"] = len(runs)
    # RunResult objects, or their to_dict() form (what result files hold)
    measured = [r if isinstance(r, dict) else _RunView(r) for r in runs[warmup:]]
    if runs:
        base["device"] = measured[-1]["device"] if measured else _RunView(runs[-1])["device"]
    kinds = {r["memory_kind"] for r in measured if r.get("memory_kind")}
    base["memory_kind"] = kinds.pop() if len(kinds) == 1 else None
    base.update(
        new_tokens=tuple(int(r["new_tokens"]) for r in measured),
        first_token_s=tuple(r.get("first_token_s") for r in measured),
        rest_token_mean_s=tuple(r.get("rest_token_mean_s") for r in measured),
        peak_memory_bytes=tuple(r.get("peak_memory_bytes") for r in measured),
        complete=tuple(bool(r.get("complete", True)) for r in measured),
    )
    if details:
        base["details"] = tuple(r.to_dict() if isinstance(r, _RunView) else r for r in measured)
    if error is not None:
        return RankSummary(status="failed", error=_format_error(error), **base)
    if not measured:
        why = (
            f"no measured run: {len(runs)} run(s) recorded, warmup={warmup}"
            if runs
            else "no run recorded (was the streamer passed to generate()?)"
        )
        return RankSummary(status="empty", error=why, **base)
    return RankSummary(status="ok", **base)


# -- the cross-rank view -----------------------------------------------------------------------
@dataclass(frozen=True)
class ClusterSummary:
    """Every rank's :class:`RankSummary` and the slowest rank's numbers. Seconds and bytes.

    ``ranks`` is ordered by rank and includes ``missing`` ranks (status ``"missing"``).
    ``problems``: one line per failed, empty or missing rank, per run whose token count differs
    between ranks, per rank with incomplete runs; empty when everything matched.
    ``this_rank``: the rank that holds this object. ``details_gathered``: whether the collective
    ran (when it did not, the rows came from the roll call only, without ``details``).

    Cross-rank numbers (the slowest rank decides what a user waits for): for each measured run,
    the largest first-token time and rest-token mean over the ranks; :attr:`first_token_s` and
    :attr:`rest_token_mean_s` describe those per-run maxima over the runs (``Stats``).
    """

    world_size: int
    backend: str | None
    this_rank: int
    ranks: tuple[RankSummary, ...]
    problems: tuple[str, ...] = ()
    timeout_s: float | None = None
    details_gathered: bool = False
    gather_s: float | None = None

    @property
    def ok(self) -> bool:
        """No problem: every rank reported, none failed, the token counts match."""
        return not self.problems

    @property
    def missing(self) -> tuple[int, ...]:
        return tuple(r.rank for r in self.ranks if r.status == "missing")

    @property
    def failed(self) -> tuple[int, ...]:
        return tuple(r.rank for r in self.ranks if r.status == "failed")

    def _aligned(self) -> list[RankSummary]:
        """Ranks whose measured runs can be compared run by run."""
        good = [r for r in self.ranks if r.ok]
        counts = {r.runs for r in good}
        return good if len(counts) == 1 else []

    def _per_run_max(self, attr: str) -> list[float]:
        ranks = self._aligned()
        if not ranks:
            return []
        out = []
        for i in range(ranks[0].runs):
            if not all(r.complete[i] for r in ranks):
                continue
            values = [getattr(r, attr)[i] for r in ranks]
            if any(v is None for v in values):
                continue
            out.append(max(values))
        return out

    @property
    def first_token_s(self) -> Stats | None:
        """Per run: the slowest rank's time to first token; statistics over the runs."""
        return describe(self._per_run_max("first_token_s"))

    @property
    def rest_token_mean_s(self) -> Stats | None:
        """Per run: the slowest rank's mean seconds per token after the first; over the runs."""
        return describe(self._per_run_max("rest_token_mean_s"))

    @property
    def peak_memory_bytes(self) -> int | None:
        """The largest peak memory of any rank, bytes."""
        peaks = [r.peak_memory_max_bytes for r in self.ranks if r.peak_memory_max_bytes]
        return max(peaks) if peaks else None  # type: ignore[type-var]

    def _slowest(self, key: Callable[[RankSummary], Any]) -> int | None:
        scored = [(key(r), -r.rank) for r in self.ranks if r.ok and key(r) is not None]
        return -max(scored)[1] if scored else None  # ties: the lowest rank

    @property
    def slowest_rank(self) -> dict[str, int | None]:
        """The rank with the largest median first-token time, rest-token time and peak memory."""
        return {
            "first_token": self._slowest(lambda r: r.first_token_median_s),
            "rest_token": self._slowest(lambda r: r.rest_token_median_s),
            "peak_memory": self._slowest(lambda r: r.peak_memory_max_bytes),
        }

    def rank(self, rank: int) -> RankSummary:
        for r in self.ranks:
            if r.rank == rank:
                return r
        raise KeyError(f"no rank {rank} in this summary (world size {self.world_size})")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serializable data: per-rank rows (with ``details`` where gathered), the
        cross-rank maxima and the problems."""
        ft, rt = self.first_token_s, self.rest_token_mean_s
        return {
            "world_size": self.world_size,
            "backend": self.backend,
            "ok": self.ok,
            "problems": list(self.problems),
            "missing": list(self.missing),
            "failed": list(self.failed),
            "slowest_rank": self.slowest_rank,
            "max_over_ranks": {
                "first_token_s": ft.to_dict() if ft else None,
                "rest_token_mean_s": rt.to_dict() if rt else None,
                "peak_memory_bytes": self.peak_memory_bytes,
            },
            "details_gathered": self.details_gathered,
            "timeout_s": self.timeout_s,
            "gather_s": self.gather_s,
            "ranks": [r.to_dict() for r in self.ranks],
        }

    def table(self) -> str:
        """A fixed-width table: one line per rank (medians over its measured runs, peak memory
        in GiB), then the slowest rank's line, then the problems."""
        ranks = [r for r in self.ranks]
        runs = {r.runs for r in ranks if r.ok}
        warm = {r.warmup for r in ranks}
        head = (
            f"streambench: {self.world_size} rank(s)"
            + (f" ({self.backend})" if self.backend else "")
            + (f", {runs.pop()} measured run(s) each" if len(runs) == 1 else "")
            + (f", warm-up {warm.pop()}" if len(warm) == 1 else "")
        )
        hosts = max([len(r.host or "-") for r in ranks] + [4])
        lines = [
            head,
            f"{'rank':>4}  {'host':<{hosts}}  {'device':<7} {'status':<8} {'tokens':>6} "
            f"{'first token (s)':>16} {'rest (s/token)':>15} {'peak mem (GiB)':>15}",
        ]

        def num(v: float | None, fmt: str) -> str:
            return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)

        for r in ranks:
            toks = set(r.new_tokens)
            tok = str(toks.pop()) if len(toks) == 1 else ("mixed" if toks else "-")
            peak = r.peak_memory_max_bytes
            lines.append(
                f"{r.rank:>4}  {(r.host or '-'):<{hosts}}  {(r.device or '-'):<7} {r.status:<8} "
                f"{tok:>6} {num(r.first_token_median_s, '{:.4f}'):>16} "
                f"{num(r.rest_token_median_s, '{:.4f}'):>15} "
                f"{num(peak / GiB if peak else None, '{:.4f}'):>15}"
            )
        ft, rt, peak = self.first_token_s, self.rest_token_mean_s, self.peak_memory_bytes
        slow = self.slowest_rank

        def tag(v: str, rank: int | None) -> str:
            return f"{v} (r{rank})" if v != "-" and rank is not None else v

        lines.append(
            f"{'max':>4}  {'':<{hosts}}  {'':<7} {'':<8} {'':>6} "
            f"{tag(num(ft.median if ft else None, '{:.4f}'), slow['first_token']):>16} "
            f"{tag(num(rt.median if rt else None, '{:.4f}'), slow['rest_token']):>15} "
            f"{tag(num(peak / GiB if peak else None, '{:.4f}'), slow['peak_memory']):>15}"
        )
        if self.problems:
            lines.append("problems:")
            lines.extend(f"  - {p}" for p in self.problems)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def report(self, print_fn: Callable[[str], Any] = print, *, force: bool = False) -> bool:
        """Print :meth:`table` on the print ranks (rank 0 by default, see
        :func:`set_print_ranks`); ``force=True`` prints here regardless. Returns whether it
        printed."""
        if not (force or should_print()):
            return False
        print_fn(self.table())
        return True


def find_problems(ranks: Sequence[RankSummary]) -> list[str]:
    """Lines describing failed / empty / missing ranks, incomplete runs and token-count or
    run-count mismatches between ranks."""
    problems: list[str] = []
    for r in ranks:
        if r.status == "failed":
            problems.append(f"rank {r.rank} failed: {r.error}")
        elif r.status == "empty":
            problems.append(f"rank {r.rank}: {r.error}")
        elif r.status == "missing":
            problems.append(f"rank {r.rank} missing: {r.error}")
        if r.incomplete:
            problems.append(
                f"rank {r.rank}: {r.incomplete} of {r.runs} measured run(s) incomplete "
                "(generate() raised or was interrupted)"
            )
    good = [r for r in ranks if r.ok]
    counts = {r.runs for r in good}
    if len(counts) > 1:
        problems.append(
            "ranks measured different numbers of runs: "
            + ", ".join(f"rank {r.rank}: {r.runs}" for r in good)
        )
    else:
        for i in range(min(counts) if counts else 0):
            toks = {r.new_tokens[i] for r in good}
            if len(toks) > 1:
                problems.append(
                    f"ranks generated different numbers of tokens in measured run {i + 1}: "
                    + ", ".join(f"rank {r.rank}: {r.new_tokens[i]}" for r in good)
                )
    return problems


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
    dist = _dist()
    if dist is None:
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
    me = int(dist.get_rank())
    ranks = _group_ranks(dist, group)
    if me not in ranks:
        raise ValueError(f"rank {me} is not in the process group passed to gather_summaries()")
    backend = str(dist.get_backend(group))
    tag = "all" if group is None else "-".join(map(str, ranks))
    seq = _gather_seq[tag] = _gather_seq.get(tag, 0) + 1
    store = _default_store(dist)
    problems: list[str] = []
    go: bool | None
    if store is not None and len(ranks) > 1:
        try:
            go, rows = _roll_call(
                store, f"streambench/gather/{tag}/{seq}", me, ranks, mine.row(), timeout_s
            )
        except Exception as exc:  # noqa: BLE001 - e.g. the rank hosting the store is gone
            go, rows = None, {}
            problems.append(
                f"the process group's store failed on rank {me} ({exc!r}): no collective ran"
            )
    else:  # no store to hold a roll call on: straight to the collective
        go, rows = True, {}
    summaries: dict[int, RankSummary] = {r: RankSummary.from_row(row) for r, row in rows.items()}
    summaries[me] = mine
    gathered = False
    if len(ranks) > 1 and go and (details or store is None):
        payload = mine.to_dict() if details else mine.row()
        try:
            if dst is None or store is None:  # without a store, every rank needs the rows
                out: list[Any] = [None] * len(ranks)
                dist.all_gather_object(out, payload, group=group)
            else:
                out = [None] * len(ranks) if me == dst else []
                dist.gather_object(payload, out if me == dst else None, dst=dst, group=group)
            for item in out:
                if item is not None:
                    summaries[int(item["rank"])] = RankSummary.from_row(item)
            gathered = bool(out) and details
        except Exception as exc:  # noqa: BLE001 - report, do not crash the benchmark
            problems.append(f"collective {backend} gather failed on rank {me}: {exc!r}")
    elif len(ranks) == 1:
        gathered = details
    if go is False:
        problems.append(
            f"gather abandoned: a rank waited more than {timeout_s:g} s for the others, so "
            "no collective ran and the per-token details were not exchanged"
        )
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
    return ClusterSummary(
        world_size=len(ranks),
        backend=backend,
        this_rank=me,
        ranks=ordered,
        problems=tuple(find_problems(ordered) + problems),
        timeout_s=timeout_s,
        details_gathered=gathered,
        gather_s=time.perf_counter() - t0,
    )


# -- `streambench run` under torchrun / deepspeed ------------------------------------------------
TP_MODES = ("auto", "none", "transformers", "deepspeed")
TP_ENV = "STREAMBENCH_TP"


def launched_world_size() -> int:
    """``WORLD_SIZE`` set by the launcher (``torchrun``, ``deepspeed``), 1 without one."""
    try:
        return max(int(os.environ.get("WORLD_SIZE", "1")), 1)
    except ValueError:
        return 1


def resolve_tp_mode(mode: str | None = None) -> str:
    """``--tp`` (or ``$STREAMBENCH_TP``) -> ``"none"``, ``"transformers"`` or ``"deepspeed"``.

    ``auto`` (default): transformers' tensor parallelism (``tp_plan="auto"``) when launched
    with more than one rank, else none. ``none`` under a launcher: every rank runs a full
    replica (each on its own device)."""
    text = str(mode or os.environ.get(TP_ENV) or "auto").strip().lower()
    if text not in TP_MODES:
        raise ValueError(
            f"unknown tensor-parallel mode {text!r}: use one of {', '.join(TP_MODES)} "
            f"(--tp or ${TP_ENV})"
        )
    if text == "auto":
        return "transformers" if launched_world_size() > 1 else "none"
    return text


def rank_device(device: Any) -> Any:
    """Under a launcher, an accelerator without an index (``cuda``, ``xpu``) becomes this
    rank's own (``cuda:LOCAL_RANK``); anything else is returned unchanged."""
    import torch

    dev = torch.device(device) if not isinstance(device, torch.device) else device
    if launched_world_size() > 1 and dev.type in ("cuda", "xpu") and dev.index is None:
        return torch.device(dev.type, int(os.environ.get("LOCAL_RANK", "0")))
    return dev


def load_model_tensor_parallel(
    spec: Any, settings: Any, device: Any, mode: str, load_plain: Callable[..., Any]
) -> Any:
    """Load ``spec`` split over the ranks of the launch; returns the sweep's ``LoadedModel``.

    ``mode="transformers"``: ``from_pretrained(..., distributed_config=DistributedConfig(
    tp_plan="auto"))`` (needs ``accelerate``; the embedded tiny model is written to a
    rank-local temporary folder first; random-weight presets need ``--tp deepspeed``).
    ``mode="deepspeed"``: every rank loads the model on the CPU with ``load_plain``, then
    ``deepspeed.init_inference(model, tensor_parallel={"tp_size": WORLD_SIZE}, dtype=...,
    replace_with_kernel_inject=False)`` (AutoTP) shards it; the sharded module is timed.
    ``mode="none"``: ``load_plain`` on this rank's device (one full replica per rank).
    The process group is initialized first (:func:`init_distributed`, 30 min timeout)."""
    import dataclasses
    import tempfile
    from pathlib import Path

    import torch

    from .sweep import LoadedModel, UsageError, _load_tokenizer, resolve_dtype

    device = rank_device(device)
    if mode == "none":
        init_distributed(device)
        return load_plain(spec, settings, device)
    t0 = time.perf_counter()
    dtype = resolve_dtype(settings.dtype, device)
    notes: list[str] = []
    if mode == "deepspeed":
        try:
            import deepspeed
        except ImportError:
            raise UsageError(
                "--tp deepspeed needs DeepSpeed: pip install 'streambench[distributed]'"
            ) from None
        init_distributed(device)
        deepspeed.init_distributed(dist_backend=str(_dist().get_backend()))  # type: ignore[union-attr]
        loaded = load_plain(spec, settings, torch.device("cpu"))
        engine = deepspeed.init_inference(
            loaded.model,
            tensor_parallel={"tp_size": get_world_size()},
            dtype=dtype,
            replace_with_kernel_inject=False,
        )
        model = engine.module.to(device).eval()
        notes.append(f"DeepSpeed AutoTP over {get_world_size()} ranks")
        return dataclasses.replace(
            loaded, model=model, device=device, load_time_s=time.perf_counter() - t0,
            notes=[*loaded.notes, *notes],
        )  # fmt: skip
    if mode != "transformers":
        raise ValueError(f"unknown tensor-parallel mode {mode!r}")
    if settings.low_bit or settings.ipex:
        raise UsageError("--tp transformers cannot be combined with --low-bit or --ipex")
    from transformers import AutoModelForCausalLM

    kwargs = dict(tensor_parallel_kwargs())
    kwargs["dtype" if _accepts_dtype() else "torch_dtype"] = dtype
    with tempfile.TemporaryDirectory(prefix="streambench-tp-") as tmp:
        tokenizer = None
        if spec.kind == "pretrained":
            source = spec.source or spec.name
        elif spec.kind == "embedded":
            plain = load_plain(spec, settings, torch.device("cpu"))
            tokenizer = plain.tokenizer
            _save_rank_local(plain.model, Path(tmp))
            source, plain = tmp, None
        else:
            raise UsageError(
                f"--tp transformers loads weights from disk; {spec.name} is a random-weight "
                "config: use --tp deepspeed, or pass a model directory"
            )
        init_distributed(device)
        model = AutoModelForCausalLM.from_pretrained(
            source, trust_remote_code=settings.trust_remote_code, **kwargs
        ).eval()
    if tokenizer is None:
        tokenizer = _load_tokenizer(source, settings.trust_remote_code)
        if tokenizer is None:
            notes.append("no tokenizer found: prompts are random token ids")
    notes.append(f"transformers tensor parallelism (tp_plan='auto') over {get_world_size()} ranks")
    device = rank_device(getattr(model, "device", device))
    return LoadedModel(
        spec, model, tokenizer, device, dtype, time.perf_counter() - t0, settings.low_bit, notes
    )


def _accepts_dtype() -> bool:
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return (major, minor) >= (4, 56)


def _save_rank_local(model: Any, path: Any) -> None:
    """Write config + safetensors weights on *this* rank (``save_pretrained`` writes on rank 0
    only once a process group exists, and ranks on other nodes do not share its disk)."""
    from safetensors.torch import save_model

    model.config.save_pretrained(path)
    save_model(model, str(path / "model.safetensors"))


def gather_entry(entry: dict[str, Any], *, timeout_s: float = 600.0) -> dict[str, Any]:
    """``streambench run``'s cross-rank step, after each configuration on every rank: gathers
    every rank's runs (:func:`gather_summaries`, details to rank 0) and returns, on rank 0, the
    entry with ``entry["ranks"]`` = :meth:`ClusterSummary.to_dict` (per-rank rows and per-token
    details, the slowest rank, problems). A configuration that went wrong on any rank is
    ``"failed"`` with the problems as its error. Other ranks get their own entry back."""
    failed = entry.get("status") not in ("ok", "pending")
    runs = list(entry.get("warmup_runs") or []) + list(entry.get("trials") or [])
    cluster = gather_summaries(
        runs,
        error=(entry.get("error") or entry.get("status")) if failed else None,
        warmup=len(entry.get("warmup_runs") or []),
        dst=0,
        timeout_s=timeout_s,
    )
    if cluster.this_rank != 0:
        return entry
    if cluster.world_size > 1:
        cluster.report(force=True)  # the per-rank table, on the writer
    out = dict(entry)
    out["ranks"] = cluster.to_dict()
    if entry.get("status") == "ok" and not cluster.ok:
        out["status"] = "failed"
        out["error"] = "; ".join(cluster.problems)
    return out
