"""The warm start of ``run --isolate config|model``: a worker forked from a warm process instead
of a fresh Python that imports torch and transformers and loads the model again.

The warm process (:mod:`streambench.runners.local.zygote`, "the zygote") is started once per
sweep, imports the heavy modules, loads each model once (on the CPU, one intra-op thread: no
thread pool exists when it forks) and forks one worker per configuration (``config``) or per
model (``model``). The worker is the same worker as a fresh one
(:func:`streambench.runners.local.worker.serve`): same events, same exit codes. Copy-on-write
keeps the weights shared; what a configuration allocates dies with its worker, and the zygote
itself never runs a configuration, so every worker starts from the same state: the numbers do
not depend on the order.

Where it is used (:func:`fork_refusal` says why not): Linux, ``--device cpu``, an engine that
says it is fork-safe (:attr:`streambench.engines.base.Engine.fork_safe`: transformers), without
``--ipex`` or ``--low-bit``. Everything else (CUDA/XPU/MPS, OpenVINO, llama.cpp, ORT GenAI, vLLM)
gets a fresh process, as before. The zygote also refuses a fork, and the sweep falls back to a
fresh process, when it finds a thread started since its imports (a thread pool: libgomp's does
not survive a fork) or a CUDA/XPU context.

This module is the sweep's side: :class:`Zygote` (start, fork, exit statuses, stop) and
:class:`ForkedProc`, which looks to :class:`streambench.runners.local.isolation.Worker` like the
``subprocess.Popen`` of a fresh worker. The two talk over a Unix socket pair: length-prefixed
JSON messages, the worker's event pipe passed with ``SCM_RIGHTS``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from typing import Any, Optional

__all__ = ["ForkedProc", "Zygote", "fork_refusal", "recv_message", "send_message"]

_HEADER = struct.Struct("!I")
#: seconds the zygote may take to exit after it was asked to, before SIGKILL
STOP_WAIT_S = 5.0


def send_message(sock: socket.socket, message: dict[str, Any], fds: tuple[int, ...] = ()) -> None:
    """One message: a 4-byte length, then JSON; ``fds`` ride with its first bytes."""
    body = json.dumps(message).encode()
    data = _HEADER.pack(len(body)) + body
    sent = socket.send_fds(sock, [data], list(fds)) if fds else sock.send(data)
    if sent < len(data):
        sock.sendall(data[sent:])


def recv_message(sock: socket.socket) -> Optional[tuple[dict[str, Any], list[int]]]:
    """The next message and the file descriptors that came with it; ``None`` at end of stream."""
    head, fds, _flags, _addr = socket.recv_fds(sock, _HEADER.size, 4)
    if not head:
        return None
    head = head + _recv_exactly(sock, _HEADER.size - len(head))
    (size,) = _HEADER.unpack(head)
    return json.loads(_recv_exactly(sock, size)), list(fds)


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(left)
        if not chunk:
            raise EOFError("the other end closed the socket mid-message")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def fork_refusal(settings: Any, variant: dict[str, Any], device: Any) -> Optional[str]:
    """Why a worker for ``variant`` on ``device`` must start as a fresh process, or ``None``
    when it may be forked from the warm process (see the module docstring)."""
    from ...engines import engine_of, get_engine
    from ...engines.variant_load import load_settings

    if not sys.platform.startswith("linux"):
        return f"{sys.platform}: forking a warm process is measured on Linux only"
    engine = get_engine(engine_of(variant))
    if not engine.fork_safe:
        return f"--engine {engine.name}: not shown safe to fork after loading"
    kind = getattr(device, "type", str(device))
    if kind != "cpu":
        return f"--device {device}: a fork next to a {kind} runtime is not measured here"
    loads = load_settings(settings, variant)
    if getattr(settings, "ipex", False) or loads.low_bit:
        return "--ipex/--low-bit: their runtimes are not shown safe to fork"
    return None


class Zygote:
    """The warm process of one sweep, seen from the sweep: it forks workers on request."""

    def __init__(self, debug: bool = False, key: str = "") -> None:
        #: the model load it serves (one warm process per model and load settings)
        self.key = key
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        cmd = [sys.executable, "-m", "streambench.runners.local.zygote"]
        cmd += ["--parent", str(os.getpid()), "--control", str(theirs.fileno())]
        cmd += ["--debug"] if debug else []
        # its own session, like a fresh worker: Ctrl-C reaches the sweep only, which stops it
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            pass_fds=(theirs.fileno(),),
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
        theirs.close()
        self.sock = ours
        #: worker pid -> its exit status (``Popen.returncode``'s meaning), once reported
        self.exits: dict[int, int] = {}
        #: why this zygote forks no more (it refused, or it has gone), or ``None``
        self.broken: Optional[str] = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def fork(self, job: dict[str, Any]) -> ForkedProc | str:
        """A worker for ``job`` forked from the warm process, or why not (it refused: a thread
        pool or a device context exists there; or it has gone). Blocks while the zygote imports
        and, for a model it has not loaded yet, loads it."""
        if self.broken:
            return self.broken
        read_fd, write_fd = os.pipe()
        # a stepped job (--interleave) reads its turns from a second pipe
        go_r, go_w = os.pipe() if job.get("stepped") else (-1, -1)
        try:
            fds = (write_fd, go_r) if go_r >= 0 else (write_fd,)
            send_message(self.sock, {"op": "fork", "job": job}, fds)
        except OSError as exc:
            os.close(read_fd)
            if go_w >= 0:
                os.close(go_w)
            self.broken = f"the warm process has gone ({exc.strerror})"
            return self.broken
        finally:
            os.close(write_fd)  # the worker holds it now: its exit is our end of stream
            if go_r >= 0:
                os.close(go_r)
        while True:
            message = self._next(None)
            if message is None:
                os.close(read_fd)
                if go_w >= 0:
                    os.close(go_w)
                self.broken = "the warm process has gone"
                return self.broken
            if message.get("op") == "forked":
                stream = os.fdopen(read_fd, "r", encoding="utf-8")
                control = os.fdopen(go_w, "w", encoding="utf-8") if go_w >= 0 else None
                return ForkedProc(self, int(message["pid"]), stream, control)
            if message.get("op") == "refused":
                os.close(read_fd)
                if go_w >= 0:
                    os.close(go_w)
                self.broken = str(message.get("reason"))
                return self.broken

    def _next(self, timeout: Optional[float], exits: bool = False) -> Optional[dict[str, Any]]:
        """The zygote's next message other than an exit status (recorded in :attr:`exits`; with
        ``exits``, one of those too), or ``None`` when it has gone or nothing came within
        ``timeout`` (``None``: no limit)."""
        import select

        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if self.broken == "the warm process has gone":
                return None
            ready, _, _ = select.select([self.sock], [], [], left)
            if not ready:
                return None
            try:
                received = recv_message(self.sock)
            except (OSError, EOFError):
                received = None
            if received is None:
                self.broken = "the warm process has gone"
                return None
            message, fds = received
            for fd in fds:  # never sent this way; closed so that none leaks
                os.close(fd)
            if message.get("op") == "exited":
                self.exits[int(message["pid"])] = int(message["returncode"])
                if not exits:
                    continue
            return message

    def collect(self, timeout: Optional[float]) -> None:
        """Wait up to ``timeout`` seconds (``None``: no limit; 0: not at all) for the next exit
        status, recorded in :attr:`exits`."""
        self._next(timeout, exits=True)

    def stop(self) -> None:
        """End the zygote; its workers end with it (each is tied to it)."""
        try:
            self.sock.close()  # its end of stream: it kills what it forked and exits
        except OSError:
            pass
        try:
            self.proc.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class ForkedProc:
    """A forked worker, with the part of ``subprocess.Popen``'s interface that
    :class:`~streambench.runners.local.isolation.Worker` uses. Its exit status comes from the
    zygote, its parent. One whose zygote has gone was killed with it (``PR_SET_PDEATHSIG``):
    its status reads as SIGKILL."""

    def __init__(self, zygote: Zygote, pid: int, stdout: Any, stdin: Any = None) -> None:
        self.zygote, self.pid, self.stdout = zygote, pid, stdout
        #: a stepped worker's turns (``--interleave``), as a fresh worker's stdin
        self.stdin = stdin
        self.returncode: Optional[int] = None

    def _settle(self) -> Optional[int]:
        if self.returncode is None:
            if self.pid in self.zygote.exits:
                self.returncode = self.zygote.exits.pop(self.pid)
            elif self.zygote.broken == "the warm process has gone":
                self.returncode = -int(signal.SIGKILL)
        return self.returncode

    def poll(self) -> Optional[int]:
        if self._settle() is None:
            self.zygote.collect(0)
        return self._settle()

    def wait(self, timeout: Optional[float] = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._settle() is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout or 0)
            self.zygote.collect(left)
        self.stdout.close()
        if self.stdin is not None and not self.stdin.closed:
            try:
                self.stdin.close()
            except OSError:  # the worker has gone: nothing to flush to
                pass
        return int(self.returncode)  # type: ignore[arg-type]

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)
