"""Text that reaches a terminal is inert: one function, :func:`inert`, for every string that came
from a file, a server, a model or the command line before it is printed.

A results file, a prompt file, a server's error body or a model's name may hold terminal control
sequences: OSC 52 writes the clipboard, OSC 8 hides a link behind text, ``ESC[2J`` clears the
screen, a carriage return or a bidi override makes a line say something else than its bytes.
:func:`inert` writes every control character as a visible escape (``\\x1b``, ``\\u202e``), so the
text is shown, not obeyed. :func:`inert_markup` also escapes rich markup (a label ``[bold]`` or
``[link=...]`` is printed as written). :func:`console` is the rich ``Console`` of the command line:
it passes every text segment through :func:`inert` once more and drops hyperlinks, a guard for a
string that missed its call (rich's own colours and cursor moves are untouched).

Pure text processing; rich is imported only by :func:`console` and :func:`inert_markup`.
"""

from __future__ import annotations

import functools
import re
from typing import Any

#: C0 controls except tab and newline, DEL, C1 controls (U+0080-U+009F: 0x9b is a one-byte CSI),
#: the bidi controls (U+061C, U+200E/F, U+202A-U+202E, U+2066-U+2069)
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_UNSAFE = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}]")
_UNSAFE_LINES = re.compile(f"[\x00-\x08\x0a-\x1f\x7f-\x9f{_BIDI}]")


def _visible(m: re.Match[str]) -> str:
    code = ord(m.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def inert(text: Any, *, newlines: bool = True) -> str:
    """``str(text)`` safe to print on a terminal: every control character but tab (and newline,
    unless ``newlines=False``) written as a visible escape: C0 (ESC, BEL, CR, backspace ...), DEL,
    C1 and the bidi overrides/isolates. Idempotent; text without them is returned unchanged.

    >>> inert("a\\x1b]52;c;aGk=\\x07b\\u202ec")
    'a\\\\x1b]52;c;aGk=\\\\x07b\\\\u202ec'
    >>> inert("two\\nlines", newlines=False)
    'two\\\\x0alines'
    """
    text = text if isinstance(text, str) else str(text)
    pattern = _UNSAFE if newlines else _UNSAFE_LINES
    return pattern.sub(_visible, text) if pattern.search(text) else text


def inert_markup(text: Any, *, newlines: bool = True) -> str:
    """:func:`inert` and rich markup escaped: for a string put into a rich markup string (a
    label in ``f"[red]{label}[/red]"``) or a table cell, shown exactly as written."""
    from rich.markup import escape

    return escape(inert(text, newlines=newlines))


def inert_traceback() -> None:
    """The traceback of the exception being handled on stderr, made inert (``--debug``: an
    exception's message may quote a file or a server)."""
    import sys
    import traceback

    print(inert(traceback.format_exc()), end="", file=sys.stderr)


def guard_messages() -> None:
    """Python warnings and log records (a library's, quoting a model's or a file's text: e.g.
    transformers' messages about a checkpoint) printed inert from now on: wraps
    :func:`warnings.formatwarning` and the log record factory, once per process."""
    import logging
    import warnings

    if getattr(warnings.formatwarning, "_streambench_inert", False):
        return
    original = warnings.formatwarning

    def formatwarning(*args: Any, **kwargs: Any) -> str:
        return inert(original(*args, **kwargs))

    formatwarning._streambench_inert = True  # type: ignore[attr-defined]
    warnings.formatwarning = formatwarning
    make_record = logging.getLogRecordFactory()

    def record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        rec = make_record(*args, **kwargs)
        try:
            message = rec.getMessage()
        except Exception:  # noqa: BLE001 - a malformed call: logging reports it when emitting
            return rec
        if _UNSAFE.search(message):
            rec.msg, rec.args = inert(message), None
        return rec

    logging.setLogRecordFactory(record)


def console(**kwargs: Any) -> Any:
    """A ``rich.console.Console(**kwargs)`` whose text segments all pass through :func:`inert`
    and carry no hyperlink: whatever a caller forgot, no control sequence from a text reaches
    the terminal (the segments rich makes itself for colours and cursor moves are kept)."""
    return _console_class()(**kwargs)


@functools.cache
def _console_class() -> Any:
    """The console class, made once on first use (rich is imported only then)."""
    return _make_console_class()


def _make_console_class() -> type:
    from rich.console import Console
    from rich.segment import Segment

    class InertConsole(Console):
        """A rich Console that renders text inert (see :func:`console`)."""

        def render(self, renderable: Any, options: Any = None) -> Any:
            for seg in super().render(renderable, options):
                if seg.control:  # rich's own (cursor moves of a progress bar): not text
                    yield seg
                    continue
                text, style = seg.text, seg.style
                if style is not None and style.link:  # OSC 8: no link is ever drawn
                    style = style.update_link(None)
                safe = inert(text)
                yield seg if safe is text and style is seg.style else Segment(safe, style)

    return InertConsole
