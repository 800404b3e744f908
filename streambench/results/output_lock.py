"""Advisory locks on output files, held for the lifetime of a run: two ``streambench`` processes
writing the same ``-o`` (or ``--plot``) file would each replace the other's rows, so the second
one is refused at its start (exit 2, one line naming the option, the file and the first
process's pid).

The lock is ``fcntl.flock`` on a sidecar file ``.NAME.lock`` beside the target (symlinks
followed), not on the target itself: every atomic write replaces the target's inode, and a lock
on a replaced inode locks nothing. The sidecar holds the pid of its holder and is removed when
the run ends; a holder that dies (even by ``SIGKILL``) releases the lock with its last file
descriptor. Advisory: it protects against other ``streambench`` runs, not against other
programs. Where ``fcntl`` does not exist (Windows) nothing is locked.

Ground floor apart from :mod:`streambench.errors`.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import UsageError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks here
    fcntl = None  # type: ignore[assignment]

__all__ = ["OutputLocks", "holding_outputs", "lock_path"]


def lock_path(path: str | os.PathLike[str]) -> Path:
    """The sidecar lock file of ``path``: ``.NAME.lock`` beside the file a write reaches."""
    target = Path(os.path.realpath(path))
    return target.with_name(f".{target.name}.lock")


class OutputLocks:
    """Exclusive, non-blocking locks on output paths, released by :meth:`release` (also at
    interpreter exit). A forked child never removes its parent's sidecar."""

    def __init__(self) -> None:
        self.held: list[tuple[str, int, int]] = []  # sidecar, fd, pid of the holder

    def acquire(self, path: str | os.PathLike[str], option: str = "--output") -> None:
        """Lock ``path`` or raise :class:`UsageError` when another process holds it."""
        if fcntl is None:
            return
        sidecar = lock_path(path)
        if any(held == str(sidecar) for held, _fd, _pid in self.held):
            return
        for _ in range(20):  # the sidecar may be removed between open and flock: open again
            try:
                sidecar.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(sidecar, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as exc:
                raise UsageError(
                    f"{option} {path}: cannot create the lock file {sidecar} "
                    f"({exc.strerror or exc}); choose another directory"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                owner = _owner(fd)
                os.close(fd)
                raise UsageError(
                    f"{option} {path}: another streambench process{owner} is writing this file "
                    f"(lock {sidecar}); wait for it to finish or write to another file"
                ) from None
            if _same_inode(fd, sidecar):
                with contextlib.suppress(OSError):  # the pid is for messages; a full disk
                    os.ftruncate(fd, 0)  # must not stop the lock (its write fails later, loudly)
                    os.write(fd, f"{os.getpid()}\n".encode())
                if not self.held:
                    atexit.register(self.release)
                self.held.append((str(sidecar), fd, os.getpid()))
                return
            os.close(fd)
        raise UsageError(f"{option} {path}: cannot take the lock {sidecar}; try again")

    def release(self) -> None:
        """Remove the sidecars this process created and drop the locks."""
        if self.held:
            atexit.unregister(self.release)
        while self.held:
            sidecar, fd, pid = self.held.pop()
            if pid == os.getpid():  # a forked child must not remove its parent's lock
                with contextlib.suppress(OSError):
                    os.unlink(sidecar)
            with contextlib.suppress(OSError):
                os.close(fd)


def _same_inode(fd: int, sidecar: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(sidecar)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _owner(fd: int) -> str:
    """`` (pid N)`` from the sidecar's content, or nothing when it says no pid."""
    with contextlib.suppress(OSError):
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text.isdigit():
            return f" (pid {int(text)})"
    return ""


@contextlib.contextmanager
def holding_outputs(
    outputs: Iterable[str], plot: str | None = None, writer: bool = True
) -> Iterator[OutputLocks]:
    """Lock every ``--output`` and the ``--plot`` target for the block (nothing when this
    process does not write: the other ranks of a distributed run)."""
    locks = OutputLocks()
    try:
        if writer:
            for path in outputs:
                locks.acquire(path, "--output")
            if plot:
                locks.acquire(plot, "--plot")
        yield locks
    finally:
        locks.release()
