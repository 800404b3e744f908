"""User-facing errors, the one exit-code policy and the one signal policy of every command.

Exit codes (``streambench run``, ``endpoint``, ``plot``, ``compare`` and
``python -m streambench.endpoint`` alike):

- ``0`` success;
- ``1`` failure: a configuration or request failed, or ``compare`` found a regression or could not
  compare (a gate fails closed);
- ``2`` bad input: an option, a config key, a file; one line on stderr naming it, never a traceback
  unless ``--debug`` (which adds the traceback but keeps the code);
- ``128 + N`` interrupted by signal N: ``130`` Ctrl-C (SIGINT), ``143`` SIGTERM, ``129`` SIGHUP.
  Finished results are kept and the results file says ``"interrupted": true``.

Signals: :class:`SignalPolicy` turns SIGTERM and SIGHUP into the same :class:`Interrupted`
(a :class:`KeyboardInterrupt`) that Ctrl-C raises, so batch schedulers and ``timeout`` stop a run
the way Ctrl-C does. Signals that arrive while the first one is being handled (a second Ctrl-C
a millisecond later) are counted, not raised, so the save that records the interruption finishes.

This module is ground floor: it imports nothing from the package.

>>> exit_code_for_signal(15)
143
>>> str(UsageError("--seed 1e23: expected a whole number"))
'--seed 1e23: expected a whole number'
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any, Optional

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "HANDLED_SIGNALS",
    "Interrupted",
    "SignalPolicy",
    "UsageError",
    "describe_exception",
    "exit_code_for_signal",
    "interrupted_exit_code",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
#: Ctrl-C; other signals give ``128 + signum`` (see :func:`exit_code_for_signal`)
EXIT_INTERRUPTED = 128 + int(signal.SIGINT)

#: the signals that stop a run like Ctrl-C (those that exist on this platform)
HANDLED_SIGNALS: tuple[int, ...] = tuple(
    int(getattr(signal, name)) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class UsageError(ValueError):
    """Bad input from the user (an option, a config key, a file): exit code 2, one line that
    names what is wrong and says what to do."""


class Interrupted(KeyboardInterrupt):
    """A run stopped by a signal; ``signum`` is the signal (SIGINT for Ctrl-C)."""

    def __init__(self, signum: int = int(signal.SIGINT)) -> None:
        super().__init__(signal_name(signum))
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        return exit_code_for_signal(self.signum)


def describe_exception(exc: BaseException) -> str:
    """``"TypeName: message"``, or just the type name when the message is empty or repeats it
    (never ``"MemoryError: MemoryError"`` nor ``"ReadError: "``).

    >>> describe_exception(MemoryError())
    'MemoryError (out of memory)'
    >>> describe_exception(ValueError("bad"))
    'ValueError: bad'
    """
    name = type(exc).__name__
    text = str(exc).strip()
    if isinstance(exc, MemoryError) and text in ("", name):
        return f"{name} (out of memory)"
    if not text or text == name:
        return name
    return f"{name}: {text}"


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def exit_code_for_signal(signum: int) -> int:
    """The shell's convention: ``128 + signum`` (130 SIGINT, 143 SIGTERM, 129 SIGHUP)."""
    return 128 + int(signum)


def interrupted_exit_code(exc: BaseException) -> int:
    """Exit code of a :class:`KeyboardInterrupt`. A plain one counts as Ctrl-C, unless the
    active :class:`SignalPolicy` received another signal first: a library whose C code checks
    for signals (Ray's ``ray.wait``/``ray.get``) raises its own ``KeyboardInterrupt`` in place
    of the policy's :class:`Interrupted`, and a SIGTERM would otherwise read as Ctrl-C (130
    instead of 143)."""
    if isinstance(exc, Interrupted):
        return exc.exit_code
    policy = getattr(signal.getsignal(signal.SIGINT), "__self__", None)
    if isinstance(policy, SignalPolicy) and policy.first is not None:
        return exit_code_for_signal(policy.first)
    return EXIT_INTERRUPTED


class SignalPolicy:
    """Context manager: SIGINT, SIGTERM and SIGHUP raise :class:`Interrupted` in the main thread,
    once; later signals are recorded in :attr:`received` and otherwise ignored until the context
    exits, so the handler that saves results is not cut short. The previous handlers come back on
    exit. Outside the main thread (where Python cannot install handlers) it does nothing.

    >>> with SignalPolicy() as policy:
    ...     policy.first is None
    True
    """

    def __init__(self, signals: tuple[int, ...] = HANDLED_SIGNALS) -> None:
        self.signals = signals
        self.received: list[int] = []
        self._previous: dict[int, Any] = {}

    @property
    def first(self) -> Optional[int]:
        """The first signal received, or ``None``."""
        return self.received[0] if self.received else None

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        self.received.append(int(signum))
        if len(self.received) == 1:
            raise Interrupted(signum)

    def __enter__(self) -> SignalPolicy:
        if threading.current_thread() is not threading.main_thread():
            return self
        for signum in self.signals:
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except (OSError, ValueError):  # not settable here (e.g. an embedded interpreter)
                continue
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        for signum, previous in self._previous.items():
            try:
                signal.signal(signum, previous)
            except (OSError, ValueError, TypeError):
                continue
        self._previous.clear()
