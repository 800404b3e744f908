"""Signals during an endpoint run: the :class:`~streambench.errors.SignalPolicy` in force, and its
handlers moved into the event loop for the run (so a signal cancels the run in an orderly way)."""

from __future__ import annotations

import contextlib
from typing import Any, Callable

from ..errors import HANDLED_SIGNALS, SignalPolicy


def policy_in_force() -> SignalPolicy | None:
    """The :class:`SignalPolicy` whose handlers are installed now (main thread), if any."""
    import signal

    for signum in HANDLED_SIGNALS:
        try:
            owner = getattr(signal.getsignal(signum), "__self__", None)
        except (ValueError, OSError):
            continue
        if isinstance(owner, SignalPolicy):
            return owner
    return None


def signal_policy() -> contextlib.AbstractContextManager[Any]:
    """The policy already in force (``streambench.cli.run.main`` installs one), else a new one."""
    policy = policy_in_force()
    return contextlib.nullcontext(policy) if policy is not None else SignalPolicy()


def take_signals(loop: Any, callback: Callable[..., None], *args: Any) -> list[tuple[int, Any]]:
    """Run ``callback(signum, policy, *args)`` inside ``loop`` for each signal the policy in force
    handles (main thread only); returns ``(signum, previous handler)`` pairs for
    :func:`give_back_signals`, empty without a policy."""
    import signal
    import threading

    policy = policy_in_force()
    if policy is None or threading.current_thread() is not threading.main_thread():
        return []
    taken: list[tuple[int, Any]] = []
    for signum in policy.signals:
        try:
            previous = signal.getsignal(signum)
            if getattr(previous, "__self__", None) is not policy:
                continue
            loop.add_signal_handler(signum, callback, signum, policy, *args)
        except (ValueError, OSError, RuntimeError, NotImplementedError):
            continue
        taken.append((signum, previous))
    return taken


def give_back_signals(loop: Any, taken: list[tuple[int, Any]]) -> None:
    """Undo :func:`take_signals`: the previous handlers again, a signal that came in between
    delivered to them once they are back."""
    import signal

    if not taken:
        return
    sigs = {signum for signum, _ in taken}
    mask = (
        signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
        if hasattr(signal, "pthread_sigmask")
        else None
    )
    try:
        for signum, previous in taken:
            with contextlib.suppress(ValueError, OSError, RuntimeError):
                loop.remove_signal_handler(signum)
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(signum, previous)
    finally:
        if mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a pending signal lands now
