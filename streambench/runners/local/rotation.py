"""``--interleave`` with worker processes: every configuration of the sweep in a worker of its
own, forked from the warm process of its model (:mod:`streambench.runners.local.warm`), all
alive at once, and one trial of each in turn — A1 B1 C1 A2 B2 C2 … — so that drift, heat and a
neighbour that starts half-way hit every configuration alike, and each configuration's memory
numbers are still its own process's (exact peak, no order effect).

Only one worker computes at a time: a worker runs its next step (the warm-ups and its first
trial, then one trial) when the rotation writes ``go`` to it, and says ``step`` when done
(:func:`streambench.runners.local.worker._stepped`). The workers share their model's weights with
the warm process (copy-on-write): N configurations of one model hold the model once, plus what
each configuration keeps between its trials (its KV cache and activations are freed after each
``generate()``; the allocator may keep some). Each model load of the sweep is held by its own
warm process until the rotation ends, as the in-process rotation holds every load.

Used where the workers can be forked (:func:`check_isolation`);
elsewhere ``--interleave`` runs in the sweep's process, as before, and says why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...errors import Interrupted, signal_name
from ...results.schema import ConfigurationResult

__all__ = ["check_isolation", "rotate_workers"]


@dataclass
class _Turn:
    """One configuration's worker in the rotation: its events read up to each ``step``."""

    planned: Any
    worker: Any
    #: ``generate()`` calls so far (warm-ups included): progress steps already advanced
    runs: int = 0
    entry: ConfigurationResult | None = None

    def read_until(
        self, runner: Any, advance: Callable[[int], None], stops: tuple[str, ...]
    ) -> bool:
        """Read the worker's events up to one of ``stops`` (``False``: it has more) or its
        entry / its end (``True``: finished; :attr:`entry` set). ``("loaded", "load_failed")``:
        its start (once every worker has started, none is busy starting while another
        measures); ``("step",)``: its next turn's end."""
        spec, key = self.planned.item[0], runner._load_key(self.planned)
        while self.entry is None:
            event = self.worker.next_event()
            if event is None:
                self.entry = runner.worker_gone(self.planned, self.worker)
                break
            kind = event.get("event")
            if kind == "run":
                self.runs += 1
                advance(1)
            if kind != "step":
                self.entry = runner.worker_event(event, spec, key)
            if kind in stops:
                return self.entry is not None
        return True

    def read_until_step(self, runner: Any, advance: Callable[[int], None]) -> bool:
        return self.read_until(runner, advance, ("step",))


def _start(runner: Any, planned: Any) -> Any:
    """A stepped worker for one configuration (forked where its warm process allows it; a
    fresh process when that refuses, which holds its own load of the model)."""
    from .isolation import Worker, job_for

    spec = planned.item[0]
    job = job_for(runner.settings, spec, runner.device, [planned.item[1:]])
    job["stepped"] = True
    return Worker(job, runner.debug, runner._forked(planned, job))


def rotate_workers(
    runner: Any, advance: Callable[[int], None], keep: Callable[[Any], None]
) -> dict[str, tuple[ConfigurationResult, int]]:
    """Start a stepped worker per configuration not kept from ``--resume``, then give each its
    turn until every one has its entry; ``{id: (result, progress steps advanced)}``. On
    Ctrl-C/SIGTERM every worker is stopped, sends what it has, and each is kept (``keep``, in
    the sweep's order) before :class:`~streambench.errors.Interrupted` propagates."""
    turns: list[_Turn] = []
    out: dict[str, tuple[ConfigurationResult, int]] = {}
    try:
        for p in (p for p in runner._plan if p.id not in runner.skip):
            failed = runner.failed_loads.get(runner._load_key(p))
            if failed is not None:  # its model failed to load in an earlier worker
                runner.load_failed.add(p.id)
                runner.usage_failures += int(failed[1])
                out[p.id] = (runner._failed_entry(p, "failed", failed[0]), 0)
                continue
            turns.append(_Turn(p, _start(runner, p)))
        for turn in turns:
            turn.read_until(runner, advance, ("loaded", "load_failed"))
            turn.worker.raise_if_interrupted()
        live = [t for t in turns if t.entry is None]
        while live:
            for turn in list(live):
                told = turn.worker.go()
                if not told or turn.read_until_step(runner, advance):
                    if not told:
                        turn.read_until_step(runner, advance)  # what it sent before it went
                    live.remove(turn)
                # a signal while reading went to this worker only (Worker.next_event): all stop
                turn.worker.raise_if_interrupted()
    except KeyboardInterrupt as exc:
        _stop_all(runner, turns, exc, advance)
        if not isinstance(exc, Interrupted):
            exc = Interrupted()  # Ctrl-C outside a read
        for p in runner._plan:  # what exists so far, in the sweep's order
            found = next((t.entry for t in turns if t.planned.id == p.id), None)
            found = found or (out.get(p.id) or (None, 0))[0]
            if found is not None:
                keep(found)
        raise exc from None
    for turn in turns:
        assert turn.entry is not None
        if runner._load_key(turn.planned) in runner.failed_loads:
            runner.load_failed.add(turn.planned.id)  # said once, with the load
        out[turn.planned.id] = (turn.entry, turn.runs)
    return out


def _stop_all(
    runner: Any, turns: list[_Turn], exc: KeyboardInterrupt, advance: Callable[[int], None]
) -> None:
    """Pass the signal to every worker still running and read what each sends (its partial
    entry), marking what did not finish ``interrupted``."""
    for turn in turns:
        if turn.entry is None:
            turn.worker.pass_on(exc)
            turn.worker.end_control()  # one waiting for its turn stops on end of stream too
    for turn in turns:
        while turn.entry is None:
            try:
                turn.read_until_step(runner, advance)
            except KeyboardInterrupt:  # a second signal: the workers have it already
                continue
        if turn.entry.status != "ok":
            signum = turn.worker.interrupted_by or 2
            turn.entry.status = "interrupted"
            turn.entry.error = (
                f"interrupted ({signal_name(signum)}) before this configuration finished"
            )


def check_isolation(
    settings: Any, asked: Any, device: Any = None, note: Callable[[str], None] | None = None
) -> str | None:
    """With ``--interleave``: ``"config"`` (a forked worker per configuration, all alive, in
    rotation: :mod:`streambench.runners.local.rotation`) where every configuration's worker can
    be forked from its model's warm process, else ``"none"`` (the rotation in this process;
    ``note`` says why when ``--isolate config`` was asked); :class:`UsageError` for ``--isolate
    fresh|model``. ``None`` without ``--interleave``."""
    from ...errors import UsageError

    if not getattr(settings, "interleave", False):
        return None
    if asked in ("fresh", "model"):
        raise UsageError(
            f"--interleave keeps a worker per configuration alive and does not combine with "
            f"--isolate {asked}: use --isolate config (forked workers) or none (this process)"
        )
    if asked == "none" or device is None:
        return "none"
    from .plan import iter_plan
    from .warm import fork_refusal

    if asked is None and len(list(iter_plan(settings))) < 2:
        return "none"
    refusals = [fork_refusal(settings, v, device) for v in settings.variants]
    why = next((r for r in refusals if r), None)
    if why is None:
        return "config"
    if note is not None and asked == "config":
        note(
            f"--interleave runs in this process: its workers cannot be forked ({why}), and "
            "fresh ones would each hold their own load of the model"
        )
    return "none"
