"""The driver side of a sweep on a cluster: the plan cut into groups (one per configuration, or
one per loaded model with ``--isolate model``), each group submitted as one task, and the rows
merged into the results document as the tasks finish.

:class:`ClusterDriver` is :class:`streambench.runners.driver.Driver` with its loop replaced: the
results files are still written atomically after every finished row, ``--resume`` keeps the rows
already ``ok``, and Ctrl-C/SIGTERM cancels the outstanding tasks and keeps the finished rows
(the file says ``"interrupted": true``). Rows are kept in the sweep's order whatever order they
finish in. Each row says where it ran (its ``node``: :class:`~streambench.runners.remote.task.
NodeFacts` plus the task's timings).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from ...errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, interrupted_exit_code
from ...results.schema import ConfigurationResult
from ..driver import Driver, Planned, _get, _status
from .task import GroupOutcome

__all__ = ["ClusterDriver", "RemoteRunner"]


class Backend(Protocol):
    kind: str

    def submit(self, key: str, job: dict[str, Any]) -> None: ...

    def finished(self) -> Iterator[tuple[str, GroupOutcome | str, float]]: ...

    def cancel(self) -> int: ...

    def nodes(self) -> int: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Group:
    """Configurations that one task measures, in one worker process (one model load)."""

    key: str
    planned: tuple[Planned, ...]


class RemoteRunner:
    """Cuts the plan of a :class:`~streambench.runners.local.runner.LocalRunner` into groups,
    submits each to ``backend`` and turns each outcome into rows."""

    def __init__(self, local: Any, backend: Backend) -> None:
        self.local, self.backend = local, backend
        self.groups: dict[str, Group] = {}
        self.usage_failures = 0

    def plan(self) -> list[Planned]:
        return list(self.local.plan())

    def submit(self, todo: list[Planned]) -> None:
        from ..local.isolation import job_for

        by_load: dict[Any, list[Planned]] = {}
        for p in todo:
            key = p.id if self.local.isolate == "config" else self.local._load_key(p)
            by_load.setdefault(key, []).append(p)
        device = _task_device(self.local.device)
        for members in by_load.values():
            group = Group(members[0].id, tuple(members))
            self.groups[group.key] = group
            configs = [p.item[1:] for p in members]
            self.backend.submit(group.key, job_for(self.local.settings, members[0].item[0],
                                                   device, configs))  # fmt: skip

    def finished(self) -> Iterator[tuple[ConfigurationResult, int]]:
        """Each row with its progress steps, as its task finishes."""
        for key, outcome, round_trip in self.backend.finished():
            yield from self._rows(self.groups[key], outcome, round_trip)

    def _rows(
        self, group: Group, outcome: GroupOutcome | str, round_trip: float
    ) -> Iterator[tuple[ConfigurationResult, int]]:
        if isinstance(outcome, str):  # the task itself failed (its node died ...)
            for p in group.planned:
                yield self.local._failed_entry(p, "failed", outcome), p.steps
            return
        node = {
            **outcome.node.to_dict(),
            "scheduler": self.backend.kind,
            "task_s": round(outcome.task_s, 4),
            "worker_s": round(outcome.worker_s, 4),
            "round_trip_s": round(round_trip, 4),
        }
        for note in outcome.notes:
            self.local.speaker.note(f"{group.planned[0].item[0].name}: {note}")
        if outcome.load_error:
            self.local.speaker.error(outcome.load_error)
        for i, p in enumerate(group.planned):
            if i < len(outcome.entries):
                entry = ConfigurationResult.from_dict(outcome.entries[i])
            else:
                error = outcome.load_error or outcome.exit_cause or "no result"
                entry = self.local._failed_entry(p, "failed", error)
                self.usage_failures += int(outcome.usage)
            entry.extra["node"] = node
            entry.csv_extra["node"] = outcome.node.name
            if entry.status != "ok" and not outcome.load_error:
                self.local.speaker.error(f"configuration {entry.label} failed: {entry.error}")
            self.local._telemetry_warnings(entry)
            yield entry, p.steps

    def cancel(self) -> int:
        return self.backend.cancel()

    def close(self) -> None:
        self.backend.close()


def _task_device(device: Any) -> str:
    """The device a task times on, as its node names it: the scheduler gives each task its own
    GPUs (``CUDA_VISIBLE_DEVICES``), so ``cuda:1`` here is ``cuda`` there."""
    text = str(device)
    return text.split(":")[0] if text.startswith("cuda") else text


@dataclass
class ClusterDriver(Driver):
    """:class:`~streambench.runners.driver.Driver` for a :class:`RemoteRunner`: every group
    submitted at once, rows kept as they finish."""

    def run(self, runner: Any) -> int:  # type: ignore[override]
        from ...results.report.tables import progress_bar

        plan = runner.plan()
        order = {p.id: i for i, p in enumerate(plan)}
        progress = progress_bar(self.err)
        task = progress.add_task("sweep", total=sum(p.steps for p in plan))
        failures = 0

        def keep(entry: Any) -> None:
            if not isinstance(entry, ConfigurationResult):
                entry = ConfigurationResult.from_dict(entry)
            self.doc["configurations"].append(entry)
            # the sweep's order, whatever the finishing order; rows not planned last
            self.doc["configurations"].sort(key=lambda e: order.get(_get(e, "id"), len(order)))

        self._carry(set(order), keep)
        todo = self._resumed_ok(plan, keep, lambda n: progress.advance(task, n))
        started = time.monotonic()
        try:
            with progress:
                runner.submit(todo)
                progress.update(task, description=f"{len(todo)} task(s) on the cluster")
                for entry, steps in runner.finished():
                    keep(entry)
                    self.save()
                    progress.advance(task, steps)
                    failures += int(runner.local.failed(entry))
                    self.out.print(runner.local.table(entry))
        except KeyboardInterrupt as exc:
            cancelled = runner.cancel()
            self.doc["interrupted"] = True
            self.save()
            self.speaker.error(
                f"interrupted ({exc or 'SIGINT'}): {cancelled} task(s) cancelled; "
                f"{self._kept_message(runner)}"
            )
            return interrupted_exit_code(exc)
        finally:
            runner.close()
        # the whole sweep on the cluster, submit to last row: what the scheduling costs shows
        # against the rows' own durations
        self.doc["environment"]["cluster"]["wall_s"] = round(time.monotonic() - started, 3)
        self.save()
        self._summary()
        self._nodes_note()
        failures += self._plot()
        self._final_note()
        if todo and runner.usage_failures == len(todo):
            return EXIT_USAGE
        return EXIT_FAILED if failures or self.write_failures else EXIT_OK

    def _resumed_ok(
        self, plan: list[Planned], keep: Callable[[Any], None], advance: Callable[[int], None]
    ) -> list[Planned]:
        """Keep the configurations already ``ok`` in the resumed file; the rest, to measure."""
        todo = []
        for planned in plan:
            if _status(self.resumed.get(planned.id)) == "ok":
                keep(self.resumed[planned.id])
                advance(planned.steps)
                self.speaker.note(f"{planned.label}: kept from the resumed file")
            else:
                todo.append(planned)
        return todo

    def _nodes_note(self) -> None:
        from ...results.nodes import unlike_nodes

        text = unlike_nodes(self.doc["configurations"])
        if text and self.writer:
            self.speaker.note(text)
