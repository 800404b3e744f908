"""One rank's timings (:class:`RankSummary`) and the cross-rank view (:class:`ClusterSummary`):
per-rank rows, the slowest rank, the problems. Seconds and bytes; the table shows GiB.

How the rows travel between ranks is :mod:`streambench.cluster.gather`. Nothing here imports
torch.
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ..ranks import get_rank, should_print
from ..stats import Stats, describe
from ..units import GiB

if TYPE_CHECKING:
    from ..timing import RunResult

__all__ = ["ClusterSummary", "RankSummary", "find_problems", "summarize_rank"]


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
    from ..timing import RunResult

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
