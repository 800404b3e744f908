"""Numbers written as text (options, config values, prompt-file fields): ASCII only, bounded.

Python's ``int()`` and ``float()`` read any Unicode decimal digit (``int('٣')`` is 3) and
``str.isdigit()`` is true for ``'²'``, which ``int()`` then refuses with a raw ``ValueError``;
``int()`` also refuses more than 4,300 digits. Every number a user writes goes through
:func:`whole` or :func:`real` instead: the digits 0-9 only, at most :data:`MAX_NUMBER_CHARS`
characters, and a ``ValueError`` whose message says what is wrong (callers add the option, key
or file and line, and exit 2).

Ground floor: imports nothing from the package.

>>> whole(" 42 "), real("2.5e-3")
(42, 0.0025)
>>> whole("٣")
Traceback (most recent call last):
...
ValueError: '٣' is not written with the digits 0-9
>>> whole("9" * 5000)
Traceback (most recent call last):
...
ValueError: '99999999999999999999'... (5000 characters) is too long for a number
"""

from __future__ import annotations

import argparse
import re

__all__ = ["MAX_NUMBER_CHARS", "int_text", "real", "real_arg", "whole", "whole_arg"]

#: the longest number text read; no setting needs more, and it stays far below the 4,300 digits
#: at which ``int()`` itself refuses
MAX_NUMBER_CHARS = 100

_WHOLE = re.compile(r"[+-]?[0-9]+", re.ASCII)
_REAL = re.compile(
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)",
    re.ASCII | re.IGNORECASE,
)


def _checked(text: object) -> str:
    """``text`` stripped, or ``ValueError`` for non-ASCII or over-long text."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a number")
    s = text.strip()
    if len(s) > MAX_NUMBER_CHARS:
        raise ValueError(f"{s[:20]!r}... ({len(s)} characters) is too long for a number")
    if not s.isascii():
        if any(c.isdigit() or c.isnumeric() for c in s):
            raise ValueError(f"{s[:40]!r} is not written with the digits 0-9")
        raise ValueError(f"{s[:40]!r} is not a number")
    return s


def whole(text: str) -> int:
    """The whole number written in ``text`` (optional sign, digits 0-9, surrounding blanks
    ignored); ``ValueError`` saying why otherwise."""
    s = _checked(text)
    if not _WHOLE.fullmatch(s):
        raise ValueError(f"{s[:40]!r} is not a whole number")
    return int(s)


def real(text: str) -> float:
    """The real number written in ``text`` (``2``, ``-0.5``, ``1e-3``, ``inf``, ``nan``: callers
    check finiteness and range); ``ValueError`` saying why otherwise."""
    s = _checked(text)
    if not _REAL.fullmatch(s):
        raise ValueError(f"{s[:40]!r} is not a number")
    return float(s)


def int_text(value: int) -> str:
    """``value`` as text for a message, however large (``str()`` refuses an int of more than
    4,300 digits, which YAML's ``0xfff...`` can give): at most 40 characters."""
    if value.bit_length() > 1000:
        return f"a {value.bit_length()}-bit number"
    return str(value)[:40]


def whole_arg(text: str) -> int:
    """argparse ``type=`` for a whole number: :func:`whole`, its reason in argparse's one-line
    error (exit 2)."""
    try:
        return whole(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def real_arg(text: str) -> float:
    """argparse ``type=`` for a real number: :func:`real`, its reason in argparse's one-line
    error (exit 2)."""
    try:
        return real(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
