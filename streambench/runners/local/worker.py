"""``python -m streambench.runners.local.worker``: the worker process of ``streambench run
--isolate``.

Reads one job (JSON on one line: settings, one model, its configurations) on stdin, loads the
model, measures each configuration (a stepped job, ``--interleave``: one trial per ``go`` line that
follows on stdin) and writes one JSON event per line to the protocol stream (the original
stdout; file descriptor 1 is pointed at stderr so that nothing else can mix into it). See
:mod:`streambench.runners.local.isolation` for the events. Exit code: 0, 1 when the model could not
be loaded,
128 + N when stopped by signal N (the partial entry is sent first).

``--parent PID``: the process that started it; the worker ends with it, quietly
(:func:`streambench.runners.orphan.tie_to_parent`), and leaves quietly too when the protocol
stream's
reader has gone (a broken pipe).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable, TextIO

from ...errors import (
    EXIT_FAILED,
    EXIT_OK,
    SignalPolicy,
    UsageError,
    describe_exception,
    interrupted_exit_code,
)
from ...terminal import guard_messages, inert_traceback


def _protocol_stream() -> TextIO:
    stream = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    sys.stdout.flush()
    os.dup2(2, 1)
    return stream


def _settings(data: dict[str, Any], spec: dict[str, Any]) -> tuple[Any, Any]:
    from ...spec.models import ModelSpec
    from ...spec.run import SweepSettings

    model = ModelSpec(**spec)
    # exact_peak: this process is ours, its peak-RSS mark may be reset
    data = dict(data, models=[model], in_out=[tuple(p) for p in data["in_out"]], exact_peak=True)
    return SweepSettings(**data), model


def _measure(
    loaded: Any,
    settings: Any,
    spec: Any,
    config: list[int],
    emit: Callable[[dict], None],
    start: dict[str, Any],
    control: TextIO | None = None,
) -> dict[str, Any]:
    """One configuration, measured: its results/2 object (what the ``entry`` event carries to
    the parent, which reads it back with ``ConfigurationResult.from_dict``). ``start``: how this
    process began and who loaded its model (``extra.isolation``). ``control``: ``--interleave``,
    one trial per ``go`` line read from it (:func:`_stepped`)."""
    from .configuration import configuration_steps
    from .plan import new_result

    n_in, n_out, batch, vi = config
    entry = new_result(settings, spec.name, n_in, n_out, batch, vi)
    entry.extra["isolation"] = dict(start)
    steps = configuration_steps(
        loaded,
        entry,
        settings,
        on_run=lambda i, warm: emit({"event": "run"}),
        print_fn=lambda line: emit({"event": "line", "text": line}),
        variant=settings.variants[vi],
    )
    try:
        if control is None:
            for _ in steps:
                pass
        else:
            _stepped(steps, emit, control)
    except KeyboardInterrupt:
        steps.close()
        emit({"event": "entry", "entry": entry.to_dict()})
        raise
    except Exception:  # noqa: BLE001 - recorded in the result
        if "--debug" in sys.argv:
            inert_traceback()  # the terminal is shared with the parent
    return entry.to_dict()


def _stepped(steps: Any, emit: Callable[[dict], None], control: TextIO) -> None:
    """``--interleave``: each step of ``steps`` (the warm-ups and the first trial, then one
    trial each) after a ``go`` line on ``control``, a ``step`` event after it; the sweep's
    rotation decides who runs next, so only one configuration computes at a time. End of
    stream on ``control`` (the sweep has gone) stops it as an interruption would."""
    while True:
        if control.readline().strip() != "go":
            raise KeyboardInterrupt("the sweep stopped the rotation")
        try:
            next(steps)
        except StopIteration:
            return
        emit({"event": "step"})


def load_job_model(job: dict[str, Any]) -> tuple[Any, Any, Any]:
    """The job's settings, model spec and its model loaded here (``prepare_model``); the third
    is the exception when loading failed. Also what the warm process
    (:mod:`streambench.runners.local.zygote`) calls to load a model once for its children."""
    from ...devices import resolve_device
    from ...engines.variant_load import prepare_model
    from .plan import quiet_transformers

    settings, spec = _settings(job["settings"], job["spec"])
    variant = settings.variants[job["configurations"][0][3]]  # one load: the same for all
    with quiet_transformers(settings.verbose):
        try:
            return (
                settings,
                spec,
                prepare_model(spec, settings, variant, resolve_device(job["device"])),
            )
        except Exception as exc:  # noqa: BLE001 - reported by the caller
            if "--debug" in sys.argv:
                inert_traceback()  # the terminal is shared with the parent
            return settings, spec, exc


def run_job(
    job: dict[str, Any],
    emit: Callable[[dict], None],
    warm: dict[str, Any] | None = None,
    control: TextIO | None = None,
) -> int:
    """Load the job's model (or take ``warm["loaded"]``, loaded before this process was forked)
    and measure its configurations; returns the exit code. ``control``: ``--interleave``'s
    ``go`` lines (:func:`_stepped`)."""
    from ...results.environment import library_versions
    from .plan import quiet_transformers

    start = {"start": "fresh", "worker_pid": os.getpid(), "model_loaded_by_pid": os.getpid()}
    if warm is not None and warm.get("loaded") is not None:
        settings, spec = _settings(job["settings"], job["spec"])
        loaded: Any = warm["loaded"]
        start.update(start="fork", model_loaded_by_pid=warm["pid"])
        from ...engines.threads import torch_threads

        # --threads, as a fresh worker sets it before its load (the warm process computes at 1
        # thread and the fork restored torch's default); forking is for torch engines only
        loaded.threads = torch_threads(getattr(settings, "threads", None))
    else:
        settings, spec, loaded = load_job_model(job)
        start["start"] = "fork" if warm is not None else "fresh"
    start["model_load_s"] = getattr(loaded, "load_time_s", None)
    with quiet_transformers(settings.verbose):
        if isinstance(loaded, Exception):
            usage = isinstance(loaded, UsageError)
            error = (
                str(loaded)
                if usage
                else f"loading {spec.name} failed: {describe_exception(loaded)}"
            )
            emit({"event": "load_failed", "error": error, "usage": usage})
            return EXIT_FAILED
        emit({"event": "loaded", "notes": list(loaded.notes), "versions": library_versions()})
        for config in job["configurations"]:
            entry = _measure(loaded, settings, spec, config, emit, start, control)
            emit({"event": "entry", "entry": entry})
    return EXIT_OK


def serve(
    job: dict[str, Any],
    stream: TextIO,
    warm: dict[str, Any] | None = None,
    control: TextIO | None = None,
) -> int:
    """Run ``job`` with its events on ``stream``: the worker's life after it tied itself to its
    parent (a fresh worker's :func:`main`; a forked one's in
    :mod:`streambench.runners.local.zygote`). Returns the exit code. ``control``: where a
    stepped job (``--interleave``) reads its ``go`` lines."""
    from ..orphan import leave

    try:
        with SignalPolicy():

            def emit(event: dict[str, Any]) -> None:
                try:
                    stream.write(json.dumps(event) + "\n")
                except BrokenPipeError:  # nobody reads the results any more
                    leave()

            guard_messages()  # this process writes to the parent's terminal too
            return run_job(job, emit, warm, control if job.get("stepped") else None)
    except KeyboardInterrupt as exc:  # also a signal that arrives while the policy is undone
        return interrupted_exit_code(exc)


def _parent_arg() -> int | None:
    if "--parent" in sys.argv[:-1]:
        return int(sys.argv[sys.argv.index("--parent") + 1])
    return None


def main() -> int:
    from ..orphan import tie_to_parent

    parent = _parent_arg()
    if parent is not None:  # first: a parent killed from here on takes this process with it
        tie_to_parent(parent)
    try:
        with SignalPolicy():
            stream = _protocol_stream()
            job = json.loads(sys.stdin.readline())  # one line; a stepped job's go lines follow
    except KeyboardInterrupt as exc:
        return interrupted_exit_code(exc)
    return serve(job, stream, control=sys.stdin)


if __name__ == "__main__":
    raise SystemExit(main())
