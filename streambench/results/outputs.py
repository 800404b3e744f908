"""Output files: checked before any work, written atomically, never touched before there is
something better to write.

- :func:`check_output_targets` runs before a benchmark starts: a known extension, no directory,
  a writable parent (probed with a temporary file beside the target, the target itself is not
  opened), each path once, and nothing inside a protected directory (the model, IR or cache that
  the run reads). It raises :class:`~streambench.errors.UsageError` naming the option and path.
- :func:`atomic_write_text` writes a temporary file beside the target and ``os.replace``\\ s it:
  a reader never sees half a file, and a crash keeps the previous complete file. A symlinked
  target is written through (the link stays a link); an existing file keeps its permission bits;
  a new file gets the usual ``0666 & ~umask``.

- :class:`RunInputs` is the one registry of what a run reads (model, assistant model, tokenizer,
  prompts file, config file, export cache ...): every output check consults it, and an output
  that is, or is inside, an input is refused.
- :func:`describe_write_error` says why a write failed, and where ("the disk is full" for
  ``ENOSPC``); a failed write is a failure (exit 1), the previous file intact.
- :class:`OutputLocks` holds an advisory lock per output for the lifetime of the run, so that a
  second process writing the same file is refused at its start
  (:mod:`streambench.results.output_lock`).

Ground floor apart from :mod:`streambench.errors`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO

from ..errors import UsageError

__all__ = [
    "RunInputs",
    "WriteFailed",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output_targets",
    "describe_write_error",
    "is_inside",
    "write_error",
]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def is_inside(path: str | os.PathLike[str], directory: str | os.PathLike[str]) -> bool:
    """True when ``path`` (resolved, symlinks followed) is ``directory`` or inside it."""
    try:
        target = Path(os.path.realpath(path))
        base = Path(os.path.realpath(directory))
    except (OSError, ValueError):
        return False
    return target == base or base in target.parents


def _same_file(a: str, b: str) -> bool:
    """True when both exist and are one file (a hard link to an input counts)."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


class RunInputs:
    """The one registry of what a run reads: ``(what, path)`` pairs, e.g. ``("prompts file",
    "p.csv")`` or ``("model", "./my-model")``, files or directories. Output checks consult it
    (:func:`check_output_targets`, ``--profile``): no output may be an input, or inside one.
    Inputs that do not exist locally (a hub id, a URL) are passed over."""

    def __init__(self, pairs: Iterable[tuple[str, str | None]] = ()) -> None:
        self.pairs: list[tuple[str, str]] = []
        for what, path in pairs:
            self.add(what, path)

    def add(self, what: str, path: str | os.PathLike[str] | None) -> None:
        """Register ``path`` (ignored when empty or ``None``) as the input ``what``."""
        if path is not None and str(path) and "\0" not in str(path):
            self.pairs.append((what, os.path.expanduser(str(path))))

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.pairs)

    def holding(self, path: str | os.PathLike[str]) -> tuple[str, str] | None:
        """The ``(what, input)`` that ``path`` is, or is inside; ``None`` when it is none."""
        for what, source in self.pairs:
            if not os.path.exists(source):
                continue
            if is_inside(path, source) or _same_file(str(path), source):
                return what, source
        return None

    def check(self, path: str | os.PathLike[str], option: str) -> None:
        """:class:`UsageError` (one line naming the option and the input) when ``path`` is an
        input of the run or inside one."""
        found = self.holding(path)
        if found is None:
            return
        what, source = found
        if os.path.isdir(source):
            raise UsageError(
                f"{option} {path}: inside the {what} directory {source}, which this run reads; "
                "write results elsewhere"
            )
        raise UsageError(
            f"{option} {path}: is the {what} {source}, which this run reads; write results "
            "elsewhere"
        )


def _probe_directory(directory: Path) -> None:
    """Create and remove a temporary file in ``directory`` (what the atomic write needs)."""
    fd, tmp = tempfile.mkstemp(prefix=".streambench-probe.", dir=directory)
    os.close(fd)
    os.unlink(tmp)


def check_output_targets(
    paths: Sequence[str],
    option: str = "--output",
    formats: Iterable[str] | None = None,
    protected: Iterable[tuple[str, str]] = (),
) -> None:
    """Check every output path before any work; :class:`UsageError` on the first bad one.

    ``formats``: allowed extensions (lower case, with the dot), ``None`` for any.
    ``protected``: the run's inputs, a :class:`RunInputs` or ``(what, path)`` pairs, e.g.
    ``("model", "./my-model")``: no output may be one of them or inside one."""
    allowed = None if formats is None else tuple(formats)
    inputs = protected if isinstance(protected, RunInputs) else RunInputs(protected)
    seen: dict[str, str] = {}
    for raw in paths:
        path = str(raw)
        if not path or "\0" in path:
            raise UsageError(f"{option} {path!r}: not a file name")
        ext = Path(path).suffix.lower()
        if allowed is not None and ext not in allowed:
            raise UsageError(
                f"{option} {path}: unknown format {ext or '(no extension)'!r}; use "
                + ", ".join(allowed)
            )
        real = os.path.realpath(path)
        if real in seen:
            raise UsageError(f"{option} {path}: named twice (also as {seen[real]})")
        seen[real] = path
        inputs.check(path, option)
        if os.path.isdir(real):
            raise UsageError(f"{option} {path}: is a directory; name a file")
        if os.path.exists(real) and not os.access(real, os.W_OK):
            raise UsageError(f"{option} {path}: the file is not writable")
        parent = Path(real).parent
        existing = parent
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise UsageError(f"{option} {path}: cannot write there: {existing} is not a directory")
        try:
            if existing == parent:
                _probe_directory(parent)
            elif not os.access(existing, os.W_OK | os.X_OK):
                raise PermissionError(13, "Permission denied")
        except OSError as exc:
            raise UsageError(
                f"{option} {path}: cannot write in {existing} ({exc.strerror or exc}); choose "
                "another directory"
            ) from None


def describe_write_error(exc: OSError, path: str | os.PathLike[str]) -> str:
    """Why writing ``path`` failed, and where: ``"the disk is full (no space left in DIR)"``
    for ``ENOSPC``, the quota for ``EDQUOT``, else the system's message."""
    where = os.path.dirname(os.path.realpath(path)) or "."
    if exc.errno == errno.ENOSPC:
        return f"the disk is full (no space left on the device of {where})"
    if exc.errno == getattr(errno, "EDQUOT", -1):
        return f"the disk quota is exceeded (in {where})"
    return str(exc.strerror or exc)


class WriteFailed(RuntimeError):
    """A write that failed for want of room (a full disk, a quota) or an I/O error: a failure of
    the run (exit 1), not bad input."""


#: errors of a write that say nothing about the path given (exit 1, not 2)
_FAILURES = {errno.ENOSPC, errno.EIO, errno.EFBIG, getattr(errno, "EDQUOT", -1)}


def write_error(exc: OSError, option: str, path: str | os.PathLike[str]) -> Exception:
    """The exception to raise for a write of ``option``'s ``path`` that failed with ``exc``:
    :class:`WriteFailed` (exit 1) for a full disk or an I/O error, :class:`UsageError` (exit 2)
    for a path that cannot be written (permissions, not a directory ...); one line, naming the
    path."""
    message = f"cannot write {option} {path}: {describe_write_error(exc, path)}"
    return WriteFailed(message) if exc.errno in _FAILURES else UsageError(message)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically (see the module docstring). Parent directories are
    created."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, like :func:`atomic_write_text`."""
    atomic_write(path, lambda f: f.write(data))


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> None:
    """Call ``write(file)`` on a temporary file beside ``path`` (binary), then replace ``path``
    with it: the one writer of every results file and plot. A symlinked target is written
    through (the link stays a link); an existing file keeps its permission bits, a new one gets
    ``0666 & ~umask``. On any error (a full disk included) the temporary file is removed, the
    previous file is left as it was, and the error propagates."""
    target = Path(os.path.realpath(path))  # write through a symlink, keep the link
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = target.stat().st_mode & 0o7777
    except OSError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if hasattr(os, "fchmod"):  # not on Windows before Python 3.13
                os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
