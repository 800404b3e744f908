"""``python -m streambench.runners.local.worker``: the worker process of ``streambench run
--isolate``.

Reads one job (JSON: settings, one model, its configurations) on stdin, loads the model, measures
each configuration and writes one JSON event per line to the protocol stream (the original
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
    loaded: Any, settings: Any, spec: Any, config: list[int], emit: Callable[[dict], None]
) -> dict[str, Any]:
    """One configuration, measured: its results/2 object (what the ``entry`` event carries to
    the parent, which reads it back with ``ConfigurationResult.from_dict``)."""
    from .configuration import run_configuration
    from .plan import new_result

    n_in, n_out, batch, vi = config
    entry = new_result(settings, spec.name, n_in, n_out, batch, vi)
    try:
        run_configuration(
            loaded,
            entry,
            settings,
            on_run=lambda i, warm: emit({"event": "run"}),
            print_fn=lambda line: emit({"event": "line", "text": line}),
            variant=settings.variants[vi],
        )
    except KeyboardInterrupt:
        emit({"event": "entry", "entry": entry.to_dict()})
        raise
    except Exception:  # noqa: BLE001 - recorded in the result
        if "--debug" in sys.argv:
            inert_traceback()  # the terminal is shared with the parent
    return entry.to_dict()


def run_job(job: dict[str, Any], emit: Callable[[dict], None]) -> int:
    """Load the job's model and measure its configurations; returns the exit code."""
    from ...devices import resolve_device
    from ...engines.variant_load import prepare_model
    from ...results.environment import library_versions
    from .plan import quiet_transformers

    settings, spec = _settings(job["settings"], job["spec"])
    variant = settings.variants[job["configurations"][0][3]]  # one load: the same for all
    with quiet_transformers(settings.verbose):
        try:
            loaded = prepare_model(spec, settings, variant, resolve_device(job["device"]))
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            if "--debug" in sys.argv:
                inert_traceback()  # the terminal is shared with the parent
            usage = isinstance(exc, UsageError)
            error = str(exc) if usage else f"loading {spec.name} failed: {describe_exception(exc)}"
            emit({"event": "load_failed", "error": error, "usage": usage})
            return EXIT_FAILED
        emit({"event": "loaded", "notes": list(loaded.notes), "versions": library_versions()})
        for config in job["configurations"]:
            emit({"event": "entry", "entry": _measure(loaded, settings, spec, config, emit)})
    return EXIT_OK


def _parent_arg() -> int | None:
    if "--parent" in sys.argv[:-1]:
        return int(sys.argv[sys.argv.index("--parent") + 1])
    return None


def main() -> int:
    from ..orphan import leave, tie_to_parent

    parent = _parent_arg()
    if parent is not None:  # first: a parent killed from here on takes this process with it
        tie_to_parent(parent)
    try:
        with SignalPolicy():
            stream = _protocol_stream()

            def emit(event: dict[str, Any]) -> None:
                try:
                    stream.write(json.dumps(event) + "\n")
                except BrokenPipeError:  # nobody reads the results any more
                    leave()

            guard_messages()  # this process writes to the parent's terminal too
            return run_job(json.loads(sys.stdin.read()), emit)
    except KeyboardInterrupt as exc:  # also a signal that arrives while the policy is undone
        return interrupted_exit_code(exc)


if __name__ == "__main__":
    raise SystemExit(main())
