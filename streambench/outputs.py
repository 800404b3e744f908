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

Ground floor apart from :mod:`streambench.errors`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from .errors import UsageError

__all__ = ["atomic_write_text", "check_output_targets", "is_inside"]


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
    ``protected``: ``(what, directory)`` pairs, e.g. ``("model", "./my-model")``, that no output
    may be written into."""
    allowed = None if formats is None else tuple(formats)
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
        for what, directory in protected:
            if directory and os.path.exists(directory) and is_inside(path, directory):
                raise UsageError(
                    f"{option} {path}: inside the {what} directory {directory}; write results "
                    "elsewhere"
                )
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


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically (see the module docstring). Parent directories are
    created."""
    target = Path(os.path.realpath(path))  # write through a symlink, keep the link
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = target.stat().st_mode & 0o7777
    except OSError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            if hasattr(os, "fchmod"):  # not on Windows before Python 3.13
                os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
