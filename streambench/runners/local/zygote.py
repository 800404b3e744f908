"""``python -m streambench.runners.local.zygote --parent PID --control FD [--debug]``: the warm
process of ``run --isolate`` (:mod:`streambench.runners.local.warm` explains the whole; this is
its process side).

It imports torch, transformers and streambench's measuring modules once, then serves requests on
the control socket (file descriptor ``FD``): ``fork`` (a worker's job, with the write end of the
worker's event pipe) loads the job's model unless it holds it already (one model at a time: the
previous one is dropped first), forks, and answers ``forked`` with the worker's pid, or
``refused`` with the reason when forking is not safe now. Each worker's exit status follows as
``exited`` (``Popen.returncode``'s meaning). End of stream on the socket, or SIGTERM: it kills its
workers and exits.

Why forking is safe here, measured (tests/test_warm_start.py): this process never runs a
configuration, and it keeps torch at one intra-op thread, so loading a model starts no OpenMP
pool (libgomp's pool does not survive a fork: a child that uses it hangs); every worker sets the
sweep's thread count back first thing. Before each fork it checks that no thread has started
since its imports (numpy's OpenBLAS starts one on import; it handles fork itself) and that no
CUDA/XPU context exists, and refuses otherwise.

Process tree: the sweep -> this process (tied to it: ``PR_SET_PDEATHSIG``) -> its workers (each
tied to this process). A SIGKILLed sweep takes all of it with it.
"""

from __future__ import annotations

import gc
import os
import selectors
import signal
import socket
import sys
import time
from typing import Any, NoReturn, Optional

__all__ = ["main", "thread_count", "unsafe_reason"]

#: the exit code of a worker that failed before its job could start (e.g. a bad event pipe)
EXIT_SOFTWARE = 70
#: seconds between looks for exited workers when no signal woke this process
REAP_EVERY_S = 1.0


def thread_count() -> int:
    """Threads of this process now (``/proc/self/task``)."""
    return len(os.listdir("/proc/self/task"))


def unsafe_reason(baseline_threads: int) -> Optional[str]:
    """Why this process must not fork now (a thread started since the imports; a CUDA/XPU
    context), or ``None``."""
    n = thread_count()
    if n > baseline_threads:
        return (
            f"the warm process has {n} threads, {baseline_threads} after its imports (a thread "
            "pool started): a fork is not safe"
        )
    torch = sys.modules.get("torch")
    if torch is not None:
        if torch.cuda.is_initialized():
            return "a CUDA context exists in the warm process: a fork is not safe"
        xpu = getattr(torch, "xpu", None)
        if xpu is not None and xpu.is_initialized():
            return "an XPU context exists in the warm process: a fork is not safe"
    return None


def warm_imports() -> None:
    """What every worker would import: torch, transformers, the measuring code."""
    import torch  # noqa: F401
    import transformers  # noqa: F401

    from ...engines.variant_load import prepare_model  # noqa: F401
    from ...results.environment import library_versions  # noqa: F401
    from ...telemetry import Sampler  # noqa: F401
    from . import configuration, worker  # noqa: F401


class Server:
    """The zygote's state: the control socket, the model it holds, the workers it forked."""

    def __init__(self, ctl: socket.socket, baseline: int, threads: int) -> None:
        self.ctl, self.baseline, self.threads = ctl, baseline, threads
        self.children: set[int] = set()
        self.key: Optional[str] = None
        #: ``{"loaded", "pid", "load_s"}`` of the model it holds, for its workers
        self.warm: Optional[dict[str, Any]] = None
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        self.selector = selectors.DefaultSelector()

    def serve(self) -> None:
        signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the select below
        signal.set_wakeup_fd(self.wake_w.fileno(), warn_on_full_buffer=False)
        self.selector.register(self.ctl, selectors.EVENT_READ)
        self.selector.register(self.wake_r, selectors.EVENT_READ)
        while True:
            for key, _ in self.selector.select(REAP_EVERY_S):
                if key.fileobj is self.wake_r:
                    self._drain_wakeups()
                elif not self._request():
                    return
            self._reap()

    def _drain_wakeups(self) -> None:
        try:
            while self.wake_r.recv(512):
                pass
        except BlockingIOError:
            pass

    def _request(self) -> bool:
        from .warm import recv_message

        received = recv_message(self.ctl)
        if received is None:
            return False  # the sweep closed its end: stop
        message, fds = received
        if message.get("op") == "fork" and len(fds) in (1, 2):
            self._fork(message["job"], fds[0], fds[1] if len(fds) == 2 else None)
        else:
            for fd in fds:
                os.close(fd)
        return True

    def _preload(self, job: dict[str, Any]) -> Optional[dict[str, Any]]:
        """The job's model, loaded here once per model (``None``: the worker loads it)."""
        key = (job.get("warm") or {}).get("preload_key")
        if not key:
            return None
        if key != self.key:
            from .worker import load_job_model

            self.key, self.warm = key, None
            gc.collect()  # the previous model's memory before the next one loads
            t0 = time.perf_counter()
            loaded = load_job_model(job)[2]
            if not isinstance(loaded, Exception):  # else the worker loads and reports it
                self.warm = {"loaded": loaded, "pid": os.getpid()}
                self.warm["load_s"] = time.perf_counter() - t0
        return self.warm

    def _fork(self, job: dict[str, Any], fd: int, control: Optional[int] = None) -> None:
        """Fork a worker for ``job``: ``fd`` its event pipe, ``control`` where a stepped job
        (``--interleave``) reads its turns."""
        from .warm import send_message

        warm = self._preload(job)
        reason = unsafe_reason(self.baseline)
        if reason is not None:
            os.close(fd)
            if control is not None:
                os.close(control)
            send_message(self.ctl, {"op": "refused", "reason": reason})
            return
        from .resident import resident_file_ranges

        resident = resident_file_ranges()  # for the worker's RSS to be a fresh process's
        zygote = os.getpid()
        pid = os.fork()
        if pid == 0:
            self._child(job, (fd, control), warm, zygote, resident)
        os.close(fd)
        if control is not None:
            os.close(control)
        self.children.add(pid)
        send_message(self.ctl, {"op": "forked", "pid": pid})

    def _child(
        self,
        job: dict[str, Any],
        fds: tuple[int, Optional[int]],
        warm: Optional[dict[str, Any]],
        zygote: int,
        resident: list[tuple[int, int]],
    ) -> NoReturn:
        code = EXIT_SOFTWARE
        try:
            signal.set_wakeup_fd(-1)
            for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
                signal.signal(signum, signal.SIG_DFL)
            self.selector.close()
            for sock in (self.ctl, self.wake_r, self.wake_w):
                sock.close()
            from ..orphan import tie_to_parent

            tie_to_parent(zygote)  # its end takes the worker with it
            import torch

            torch.set_num_threads(self.threads)  # the sweep's, as in a fresh process
            from .resident import populate

            populate(resident)  # the file pages a fresh process has resident (see .resident)
            from .worker import serve

            fd, control = fds
            stream = os.fdopen(fd, "w", buffering=1, encoding="utf-8")
            turns = os.fdopen(control, "r", encoding="utf-8") if control is not None else None
            code = serve(job, stream, warm if warm is not None else {"loaded": None}, turns)
            stream.flush()
        except BaseException:  # noqa: BLE001 - never back into the zygote's loop
            if "--debug" in sys.argv:
                from ...terminal import inert_traceback

                inert_traceback()
        finally:
            os._exit(code)

    def _reap(self) -> None:
        from .warm import send_message

        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            self.children.discard(pid)
            send_message(self.ctl, {"op": "exited", "pid": pid, "returncode": _returncode(status)})

    def kill_children(self) -> None:
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        self.children.clear()


def _returncode(status: int) -> int:
    """``Popen.returncode`` of a wait status: the exit code, or minus the signal."""
    return os.waitstatus_to_exitcode(status)


def _stop(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def _arg(name: str) -> Optional[int]:
    if name in sys.argv[:-1]:
        return int(sys.argv[sys.argv.index(name) + 1])
    return None


def main() -> int:
    from ..orphan import tie_to_parent

    parent, control = _arg("--parent"), _arg("--control")
    if parent is not None:  # first: a sweep killed from here on takes this process with it
        tie_to_parent(parent)
    if control is None:
        print("zygote: --control FD is required", file=sys.stderr)
        return 2
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, _stop)
    os.dup2(2, 1)  # what a library prints goes to stderr, as in a fresh worker
    warm_imports()
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # loading here starts no OpenMP pool (see the module docstring)
    server = Server(socket.socket(fileno=control), thread_count(), threads)
    try:
        server.serve()
    except (BrokenPipeError, ConnectionResetError, EOFError):
        pass  # the sweep has gone
    finally:
        server.kill_children()
    # no interpreter teardown: unloading torch and the model takes ~1 s and keeps nothing; the
    # sweep waits for this exit
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    raise SystemExit(main())
