"""The replay options of ``streambench endpoint``: ``--multi-turn`` (sessions of a conversation
file, :mod:`.sessions`) and ``--trace FILE`` with its format, speedup, limit and window
(:mod:`.traces`, :mod:`.tracesend`). :func:`check` refuses what does not combine, before any
file is read; :func:`prepare` builds the specs' requests (every input checked: exit 2 before
anything is sent)."""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

from ..numtext import real_arg, whole_arg
from .spec import RATE_CONCURRENCY, EndpointError, EndpointSpec, parse_duration
from .traces import FORMATS, MAX_TRACE_ROWS

#: ``(flags, add_argument keywords)`` in ``--help`` order; see ``docs/endpoint.md``
REPLAY_OPTIONS: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = (
    (("--multi-turn",), dict(action="store_true", help="play each conversation of --prompts "
        "(ShareGPT .json, or .jsonl messages) as a session: turn k sent with the history and "
        "the server's own replies; --concurrency sessions at once (needs --chat)")),
    (("--trace",), dict(default=None, metavar="FILE", help="replay a trace: each request at its "
        "time with its input/output lengths (Mooncake .jsonl, BurstGPT or Azure .csv)")),
    (("--trace-format",), dict(default=None, choices=FORMATS, help="the trace's layout "
        "(default: detected from its columns)")),
    (("--trace-speedup",), dict(type=real_arg, default=None, metavar="X", help="replay X times "
        "faster (default 1)")),
    (("--trace-limit",), dict(type=whole_arg, default=None, metavar="N", help="replay only the "
        "first N requests (after --trace-window)")),
    (("--trace-window",), dict(default=None, metavar="START:END", help="replay the requests "
        "between these times after the trace's first one, e.g. 60s:120s (END optional)")),
)  # fmt: skip


def add_replay_arguments(parser: Any) -> None:
    for flags, keywords in REPLAY_OPTIONS:
        parser.add_argument(*flags, **keywords)


def _given(args: Any, name: str) -> bool:
    return getattr(args, name, None) not in (None, False)


def check(args: Any, workload: Any) -> None:
    """Refuse the options that do not combine with ``--multi-turn`` or ``--trace``."""
    trace_opts = ("trace_format", "trace_speedup", "trace_limit", "trace_window")
    if not _given(args, "trace"):
        for name in trace_opts:
            if _given(args, name):
                raise EndpointError(f"--{name.replace('_', '-')} needs --trace FILE")
    if _given(args, "multi_turn"):
        if workload is None or not workload.uses_file:
            raise EndpointError("--multi-turn plays the conversations of --prompts FILE: add it")
        if _given(args, "trace"):
            raise EndpointError("--multi-turn and --trace do not combine: give one")
    if not _given(args, "trace"):
        return
    if workload is not None:
        raise EndpointError(
            "--trace takes each request's lengths from the trace: drop the workload options "
            "(--prompts, --length-spread, --shared-prefix, --output-len ...)"
        )
    for flag, name in (
        ("--in-out", "in_out"),
        ("--prompt", "prompt"),
        ("--request-rate", "request_rate"),
        ("--requests", "requests"),
        ("--duration", "duration"),
        ("--find-max-rate", "find_max_rate"),
    ):
        if _given(args, name):
            raise EndpointError(
                f"--trace sets the requests, their lengths and send times: drop {flag} "
                "(--trace-limit and --trace-window select requests)"
            )
    limit = args.trace_limit
    if limit is not None and not 1 <= limit <= MAX_TRACE_ROWS:
        raise EndpointError(
            f"--trace-limit {limit}: expected a whole number from 1 to {MAX_TRACE_ROWS}"
        )


def concurrencies(args: Any, values: list[int | None]) -> list[int | None]:
    """The concurrency axis: with ``--trace`` and none given, :data:`RATE_CONCURRENCY` (requests
    go out at their trace times; the bound is only a safety net)."""
    if _given(args, "trace") and values == [None]:
        return [RATE_CONCURRENCY]
    return values


def parse_window(text: str | None) -> tuple[float, float | None] | None:
    """``--trace-window START:END`` -> ``(start_s, end_s)`` (``END`` may be left out)."""
    if text is None:
        return None
    start_text, sep, end_text = str(text).partition(":")
    if not sep:
        raise EndpointError(f"--trace-window {text!r}: write START:END, e.g. 60s:120s or 30s:")
    try:
        start = parse_duration(start_text or "0", unit="s")
        end = parse_duration(end_text, unit="s") if end_text.strip() else None
    except ValueError as exc:
        raise EndpointError(f"--trace-window {text!r}: {exc}") from None
    if end is not None and end <= start:
        raise EndpointError(f"--trace-window {text!r}: END must come after START")
    return start, end


def prepare(args: Any, specs: list[EndpointSpec], requests_given: int | None) -> list[EndpointSpec]:
    """The specs with their replay built: sessions (``--multi-turn``) or the trace's requests
    (``--trace``); the specs unchanged otherwise."""
    from .tokens import load_tokenizer

    multi, trace_path = _given(args, "multi_turn"), getattr(args, "trace", None)
    if not multi and trace_path is None:
        return specs
    tokenizer = load_tokenizer(specs[0].tokenizer, specs[0].trust_remote_code)
    if multi:
        from .sessions import with_sessions

        return [with_sessions(spec, requests_given, tokenizer) for spec in specs]
    from .traces import load_trace
    from .tracesend import trace_requests

    speedup = 1.0 if args.trace_speedup is None else args.trace_speedup
    trace = load_trace(
        str(trace_path),
        args.trace_format,
        speedup,
        args.trace_limit,
        parse_window(args.trace_window),
    )
    for line in trace.notes():
        print(f"streambench: {line}", file=sys.stderr)
    reqs = trace_requests(trace, specs[0].seed, tokenizer)
    return [
        dataclasses.replace(
            spec,
            trace=trace,
            workload_requests=reqs,
            requests=len(reqs),
            prompt_tokens=max(r.input_tokens for r in trace.rows),
            output_tokens=max(r.output_tokens for r in trace.rows),
        ).validate()
        for spec in specs
    ]
