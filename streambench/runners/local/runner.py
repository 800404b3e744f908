"""The runner behind ``streambench run``: loads each model once (in sweep order) and measures its
configurations with :func:`streambench.runners.local.configuration.run_configuration`, for the one
driver
(:mod:`streambench.runners.driver`). A model that cannot be loaded fails its configurations, once
reported; a configuration that fails is recorded and the sweep goes on.
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from typing import Any, Callable

from ...errors import UsageError, describe_exception
from ...results.schema import ConfigurationResult
from ..driver import Planned

__all__ = ["LocalRunner"]


class LocalRunner:
    """:class:`streambench.runners.driver.Runner` for local ``generate()`` sweeps."""

    def __init__(
        self,
        settings: Any,
        device: Any,
        speaker: Any,
        out: Any,
        rank: Any,
        debug: bool = False,
        on_environment: Callable[[dict[str, Any]], None] | None = None,
        isolate: str = "none",
    ) -> None:
        self.settings, self.device, self.speaker = settings, device, speaker
        self.out, self.rank, self.debug = out, rank, debug
        self.on_environment = on_environment or (lambda _facts: None)
        self.loaded: Any = None
        self.current: Any = None
        self.load_error: str | None = None
        self.usage_failures = 0
        self.isolate = isolate
        self.worker: Any = None  # the live worker process (``--isolate model``: reused)
        self.worker_spec: Any = None
        #: the warm process workers are forked from (:mod:`streambench.runners.local.warm`)
        self.zygote: Any = None
        #: ``--interleave`` with workers: the other models' warm processes, held (by load)
        self.held_zygotes: dict[str, Any] = {}
        self.interleaving = False
        self._fresh_said: set[str] = set()
        # load key (:meth:`_load_key`) -> (error, bad input)
        self.failed_loads: dict[tuple[int, str], tuple[str, bool]] = {}
        self._plan: list[Planned] = []
        self.bad_input = False
        #: ids the driver keeps from a resumed file (``--interleave`` leaves them out)
        self.skip: set[str] = set()
        #: ``--interleave``: id -> (result, progress steps already advanced), once rotated
        self.rotated: dict[str, tuple[ConfigurationResult, int]] | None = None
        #: ``--interleave``: ids whose model failed to load (reported once, with the load)
        self.load_failed: set[str] = set()

    def plan(self) -> Sequence[Planned]:
        from .plan import configuration_id, configuration_label, iter_plan
        from .workload_prompts import steps_of

        s = self.settings
        out = []
        for spec, vi, n_in, n_out, batch in iter_plan(s):
            variant = s.variants[vi]
            label = configuration_label(s, spec.name, n_in, n_out, batch, variant)
            key = configuration_id(spec.name, n_in, n_out, batch, s.num_beams, s.workload, variant)
            steps = steps_of(s, spec.name, batch)
            out.append(Planned(key, label, steps, (spec, n_in, n_out, batch, vi)))
        if getattr(s, "quality", False):
            from .quality import check_reference

            check_reference(s, [(p.id, p.label) for p in out])
        self._plan = out
        return out

    def _load_key(self, planned: Planned) -> tuple[int, str]:
        """What a planned configuration's model load depends on: the model and the variant's
        load settings (:func:`streambench.spec.generation.load_key`)."""
        from ...spec.generation import load_key

        spec, vi = planned.item[0], planned.item[4]
        return id(spec), load_key(self.settings.variants[vi])

    def _load(self, spec: Any, variant: dict[str, Any], key: Any) -> None:
        import gc

        from ...engines.variant_load import prepare_model
        from ...results.environment import library_versions

        self.loaded = None
        gc.collect()
        self.current, self.load_error = key, None
        try:
            where = self.rank.placement or self.device
            self.loaded = prepare_model(spec, self.settings, variant, where)
        except Exception as exc:  # noqa: BLE001 - recorded as failed configurations
            if self.debug:
                traceback.print_exc()
            if isinstance(exc, UsageError):
                self.load_error = str(exc)
            else:
                self.load_error = f"loading {spec.name} failed: {describe_exception(exc)}"
            self.speaker.error(self.load_error)  # once per model, not once per configuration
            self.bad_input = isinstance(exc, UsageError)
            return
        self.on_environment(library_versions())
        for note in self.loaded.notes:
            self.speaker.note(f"{spec.name}: {note}")

    def measure(
        self, planned: Planned, advance: Callable[[int], None], keep: Callable[[Any], None]
    ) -> Any:
        from .configuration import run_configuration
        from .plan import new_result

        if getattr(self.settings, "interleave", False):
            return self._measure_interleaved(planned, advance, keep)
        if self.isolate != "none":
            return self._measure_isolated(planned, advance, keep)
        spec, n_in, n_out, batch, vi = planned.item
        variant = self.settings.variants[vi]
        entry = new_result(self.settings, spec.name, n_in, n_out, batch, vi)
        if self.current != self._load_key(planned):
            self._load(spec, variant, self._load_key(planned))
        if self.loaded is None:
            entry.status, entry.error = "failed", self.load_error
            advance(planned.steps)
            self.usage_failures += int(self.bad_input)
            return self.rank.gather(entry)
        done = 0

        def on_run(i: int, warm: bool) -> None:
            nonlocal done
            done += 1
            advance(1)

        def plain(line: str) -> None:  # per-token lines of --verbose: no rich markup
            self.out.print(line, markup=False, highlight=False, soft_wrap=True)

        try:
            run_configuration(
                self.loaded, entry, self.settings, on_run=on_run, print_fn=plain, variant=variant
            )
        except KeyboardInterrupt:
            keep(self.rank.gather(entry))
            raise
        except Exception:  # noqa: BLE001 - recorded in the result, the sweep goes on
            if self.debug:
                traceback.print_exc()
        advance(planned.steps - done)
        if entry.status != "ok":
            self.speaker.error(f"configuration {entry.label} failed: {entry.error}")
        self._telemetry_warnings(entry)
        return self.rank.gather(entry)

    def _telemetry_warnings(self, entry: ConfigurationResult) -> None:
        """Say what makes a number suspect: what telemetry saw (e.g. another process on the
        GPU during the run) and the result's warnings (a busy machine, outlier trials)."""
        telemetry = entry.extra.get("telemetry")
        own = entry.extra.get("warnings") or []
        for warning in [*((telemetry or {}).get("warnings") or []), *own]:
            self.speaker.note(f"{entry.label}: {warning}")

    # -- --interleave: the trials of every configuration in rotation, in this process ---------
    def _measure_interleaved(
        self, planned: Planned, advance: Callable[[int], None], keep: Callable[[Any], None]
    ) -> Any:
        if self.rotated is None:
            if self.isolate == "config":  # one forked worker per configuration, in turn
                from .rotation import rotate_workers

                self.interleaving = True
                self.rotated = rotate_workers(self, advance, keep)
            else:
                self.rotated = self._rotate(advance, keep)
        entry, done = self.rotated.pop(planned.id)
        advance(planned.steps - done)
        if entry.status != "ok" and planned.id not in self.load_failed:
            self.speaker.error(f"configuration {entry.label} failed: {entry.error}")
        self._telemetry_warnings(entry)
        return self.rank.gather(entry)

    def _rotate(
        self, advance: Callable[[int], None], keep: Callable[[Any], None]
    ) -> dict[str, tuple[ConfigurationResult, int]]:
        """Load every model of the sweep (each load once, all held at once), then run one trial
        of each configuration in turn — A1 B1 C1 A2 B2 C2 … — until each has its trials."""
        from .configuration import configuration_steps
        from .plan import new_result

        loads: dict[Any, tuple[Any, str | None, bool]] = {}
        steps: dict[str, list[int]] = {}
        out: dict[str, tuple[ConfigurationResult, int]] = {}
        active: list[tuple[Planned, ConfigurationResult, Any]] = []
        for p in (p for p in self._plan if p.id not in self.skip):
            spec, n_in, n_out, batch, vi = p.item
            variant, key = self.settings.variants[vi], self._load_key(p)
            if key not in loads:
                self._load(spec, variant, key)
                loads[key] = (self.loaded, self.load_error, self.bad_input)
            loaded, error, usage = loads[key]
            entry = new_result(self.settings, spec.name, n_in, n_out, batch, vi)
            counter = steps.setdefault(p.id, [0])
            if loaded is None:
                entry.status, entry.error = "failed", error
                self.load_failed.add(p.id)
                self.usage_failures += int(usage)
                out[p.id] = (entry, 0)
                continue

            def on_run(i: int, warm: bool, counter: list[int] = counter) -> None:
                counter[0] += 1
                advance(1)

            gen = configuration_steps(loaded, entry, self.settings, on_run, self._plain, variant)
            active.append((p, entry, gen))
        self.loaded = None  # the loads stay referenced by the generators until they finish
        order = list(active)
        try:
            while active:
                for item in list(active):
                    try:
                        next(item[2])
                    except StopIteration:
                        active.remove(item)
                    except KeyboardInterrupt:
                        raise
                    except Exception:  # noqa: BLE001 - recorded in the result, the others go on
                        if self.debug:
                            traceback.print_exc()
                        active.remove(item)
        except KeyboardInterrupt:
            for _p, entry, gen in order:
                gen.close()  # a configuration not finished stays "pending": say so
                if entry.status == "pending":
                    entry.status = "interrupted"
                    entry.error = "interrupted before this configuration finished"
            started = {p.id: entry for p, entry, _gen in order}
            for p in self._plan:  # what exists so far, in the sweep's order
                found = started.get(p.id) or (out.get(p.id) or (None, 0))[0]
                if found is not None:
                    keep(self.rank.gather(found))
            raise
        for p, entry, _gen in order:
            out[p.id] = (entry, steps[p.id][0])
        return out

    def _plain(self, line: str) -> None:  # per-token lines of --verbose: no rich markup
        self.out.print(line, markup=False, highlight=False, soft_wrap=True)

    def failed(self, entry: ConfigurationResult) -> bool:
        """Not ``ok``, or ``--profile`` asked for a trace that could not be written."""
        profile = entry.extra.get("profile")
        return entry.status != "ok" or bool(isinstance(profile, dict) and profile.get("error"))

    def table(self, entry: Any) -> Any:
        from ...results.report.quality_text import quality_lines
        from ...results.report.tables import configuration_table
        from ...results.schema import as_configuration

        table = configuration_table(as_configuration(entry))
        lines = quality_lines([as_configuration(entry)])[1:]  # --quality: its line under it
        if not lines:
            return table
        from rich.console import Group
        from rich.text import Text

        return Group(table, *(Text(line) for line in lines))

    def close(self) -> None:
        import gc

        if self.worker is not None:
            self.worker.stop()
            self.worker = None
        for zygote in [self.zygote, *self.held_zygotes.values()]:
            if zygote is not None:
                zygote.stop()  # its workers end with it
        self.zygote, self.held_zygotes = None, {}
        self.loaded = None
        gc.collect()

    # -- isolation: each configuration (or model) in a worker process -------------------------
    def _failed_entry(self, planned: Planned, status: str, error: str) -> ConfigurationResult:
        from .plan import new_result

        spec, n_in, n_out, batch, vi = planned.item
        entry = new_result(self.settings, spec.name, n_in, n_out, batch, vi)
        entry.status, entry.error = status, error
        return entry

    def _start_worker(self, planned: Planned) -> Any:
        from .isolation import Worker, job_for

        if self.worker is not None:
            self.worker.stop()
        spec, key = planned.item[0], self._load_key(planned)
        one = self.isolate in ("config", "fresh")
        todo = [planned] if one else self._plan[self._plan.index(planned) :]
        configs = [p.item[1:] for p in todo if self._load_key(p) == key]
        job = job_for(self.settings, spec, self.device, configs)
        self.worker = Worker(job, self.debug, self._forked(planned, job))
        self.worker_spec = key
        return self.worker

    def _forked(self, planned: Planned, job: dict[str, Any]) -> Any:
        """A worker for ``job`` forked from the warm process, or ``None``: a fresh process
        (``--isolate fresh``, or where forking is not shown safe: :func:`.warm.fork_refusal`;
        a refusal of the warm process itself is said once)."""
        import json

        from ...spec.generation import load_key
        from .warm import Zygote, fork_refusal

        variant = self.settings.variants[planned.item[4]]
        if self.isolate == "fresh" or fork_refusal(self.settings, variant, self.device):
            return None
        key = json.dumps([job["spec"], job["device"], load_key(variant)])
        if self.zygote is not None and self.zygote.key not in ("", key):
            # one warm process per model: what loading and dropping the previous model left in
            # its heap would be in every later worker's RSS (an order effect); --interleave
            # holds each (its workers live until the rotation ends)
            if self.interleaving:
                self.held_zygotes[self.zygote.key] = self.zygote
            else:
                self.zygote.stop()
            self.zygote = self.held_zygotes.pop(key, None)
        if self.zygote is None:
            self.zygote = Zygote(self.debug, key)
        self.zygote.key = key  # a warm process started early serves the first model it gets
        job["warm"] = {"preload_key": key}
        forked = self.zygote.fork(job)
        if isinstance(forked, str):
            if forked not in self._fresh_said:
                self._fresh_said.add(forked)
                self.speaker.note(f"workers start as fresh processes from here on: {forked}")
            return None
        return forked

    def _measure_isolated(
        self, planned: Planned, advance: Callable[[int], None], keep: Callable[[Any], None]
    ) -> Any:
        spec, key = planned.item[0], self._load_key(planned)
        if key in self.failed_loads:  # reported once; not loaded again
            error, usage = self.failed_loads[key]
            self.usage_failures += int(usage)
            advance(planned.steps)
            return self._failed_entry(planned, "failed", error)
        worker = self.worker
        alive = worker is not None and worker.proc.poll() is None and worker.pending > 0
        if self.isolate in ("config", "fresh") or not alive or self.worker_spec != key:
            worker = self._start_worker(planned)
        done = 0
        entry = None
        while entry is None:
            try:
                event = worker.next_event()
                if event is None:
                    break
                if event.get("event") == "run":
                    done += 1
                    advance(1)
                entry = self.worker_event(event, spec, key)
            except KeyboardInterrupt as exc:  # outside the read: pass it on, keep reading
                worker.pass_on(exc)
        worker.pending -= 1
        advance(planned.steps - done)
        if entry is None:
            entry = self.worker_gone(planned, worker)
        if worker.interrupted_by is not None:
            if entry.status != "ok":
                from ...errors import signal_name

                entry.status = "interrupted"
                entry.error = (
                    f"interrupted ({signal_name(worker.interrupted_by)}) before this "
                    "configuration finished"
                )
            keep(entry)
            worker.stop()
            worker.raise_if_interrupted()
        if entry.status != "ok" and key not in self.failed_loads:
            self.speaker.error(f"configuration {entry.label} failed: {entry.error}")
        self._telemetry_warnings(entry)
        return entry

    def worker_event(self, event: dict[str, Any], spec: Any, key: Any) -> Any:
        """Act on one worker event other than ``run`` (lines printed, the load's notes and
        library versions, a failed load recorded once per load ``key``); the configuration's
        :class:`ConfigurationResult` when the event carries it, else ``None``."""
        kind = event.get("event")
        if kind == "line":
            self.out.print(str(event.get("text")), markup=False, highlight=False)
        elif kind == "loaded":
            self.on_environment(event.get("versions") or {})
            for note in event.get("notes") or []:
                self.speaker.note(f"{spec.name}: {note}")
        elif kind == "load_failed":
            self.failed_loads[key] = (str(event["error"]), bool(event.get("usage")))
            self.speaker.error(str(event["error"]))
        elif kind == "entry":  # a results/2 configuration object, as JSON
            return ConfigurationResult.from_dict(event["entry"])
        return None

    def worker_gone(self, planned: Planned, worker: Any) -> ConfigurationResult:
        from ...errors import signal_name
        from .isolation import death_cause

        key = self._load_key(planned)
        self.worker = None
        if key in self.failed_loads:
            error, usage = self.failed_loads[key]
            self.usage_failures += int(usage)
            return self._failed_entry(planned, "failed", error)
        if worker.interrupted_by is not None:
            return self._failed_entry(
                planned,
                "interrupted",
                f"interrupted ({signal_name(worker.interrupted_by)}) before this configuration "
                "finished",
            )
        return self._failed_entry(planned, "failed", death_cause(worker.proc.returncode))
