"""Each configuration (or each model) of ``streambench run`` in a fresh worker process, so that
its numbers do not depend on what ran before it, and a crash (a segfault, the OOM killer, a
poisoned CUDA context) costs one row, not the sweep.

- ``--isolate config`` (the default for sweeps of more than one configuration): one worker per
  configuration, forked from a warm process that imported torch and loaded the model once
  (:mod:`streambench.runners.local.warm`, where that is safe), else a fresh process that loads
  the model itself; either way each row's memory starts from the same state.
- ``--isolate fresh``: one fresh process per configuration, never forked (what ``config`` was
  before the warm start; the reference the warm start is measured against).
- ``--isolate model``: one worker per model load (model, dtype, low-bit …) that runs all of that
  model's configurations in turn — cheaper, and the results say so.
- ``--isolate none``: everything in this process (the behaviour before isolation; the only mode
  under torchrun/deepspeed launchers).

The parent owns the results document. A worker is ``python -m streambench.runners.local.worker``:
it reads one job (JSON, one line) on stdin and writes one JSON event per line on its own copy of
stdout (anything else the worker prints goes to stderr): ``loaded`` / ``load_failed``, ``run``
after each ``generate()``, ``line`` for ``--verbose`` text, ``step`` after each trial of a
stepped job (``--interleave``: the worker then waits for its next ``go`` line,
:meth:`Worker.go`), and ``entry`` with each finished configuration. A worker that dies without
an entry becomes a failed row whose error names the cause (``killed by SIGKILL (out of
memory?)``, ``SIGSEGV``, the exit code); one that dies after this process got a signal is
``interrupted``. A worker dies with this process, quietly, however this process ends (SIGKILL
included; :mod:`streambench.runners.orphan`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import asdict
from typing import Any, Optional

from ...errors import Interrupted

__all__ = ["ISOLATION_MODES", "Worker", "death_cause", "job_for"]

ISOLATION_MODES = ("config", "fresh", "model", "none")

#: seconds a worker may take to stop after it was passed this process's signal
STOP_GRACE_S = 60.0
#: seconds a worker whose job is done may take to exit by itself before it is sent SIGTERM
EXIT_WAIT_S = 5.0


def death_cause(returncode: int) -> str:
    """What a worker's exit status means, for a failed row.

    >>> death_cause(-9)
    'worker killed by SIGKILL (out of memory?)'
    >>> death_cause(3)
    'worker exited with code 3 without a result'
    """
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = " (out of memory?)" if -returncode == signal.SIGKILL else ""
        return f"worker killed by {name}{hint}"
    return f"worker exited with code {returncode} without a result"


def job_for(
    settings: Any, spec: Any, device: Any, configurations: list[tuple[int, int, int]]
) -> dict:
    """The JSON job of a worker: the sweep's settings, one model and its configurations."""
    data = asdict(settings)
    data["models"] = []
    return {
        "settings": data,
        "spec": asdict(spec),
        "device": str(device),
        "configurations": [list(c) for c in configurations],
    }


class Worker:
    """One worker process and its event stream (see the module docstring)."""

    def __init__(self, job: dict[str, Any], debug: bool = False, forked: Any = None) -> None:
        """Start a fresh worker for ``job``, or take ``forked``: one already forked for it from
        the warm process (:class:`streambench.runners.local.warm.ForkedProc`)."""
        self.pending = len(job["configurations"])
        self.interrupted_by: Optional[int] = None
        if forked is not None:
            self.proc: Any = forked
            return
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        cmd = [
            sys.executable,
            "-m",
            "streambench.runners.local.worker",
            "--parent",
            str(os.getpid()),
        ]
        cmd += ["--debug"] if debug else []
        # Its own session: a Ctrl-C at the terminal reaches this process only, which passes it
        # on as SIGTERM (see pass_on) — a worker still starting has no handler for SIGINT yet,
        # and Python would print a traceback; SIGTERM ends it quietly.
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(job) + "\n")  # one line: JSON text has no newline
        if job.get("stepped"):
            self.proc.stdin.flush()  # stdin stays open: go() writes the rotation's turns
        else:
            self.proc.stdin.close()

    def go(self) -> bool:
        """``--interleave``: let a stepped worker run its next step (the warm-ups and the first
        trial, then one trial); ``False`` when it can no longer be told (it has gone)."""
        control = getattr(self.proc, "stdin", None)
        try:
            control.write("go\n")
            control.flush()
            return True
        except (OSError, ValueError, AttributeError):  # a closed pipe, a worker that has gone
            return False

    def end_control(self) -> None:
        """No more turns: the worker reads end of stream (a stepped one stops on it)."""
        control = getattr(self.proc, "stdin", None)
        if control is not None and not control.closed:
            try:
                control.close()
            except OSError:
                pass

    def next_event(self) -> Optional[dict[str, Any]]:
        """The worker's next event, or ``None`` once it has exited. A signal to this process
        while waiting is passed on to the worker (see :meth:`pass_on`) and the reading goes on,
        so the worker's partial entry still arrives."""
        assert self.proc.stdout is not None
        while True:
            try:
                line = self.proc.stdout.readline()
            except KeyboardInterrupt as exc:
                self.pass_on(exc)
                continue
            if not line:
                self.wait()
                return None
            try:
                event = json.loads(line)
            except ValueError:
                continue  # not ours: a library printed to the protocol stream
            if isinstance(event, dict):
                return event

    def pass_on(self, exc: KeyboardInterrupt) -> None:
        """Stop the worker (SIGTERM, once) for this process's signal; it sends what it has."""
        signum = exc.signum if isinstance(exc, Interrupted) else int(signal.SIGINT)
        if self.interrupted_by is None:
            self.interrupted_by = signum
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)  # the worker stops on it as on Ctrl-C

    def wait(self) -> int:
        try:
            return self.proc.wait(timeout=STOP_GRACE_S if self.interrupted_by else None)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def raise_if_interrupted(self) -> None:
        if self.interrupted_by is not None:
            raise Interrupted(self.interrupted_by)

    def stop(self) -> None:
        """End the worker (its job is done or no longer needed): it exits by itself after its
        last entry (an engine's teardown, e.g. OpenVINO's, may take a moment), else SIGTERM."""
        if self.proc.poll() is None:
            try:
                self.proc.wait(timeout=EXIT_WAIT_S)
                return
            except subprocess.TimeoutExpired:
                pass
            self.proc.terminate()
            self.wait()
