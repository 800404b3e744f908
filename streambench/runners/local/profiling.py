"""``streambench run --profile DIR``: one extra, profiled ``generate()`` per configuration, after
its trials, written as a ``torch.profiler`` trace (Chrome/Perfetto JSON: open it in
``ui.perfetto.dev`` or ``chrome://tracing``).

The streamer marks the token boundaries in the trace (:class:`TokenRanges`, an ``inner``
streamer of :class:`~streambench.streamer.TimingStreamer`): a range ``streambench.prefill`` from
the ``generate()`` call to the first token, then ``streambench.decode[i]`` from token ``i`` to
token ``i + 1`` — the very intervals of ``first_token_s`` and ``token_latencies_s[i]`` — so the
trace lines up with streambench's own numbers. The profiled run is slower (the profiler records
every operator) and is kept out of the statistics: its own timing is recorded next to the trace
path in the configuration's ``profile`` object, never in ``trials`` or ``aggregates``.

torch is imported inside the functions.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable

__all__ = [
    "PREFILL",
    "TokenRanges",
    "TraceWriteError",
    "decode_range",
    "export_trace",
    "profile_generate",
    "trace_name",
]

#: the range from the ``generate()`` call to the first token
PREFILL = "streambench.prefill"


def decode_range(i: int) -> str:
    """The range from token ``i`` to token ``i + 1`` (``i`` from 1)."""
    return f"streambench.decode[{i}]"


def trace_name(configuration_id: str) -> str:
    """A file name for a configuration's trace: its id with anything but letters, digits, ``.``,
    ``-`` and ``_`` as ``_``.

    >>> trace_name("org/model|32-32|bs1")
    'org_model_32-32_bs1.trace.json'
    """
    return re.sub(r"[^A-Za-z0-9._-]+", "_", configuration_id).strip("._") + ".trace.json"


class TokenRanges:
    """An ``inner`` streamer that opens and closes profiler ranges at token boundaries.

    :meth:`start` (right before ``generate()``) opens the prefill range; the prompt ``put()`` is
    passed over; each token ``put()`` closes the open range and, while fewer than
    ``expected_tokens`` tokens came, opens the next decode range; :meth:`end` closes whatever is
    open. ``ranges`` counts the ranges closed."""

    def __init__(self, expected_tokens: int) -> None:
        self.expected = int(expected_tokens)
        self.tokens = 0
        self.ranges = 0
        self._prompt_seen = False
        self._open: Any = None

    def _enter(self, name: str) -> None:
        import torch

        self._open = torch.profiler.record_function(name)
        self._open.__enter__()

    def _close(self) -> None:
        if self._open is not None:
            self._open.__exit__(None, None, None)
            self._open = None
            self.ranges += 1

    def start(self) -> None:
        self._close()
        self.tokens = 0
        self._prompt_seen = False
        self._enter(PREFILL)

    def put(self, value: Any) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        self._close()
        self.tokens += 1
        if self.tokens < self.expected:
            self._enter(decode_range(self.tokens))

    def end(self) -> None:
        self._close()


def profile_generate(
    make_streamer: Callable[[Any], Any],
    generate: Callable[[Any], Any],
    expected_tokens: int,
    device: Any,
    path: str | Path,
) -> dict[str, Any]:
    """Run ``generate(streamer)`` once under ``torch.profiler`` (CPU, and CUDA or XPU activity
    on those devices) with :class:`TokenRanges` inside the streamer that ``make_streamer(inner)``
    builds; write the Chrome trace to ``path``. Returns the ``profile`` object of the
    configuration: ``trace`` (the path), ``ranges`` (prefill + decode ranges marked),
    ``first_token_s`` and ``token_latencies_s`` of the profiled run (s; slowed by the
    profiler)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    kind = str(device).split(":")[0]
    if kind == "cuda" and torch.cuda.is_available():
        activities.append(ProfilerActivity.CUDA)
    elif kind == "xpu" and hasattr(ProfilerActivity, "XPU"):
        activities.append(ProfilerActivity.XPU)
    marks = TokenRanges(expected_tokens)
    streamer = make_streamer(marks)
    with profile(activities=activities) as prof:
        streamer.mark_start()
        marks.start()
        try:
            generate(streamer)
        finally:
            marks.end()
    export_trace(prof, Path(path))
    run = streamer.runs[-1] if streamer.runs else None
    return {
        "trace": str(path),
        "ranges": marks.ranges,
        "first_token_s": getattr(run, "first_token_s", None),
        "token_latencies_s": list(getattr(run, "token_latencies_s", None) or []),
        "note": "one extra run under torch.profiler, slower, not in trials or aggregates",
    }


class TraceWriteError(OSError):
    """The profiler's trace was not written; the message says why and where."""

    def __str__(self) -> str:
        return str(self.strerror)


#: below this many free bytes a trace that was not written is put down to a full disk
_FULL_DISK_BYTES = 1 << 20


def export_trace(prof: Any, path: Path) -> None:
    """Write ``prof``'s Chrome trace to ``path`` under a temporary name, check it, then rename
    it: torch's exporter (kineto) reports a failed write (a full disk) only in its log, leaving
    no file but a truncated ``NAME.tmp``. On failure nothing is left (neither the temporary
    files nor a path to record) and :class:`TraceWriteError` says why and where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial.json")
    leftovers = (tmp, Path(f"{tmp}.tmp"))
    try:
        try:
            prof.export_chrome_trace(str(tmp))
        except OSError as exc:
            raise _not_written(path, exc.errno) from None
        if not _complete(tmp):
            raise _not_written(path, None)
        os.replace(tmp, path)
    finally:
        for leftover in leftovers:
            with contextlib.suppress(OSError):
                os.unlink(leftover)


def _complete(path: Path) -> bool:
    """The file exists and ends like a JSON document (a truncated trace does not)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 256))
            tail = f.read().rstrip()
    except OSError:
        return False
    return tail.endswith((b"}", b"]"))


def _not_written(path: Path, code: int | None) -> TraceWriteError:
    where = path.parent
    try:
        full = shutil.disk_usage(where).free < _FULL_DISK_BYTES
    except OSError:
        full = False
    if code == errno.ENOSPC or full:
        why = f"the disk is full (no space left on the device of {where})"
        code = errno.ENOSPC
    else:
        why = f"torch.profiler did not write it ({os.strerror(code) if code else 'no error given'})"
    return TraceWriteError(code or errno.EIO, f"the trace {path} was not written: {why}")


def profile_configuration(
    loaded: Any,
    settings: Any,
    configuration_id: str,
    batch: Any,
    variant: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One extra ``generate()`` of ``batch`` (a
    :class:`~streambench.runners.local.generate_call.PromptBatch`)
    under ``torch.profiler`` after the trials (never in them), with the very keywords of the
    trials (:func:`~streambench.runners.local.generate_call.generate_keywords`); its trace in
    ``settings.profile`` (:mod:`streambench.runners.local.profiling`)."""
    import torch

    from ...streamer import TimingStreamer
    from .generate_call import generate_keywords

    kwargs = generate_keywords(loaded, settings, dict(variant or {}), batch)
    path = os.path.join(str(settings.profile), trace_name(configuration_id))
    with torch.inference_mode():
        profile = profile_generate(
            lambda inner: TimingStreamer(loaded.device, inner=inner),
            lambda streamer: loaded.model.generate(batch.input_ids, streamer=streamer, **kwargs),
            batch.new_tokens,
            loaded.device,
            path,
        )
    return profile
