"""The runner behind ``streambench run``: loads each model once (in sweep order) and measures its
configurations with :func:`streambench.sweep.run_configuration`, for the one driver
(:mod:`streambench.driver`). A model that cannot be loaded fails its configurations, once
reported; a configuration that fails is recorded and the sweep goes on.
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from typing import Any, Callable

from .driver import Planned
from .errors import UsageError, describe_exception

__all__ = ["LocalRunner"]


class LocalRunner:
    """:class:`streambench.driver.Runner` for local ``generate()`` sweeps."""

    def __init__(
        self,
        settings: Any,
        device: Any,
        speaker: Any,
        out: Any,
        rank: Any,
        debug: bool = False,
        on_environment: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.settings, self.device, self.speaker = settings, device, speaker
        self.out, self.rank, self.debug = out, rank, debug
        self.on_environment = on_environment or (lambda _facts: None)
        self.loaded: Any = None
        self.current: Any = None
        self.load_error: str | None = None
        self.usage_failures = 0
        self.bad_input = False

    def plan(self) -> Sequence[Planned]:
        from .sweep import configuration_id, iter_configurations

        steps = self.settings.warmup + self.settings.trials
        beams = self.settings.num_beams
        out = []
        for spec, n_in, n_out, batch in iter_configurations(self.settings):
            label = f"{spec.name} {n_in}-{n_out} bs{batch}" + (
                f" beams{beams}" if beams > 1 else ""
            )
            key = configuration_id(spec.name, n_in, n_out, batch, beams)
            out.append(Planned(key, label, steps, (spec, n_in, n_out, batch)))
        return out

    def _load(self, spec: Any) -> None:
        import gc

        from . import report
        from .sweep import load_model

        self.loaded = None
        gc.collect()
        self.current, self.load_error = spec, None
        try:
            self.loaded = load_model(spec, self.settings, self.device)
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
        self.on_environment(report.library_versions())
        for note in self.loaded.notes:
            self.speaker.note(f"{spec.name}: {note}")

    def measure(
        self, planned: Planned, advance: Callable[[int], None], keep: Callable[[Any], None]
    ) -> Any:
        from .sweep import new_entry, run_configuration

        spec, n_in, n_out, batch = planned.item
        entry = new_entry(self.settings, spec.name, n_in, n_out, batch)
        if self.current is not spec:
            self._load(spec)
        if self.loaded is None:
            entry["status"], entry["error"] = "failed", self.load_error
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
            run_configuration(self.loaded, entry, self.settings, on_run=on_run, print_fn=plain)
        except KeyboardInterrupt:
            keep(self.rank.gather(entry))
            raise
        except Exception:  # noqa: BLE001 - recorded in the entry, the sweep goes on
            if self.debug:
                traceback.print_exc()
        advance(planned.steps - done)
        if entry["status"] != "ok":
            self.speaker.error(f"configuration {entry['label']} failed: {entry['error']}")
        return self.rank.gather(entry)

    def failed(self, entry: Any) -> bool:
        return entry["status"] != "ok"

    def table(self, entry: Any) -> Any:
        from . import report

        return report.configuration_table(entry)

    def close(self) -> None:
        import gc

        self.loaded = None
        gc.collect()
