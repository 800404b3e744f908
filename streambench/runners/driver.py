"""The one sweep driver behind ``streambench run`` and ``streambench endpoint``.

A *runner* knows how to measure one configuration (a local ``generate()`` sweep, or requests to a
served model); the driver does everything around it, the same way for both:

- the progress bar (one step per run or request);
- the results document: every finished configuration is appended and every ``-o`` file rewritten
  atomically after it — but an existing file only once there is a finished configuration
  (a failed start never replaces old results with a worse document);
- ``--resume``: configurations already ``ok`` in an earlier results file written with the same
  settings in the same environment are kept from it, not measured again; every configuration of
  that file that this sweep does not plan is kept too (never dropped);
- a failed write (a full disk ...) is reported once per file, with where and why, and makes the
  exit code 1; the previous file stays as it was;
- interrupts (Ctrl-C, SIGTERM, SIGHUP): the partial configuration is kept, the file says
  ``"interrupted": true``, and the exit code is ``128 + signal``;
- the per-configuration table, the summary of all of them at the end (:mod:`.results.summary`),
  the plot, and the exit-code policy of
  :mod:`streambench.errors` (1 when a configuration failed, 2 when every configuration failed on
  bad input such as a missing model).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol

from ..errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    describe_exception,
    interrupted_exit_code,
)
from ..results.outputs import describe_write_error
from ..results.quality import link_references
from ..results.schema import as_configuration

__all__ = ["Driver", "Planned", "Runner", "load_resume"]

#: settings that name the sweep's axes: a resumed file may have other values for these
AXIS_SETTINGS = ("models", "in_out", "batch_sizes", "request_rates", "concurrencies", "variants")


@dataclass(frozen=True)
class Planned:
    """One configuration to measure: its stable ``id``, a ``label`` for people, the number of
    progress ``steps`` (runs or requests) it takes, and the runner's own ``item``."""

    id: str
    label: str
    steps: int
    item: Any = None


class Runner(Protocol):
    """What the driver needs from a runner (local ``generate()`` or a served endpoint)."""

    #: configurations that failed because of bad input (e.g. a model that cannot be read)
    usage_failures: int

    def plan(self) -> Sequence[Planned] | Iterator[Planned]:
        """The configurations: a list, or an iterator decided as it goes (each next one may
        depend on the entries measured so far)."""
        ...

    def measure(
        self, planned: Planned, advance: Callable[[int], None], keep: Callable[[Any], None]
    ) -> Any:
        """Measure one configuration and return its entry. On an interrupt, call ``keep`` with
        the partial entry, then raise (a ``KeyboardInterrupt``)."""
        ...

    def failed(self, entry: Any) -> bool: ...

    def table(self, entry: Any) -> Any: ...


class _Speaker(Protocol):
    def error(self, message: str) -> None: ...

    def note(self, message: str) -> None: ...


@dataclass
class Driver:
    """Runs every planned configuration of ``runner`` into ``doc`` (a results document)."""

    doc: dict[str, Any]
    outputs: list[str]
    speaker: _Speaker
    out: Any  # rich Console for tables (stdout)
    err: Any  # rich Console for the progress bar (stderr)
    plot: Optional[str] = None
    writer: bool = True  # False on the ranks of a distributed run that do not write
    resumed: dict[str, Any] = field(default_factory=dict)
    written: set[str] = field(default_factory=set)
    write_failures: list[str] = field(default_factory=list)

    # -- results files ------------------------------------------------------------------------
    def save(self) -> None:
        """Write every output; an existing file only once a configuration finished."""
        from ..results.schema import ResultsDocument
        from ..results.writers import write_outputs

        configurations = self.doc["configurations"]
        if not self.writer or not configurations:
            return
        finished = any(_status(e) == "ok" for e in configurations)
        for path in self.outputs:
            if not (finished or path in self.written or not os.path.lexists(path)):
                continue
            try:
                write_outputs([path], ResultsDocument.coerce(self.doc))
            except OSError as exc:  # reported once; the other outputs and the sweep go on
                message = f"cannot write --output {path}: {describe_write_error(exc, path)}"
                if message not in self.write_failures:
                    self.write_failures.append(message)
                    self.speaker.error(message)
                continue
            self.written.add(path)

    def _kept_message(self, runner: Any) -> str:
        finished = sum(1 for e in self.doc["configurations"] if _status(e) == "ok")
        written = [p for p in self.outputs if p in self.written]
        untouched = [p for p in self.outputs if p not in self.written]
        if hasattr(runner, "kept_message"):
            return str(runner.kept_message(written, untouched, finished))
        text = f"{finished} finished configuration(s)"
        if self.written:
            text += f" kept in {', '.join(p for p in self.outputs if p in self.written)}"
        untouched = [p for p in self.outputs if p not in self.written]
        if untouched:
            text += f"; {', '.join(untouched)} left as it was"
        return text

    # -- the loop -----------------------------------------------------------------------------
    def run(self, runner: Runner) -> int:
        """Measure (or resume) every configuration; returns the exit code."""
        from ..results.report.tables import progress_bar

        plan = runner.plan()  # a list, or a lazy plan (an adaptive search) of unknown length
        known = isinstance(plan, Sequence)
        progress = progress_bar(self.err)
        task = progress.add_task("sweep", total=sum(p.steps for p in plan) if known else None)
        measured = 0  # configurations planned so far (resumed ones included)
        failures = 0

        def advance(n: int = 1) -> None:
            progress.advance(task, n)

        def keep(entry: Any) -> None:
            # the local runner builds a ConfigurationResult itself (kept as it is); a dict (a
            # resumed file's configuration, the endpoint runner's entry) is read here, once
            self.doc["configurations"].append(as_configuration(entry))
            link_references(self.doc["configurations"])  # --quality: agreement, once known

        seen: set[str] = set()
        if known:
            self._carry({p.id for p in plan}, keep)
        try:
            with progress:
                for planned in plan:
                    measured += 1
                    seen.add(planned.id)
                    progress.update(task, description=planned.label)
                    if _status(self.resumed.get(planned.id)) == "ok":
                        keep(self.resumed[planned.id])
                        advance(planned.steps)
                        self.speaker.note(f"{planned.label}: kept from the resumed file")
                        continue
                    entry = runner.measure(planned, advance, keep)
                    keep(entry)
                    self.save()
                    failures += int(runner.failed(entry))
                    self.out.print(runner.table(entry))
        except KeyboardInterrupt as exc:
            self.doc["interrupted"] = True
            self.save()
            self.speaker.error(f"interrupted ({exc or 'SIGINT'}): {self._kept_message(runner)}")
            return interrupted_exit_code(exc)
        if not known and self._carry(seen, keep):
            self.save()
        self._summary()
        failures += self._plot()
        self._final_note()
        if measured and runner.usage_failures == measured:
            return EXIT_USAGE
        return EXIT_FAILED if failures or self.write_failures else EXIT_OK

    def _carry(self, planned: set[str], keep: Callable[[Any], None]) -> int:
        """Keep every configuration of the resumed file that this sweep does not plan (a
        narrower ``--resume`` sweep never drops rows); returns how many."""
        carried = [e for key, e in self.resumed.items() if key not in planned]
        for entry in carried:
            keep(entry)
        if carried:
            names = ", ".join(str(_get(e, "label") or _get(e, "id")) for e in carried[:5])
            more = f" and {len(carried) - 5} more" if len(carried) > 5 else ""
            self.speaker.note(
                f"--resume: kept {len(carried)} configuration(s) of the resumed file that this "
                f"sweep does not measure: {names}{more}"
            )
        return len(carried)

    def _summary(self) -> None:
        """One table of every configuration after the last one (only with two or more: a
        single configuration's own table says it all)."""
        from ..results.report.summary import print_summary

        entries = self.doc["configurations"]
        if self.writer and len(entries) > 1:
            print_summary(self.out, entries)

    def _plot(self) -> int:
        from ..results.report.load_plot import plot_figures
        from ..results.schema import ResultsDocument

        if not self.plot or not self.writer:
            return 0
        try:
            written = plot_figures(ResultsDocument.coerce(self.doc), self.plot)
        except OSError as exc:
            self.speaker.error(f"--plot {self.plot}: {describe_write_error(exc, self.plot)}")
            return 1
        except (RuntimeError, ValueError) as exc:
            self.speaker.error(f"--plot {self.plot}: {describe_exception(exc)}")
            return 1
        paths = ", ".join(str(p) for p in written)
        self.out.print(f"plot written to {paths}", markup=False)
        return 0

    def _final_note(self) -> None:
        if not self.outputs or not self.writer:
            return
        if self.written and not self.write_failures:
            self.out.print(
                "results written to " + ", ".join(p for p in self.outputs if p in self.written),
                markup=False,  # a path is shown as written
            )
        untouched = [p for p in self.outputs if p not in self.written]
        if untouched and not self.write_failures:
            self.speaker.note(f"no configuration finished: {', '.join(untouched)} left as it was")


def _get(entry: Any, key: str) -> Any:
    return entry.get(key) if isinstance(entry, dict) else getattr(entry, key, None)


def _status(entry: Any) -> Any:
    return _get(entry, "status")


#: environment keys that must match for ``--resume``: the machine, its device and the versions
RESUME_ENVIRONMENT = (
    "streambench",
    "python",
    "torch",
    "transformers",
    "cpu_model",
    "cpu_count",
    "device",
    "device_name",
)


def load_resume(
    path: str,
    settings: dict[str, Any],
    environment: dict[str, Any] | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """The configurations of an earlier results file, by id, for ``--resume``: the ``ok`` ones
    are kept instead of measured again, the others measured again where the sweep plans them,
    and those it does not plan are kept as they are.

    The file must have been written by the same command (``command``: ``"run"``,
    ``"endpoint"``) with the same settings, apart from the sweep's axes (models, input/output
    pairs, batch sizes), and, when ``environment`` is given, on the same machine with the same
    versions (:data:`RESUME_ENVIRONMENT`): :class:`UsageError` naming what differs otherwise.
    A file that does not exist yet resumes
    nothing."""
    from ..results.validate import load_document

    if not os.path.exists(path):
        return {}
    try:
        old = load_document(path)
    except ValueError as exc:
        raise UsageError(f"--resume: {exc}") from None
    wrote = old.get("command") or "run"
    if command is not None and wrote != command:  # said first: every setting would differ
        raise UsageError(
            f"--resume: {path} holds results of 'streambench {wrote}', not of 'streambench "
            f"{command}'; resume it with 'streambench {wrote}', or write to another file"
        )
    old_settings = old.get("settings") or {}
    for key in sorted(set(old_settings) | set(settings)):
        if key in AXIS_SETTINGS:
            continue
        if _canonical(old_settings.get(key)) != _canonical(settings.get(key)):
            raise UsageError(
                f"--resume: {path} was written with other settings ({key}: "
                f"{old_settings.get(key)!r}, now {settings.get(key)!r}); run without --resume "
                "or write to another file"
            )
    if environment is not None:
        _check_environment(path, old.get("environment") or {}, environment)
    found: dict[str, Any] = {}
    for i, entry in enumerate(old.get("configurations") or []):
        if isinstance(entry, dict):
            key = entry.get("id") if isinstance(entry.get("id"), str) else f"#{i}"
            found[key if key not in found else f"{key}#{i}"] = entry  # a repeat is kept too
    return found


def _check_environment(path: str, old: Any, new: dict[str, Any]) -> None:
    """:class:`UsageError` naming every :data:`RESUME_ENVIRONMENT` key that differs: rows of
    another machine or versions must not merge under this one's environment."""
    old = old if isinstance(old, dict) else {}
    differ = [
        f"{key}: {old.get(key)!r} there, {new.get(key)!r} here"
        for key in RESUME_ENVIRONMENT
        if _canonical(old.get(key)) != _canonical(new.get(key))
    ]
    if differ:
        raise UsageError(
            f"--resume: {path} was measured in another environment ({'; '.join(differ)}); "
            "its rows would be recorded under this one: run without --resume or write to "
            "another file"
        )


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)
