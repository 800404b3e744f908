"""Reading a user's file: regular files only, never more than a byte limit.

Every file streambench reads on a user's word (``--prompts``, ``--config``, ``--random-weights``
config files, the results files of ``compare``, ``report``, ``plot`` and ``--resume``) goes
through :func:`read_bounded`. A device (``/dev/zero``), a named pipe (a FIFO would block the
read forever), a socket or a directory is refused before anything is read, the file type taken
after symlinks are resolved (a symlink to ``/dev/zero`` is refused too); the file is opened with
``O_NONBLOCK`` and checked again on the open descriptor (a file swapped for a FIFO in between
cannot block), and the read stops one byte past the limit of its kind (:data:`LIMITS`), so a
file that grows while read cannot exhaust memory either. Each refusal is one
:class:`~streambench.errors.UsageError` line naming the option (or file) and what to do.

>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "c.yaml")
>>> _ = open(path, "w").write("seed: 1\\n")
>>> read_bounded(path, "config", "--config")
b'seed: 1\\n'
>>> try:
...     read_bounded("/dev/zero", "config", "--config")
... except UsageError as exc:
...     print(exc)  # doctest: +ELLIPSIS
cannot read --config /dev/zero: it is a character device, not a regular file; ...
"""

from __future__ import annotations

import io
import os
import stat

from .errors import UsageError

__all__ = ["LIMITS", "read_bounded"]

#: the most bytes read of each kind of file: a prompt file (the ShareGPT V3 file is about 670 MB),
#: a results file (a 100,000-request endpoint run with per-token times is some 100 MB), a
#: configuration (YAML config, a model's config.json: kilobytes)
LIMITS: dict[str, int] = {
    "prompts": 4 << 30,
    "results": 1 << 30,
    "config": 16 << 20,
}

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
)
# a read asks for at most this much beyond the file's stated size (files of /proc state 0)
_STEP = 1 << 20


def _size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} bytes"


def _check(st: os.stat_result, where: str, kind: str, limit: int) -> None:
    """UsageError unless ``st`` is a regular file of at most ``limit`` bytes."""
    if not stat.S_ISREG(st.st_mode):
        what = next((name for test, name in _KINDS if test(st.st_mode)), "not a file")
        raise UsageError(f"cannot read {where}: it is {what}, not a regular file; give a file")
    if st.st_size > limit:
        raise _too_large(where, kind, limit)


def _too_large(where: str, kind: str, limit: int) -> UsageError:
    return UsageError(
        f"{where}: larger than {_size(limit)}, the most streambench reads of a {kind} file; "
        "give a smaller file (split it)"
    )


def read_bounded(
    path: str | os.PathLike[str], kind: str, option: str = "", limit: int | None = None
) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` (default ``LIMITS[kind]``).

    ``option`` (``"--prompts"``, ``"--config"``; empty for a positional file) starts every
    message, then the path. :class:`UsageError` for a missing or unreadable file, anything that
    is not a regular file (checked after symlinks, and again on the open descriptor) and a file
    over the limit (checked on its size, and while reading)."""
    cap = LIMITS[kind] if limit is None else limit
    name = os.fspath(path)
    where = f"{option} {name}" if option else name
    try:
        _check(os.stat(name), where, kind, cap)  # follows symlinks: the file's own type
        flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | os.O_NOCTTY
        fd = os.open(name, flags)
    except OSError as exc:
        raise UsageError(f"cannot read {where}: {exc.strerror or exc}") from None
    with io.FileIO(fd, "rb", closefd=True) as f:
        try:
            st = os.fstat(fd)
            _check(st, where, kind, cap)  # the path may name another file since os.stat
            return _read(f, st.st_size, cap, where, kind)
        except OSError as exc:
            raise UsageError(f"cannot read {where}: {exc.strerror or exc}") from None


def _read(f: io.FileIO, size: int, cap: int, where: str, kind: str) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        # the stated size (+1 to see the end) in one read; more only for a file that grows
        want = min(max(size + 1 - total, _STEP), cap + 1 - total)
        chunk = f.read(want)
        if chunk is None:  # EAGAIN: a special file that would block
            raise UsageError(f"cannot read {where}: it would block (not a plain file)")
        if not chunk:
            break
        parts.append(chunk)
        total += len(chunk)
        if total > cap:
            raise _too_large(where, kind, cap)
    return parts[0] if len(parts) == 1 else b"".join(parts)
