"""Child processes that die with their parent, quietly.

A worker (``run --isolate``'s ``python -m streambench.runners.local.worker``, ``endpoint
--workers``'s client
processes) only ever works for the process that started it: its results go nowhere once that
process has gone. :func:`tie_to_parent` makes sure it does not outlive it — also when it is hung
in native code, where no Python-level check would run:

- on Linux the kernel sends the worker ``SIGKILL`` when its parent dies
  (``prctl(PR_SET_PDEATHSIG)``); a parent that died before the call (the race between the
  worker's start and the call) is seen by comparing ``os.getppid()`` with the pid the parent
  gave, and the worker leaves at once;
- elsewhere (or where ``prctl`` fails), a daemon thread compares ``os.getppid()`` with that pid
  every :data:`POLL_S` seconds.

Either way the worker leaves with :func:`leave` (``os._exit``): no traceback, no ``Exception
ignored`` line from flushing a pipe nobody reads.
"""

from __future__ import annotations

import os
import sys
import threading
import time

__all__ = ["EXIT_ORPHANED", "POLL_S", "leave", "tie_to_parent"]

#: the exit code of a worker that left because its parent had gone (nobody reads it; a test does)
EXIT_ORPHANED = 3
#: how often the fallback thread looks at the parent (s)
POLL_S = 0.5
#: <linux/prctl.h>
_PR_SET_PDEATHSIG = 1


def leave() -> None:
    """End this process at once and quietly: its parent has gone (no flush of the streams,
    which may be pipes nobody reads any more)."""
    os._exit(EXIT_ORPHANED)


def _parent_death_signal() -> bool:
    """Ask the kernel for SIGKILL when the parent dies (Linux); whether that took."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(POLL_S)
    leave()


def tie_to_parent(parent: int) -> str:
    """Make this process end when process ``parent`` (the pid its starter passed it) ends.

    Returns how: ``"pdeathsig"`` or ``"watch"``. Leaves at once (:func:`leave`) when the parent
    is already gone. Call it first thing in the worker, from its main thread."""
    how = "pdeathsig" if _parent_death_signal() else "watch"
    # after the prctl: a parent that died before it will never send the signal
    if os.getppid() != parent:
        leave()
    if how == "watch":
        watcher = threading.Thread(target=_watch, args=(parent,), name="streambench-parent")
        watcher.daemon = True
        watcher.start()
    return how
