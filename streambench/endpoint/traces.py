"""Trace files for ``--trace FILE``: when each request arrived and its input and output lengths,
in one of three public layouts (``docs/workloads.md``), read locally and checked.

- ``mooncake``: JSON Lines, ``{"timestamp": ms, "input_length": n, "output_length": m,
  "hash_ids": [...]}``; each hash id names a block of :data:`BLOCK_TOKENS` prompt tokens, and
  requests with the same leading ids share that prefix.
- ``burstgpt``: CSV with ``Timestamp`` (seconds), ``Model``, ``Request tokens``, ``Response
  tokens``, ``Total tokens``, ``Log Type``; rows with 0 request or response tokens (failed
  requests in the published data) are skipped and counted.
- ``azure``: CSV (Azure LLM inference trace) with ``TIMESTAMP`` (a date and time, e.g.
  ``2023-11-16 18:15:46.6805900``, or seconds), ``ContextTokens``, ``GeneratedTokens``.

The format is detected from the columns when ``--trace-format`` is not given (refused when
none or more than one fits). Everything from the file is typed and bounded: counts, lengths
(1 to :data:`MAX_TOKENS`), non-negative finite timestamps (rows sorted by time when they are
not, and said so), the replay's span and total prompt tokens. Each refusal is one
:class:`~streambench.errors.UsageError` line naming the file and the line (exit 2), before any
request is sent.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ..errors import UsageError
from ..reading import read_bounded
from ..workloads.files import lines_of

__all__ = ["BLOCK_TOKENS", "FORMATS", "Trace", "TraceRow", "load_trace", "read_trace"]

FORMATS = ("mooncake", "burstgpt", "azure")
#: tokens per ``hash_ids`` block in Mooncake's traces
BLOCK_TOKENS = 512
#: the most bytes and rows read from a trace file
MAX_TRACE_BYTES = 1 << 30
MAX_TRACE_ROWS = 2_000_000
#: each request's input and output tokens
MAX_TOKENS = 1_048_576
#: the longest replay (after the window and --trace-speedup), seconds
MAX_REPLAY_S = 86_400.0
#: the most prompt tokens synthesised for one replay (all requests together; the prompts are
#: built before anything is sent): about 100 MB of text
MAX_TRACE_TOKENS = 1 << 24
#: the largest timestamp taken (seconds; year 2286 as a Unix time)
MAX_TIMESTAMP_S = 1e10
MIN_SPEEDUP, MAX_SPEEDUP = 0.001, 1000.0
#: the columns each format needs (lower case; CSV headers compare without case and spaces)
COLUMNS = {
    "mooncake": ("timestamp", "input_length", "output_length"),
    "burstgpt": ("timestamp", "request tokens", "response tokens"),
    "azure": ("timestamp", "contexttokens", "generatedtokens"),
}
_AZURE_TIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z?$")


@dataclass(frozen=True)
class TraceRow:
    """One request of a trace: ``at_s`` (seconds on the trace's own clock), the input and output
    tokens, the Mooncake ``hash_ids`` (empty for the other formats) and ``where`` (``line 7``)."""

    at_s: float
    input_tokens: int
    output_tokens: int
    hash_ids: tuple[int, ...] = ()
    where: str = ""


@dataclass(frozen=True)
class Trace:
    """The requests of a replay: ``rows`` in time order (after ``window_s`` and ``limit``),
    ``offsets_s`` when each is sent (seconds from the start of the measured phase: the trace's
    times from the window's start, or from its first request, divided by ``speedup``)."""

    path: str
    format: str
    sha256: str
    rows: tuple[TraceRow, ...]
    offsets_s: tuple[float, ...]
    speedup: float = 1.0
    limit: int | None = None
    window_s: tuple[float, float | None] | None = None
    skipped: int = 0
    resorted: bool = False

    @property
    def span_s(self) -> float:
        """When the last request is sent, seconds after the first (after the speedup)."""
        return self.offsets_s[-1] if self.offsets_s else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "sha256": self.sha256,
            "requests": len(self.rows),
            "span_s": self.span_s,
            "speedup": self.speedup,
            "limit": self.limit,
            "window_s": list(self.window_s) if self.window_s else None,
            "skipped": self.skipped,
            "resorted": self.resorted,
        }

    def identity(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "trace": f"{os.path.basename(self.path)}#{self.sha256[:12]}",
            "trace_speedup": self.speedup,
        }
        if self.limit is not None:
            out["trace_limit"] = self.limit
        if self.window_s is not None:
            out["trace_window_s"] = list(self.window_s)
        return out

    def notes(self) -> list[str]:
        """One-line notes about the file (skipped rows, rows sorted)."""
        out = []
        if self.skipped:
            out.append(
                f"--trace {self.path}: {self.skipped} row(s) with 0 input or output tokens "
                "skipped (failed requests in the trace)"
            )
        if self.resorted:
            out.append(f"--trace {self.path}: rows were not in time order; sorted by timestamp")
        return out


def _fail(path: str, where: str, what: str) -> UsageError:
    at = f" ({where})" if where else ""
    return UsageError(f"--trace {path}{at}: {what}")


def _whole(path: str, where: str, name: str, value: Any, low: int, high: int) -> int:
    number: Any = value
    if isinstance(value, str):
        text = value.strip()
        number = int(text) if re.fullmatch(r"[0-9]{1,12}", text) else None
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    if isinstance(number, bool) or not isinstance(number, int) or not low <= number <= high:
        shown = str(value)[:40]
        raise _fail(path, where, f"{name} {shown!r} is not a whole number from {low} to {high}")
    return number


def _seconds(path: str, where: str, name: str, value: Any, scale: float) -> float:
    number: Any = value
    if isinstance(value, str):
        text = value.strip()
        ok = re.fullmatch(r"[0-9]{1,15}(\.[0-9]{1,12})?", text)
        number = float(text) if ok else None
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        raise _fail(path, where, f"{name} {str(value)[:40]!r} is not a number")
    seconds = float(number) * scale
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_TIMESTAMP_S:
        raise _fail(path, where, f"{name} {str(value)[:40]!r}: expected a time from 0 on")
    return seconds


def _azure_time(path: str, where: str, value: Any) -> float:
    text = value.strip() if isinstance(value, str) else ""
    m = _AZURE_TIME.match(text)
    if not m:
        return _seconds(path, where, "TIMESTAMP", value, 1.0)
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    try:
        t = datetime(y, mo, d, h, mi, s, tzinfo=timezone.utc).timestamp()
    except ValueError:
        raise _fail(path, where, f"TIMESTAMP {text[:40]!r} is not a valid date and time") from None
    if t < 0:
        raise _fail(path, where, f"TIMESTAMP {text[:40]!r} is before 1970")
    frac = m.group(7) or "0"
    return t + int(frac) / 10 ** len(frac)


def _hash_ids(path: str, where: str, value: Any, n_in: int) -> tuple[int, ...]:
    if value is None:
        return ()
    most = -(-n_in // BLOCK_TOKENS)
    if not isinstance(value, list) or len(value) > most:
        raise _fail(
            path,
            where,
            f"hash_ids must be a list of at most ceil(input_length / {BLOCK_TOKENS}) = {most} ids",
        )
    for h in value:
        if isinstance(h, bool) or not isinstance(h, int) or not 0 <= h < 1 << 63:
            raise _fail(path, where, f"hash_ids holds {str(h)[:40]!r}, not a whole number >= 0")
    return tuple(value)


def _mooncake(path: str, text: str) -> tuple[list[TraceRow], int]:
    rows = []
    for n, line in enumerate(lines_of(text), 1):
        if not line.strip():
            continue
        where = f"line {n}"
        if len(rows) >= MAX_TRACE_ROWS:
            raise _fail(path, where, f"more than {MAX_TRACE_ROWS} requests; cut the file")
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):
            raise _fail(path, where, "not valid JSON") from None
        if not isinstance(obj, dict):
            raise _fail(path, where, "not a JSON object")
        missing = [k for k in COLUMNS["mooncake"] if k not in obj]
        if missing:
            raise _fail(path, where, f"no {', '.join(missing)}")
        n_in = _whole(path, where, "input_length", obj["input_length"], 1, MAX_TOKENS)
        n_out = _whole(path, where, "output_length", obj["output_length"], 1, MAX_TOKENS)
        at = _seconds(path, where, "timestamp", obj["timestamp"], 1e-3)
        ids = _hash_ids(path, where, obj.get("hash_ids"), n_in)
        rows.append(TraceRow(at, n_in, n_out, ids, where))
    return rows, 0


def _header(path: str, text: str) -> dict[str, int]:
    """Lower-case column name -> its position, from a CSV text's first line."""
    try:
        first = next(csv.reader(io.StringIO(text[: 1 << 20], newline="")), [])
    except csv.Error as exc:
        raise _fail(path, "line 1", f"not valid CSV ({exc})") from None
    return {c.strip().lower(): i for i, c in reversed(list(enumerate(first)))}


def _csv_rows(path: str, text: str, fmt: str) -> tuple[list[TraceRow], int]:
    """The rows of a CSV trace, read one at a time (a row is a :class:`TraceRow` at once)."""
    columns = _header(path, text)
    at_i, in_i, out_i = (columns[c] for c in COLUMNS[fmt])
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[TraceRow] = []
    skipped = 0
    try:
        header = next(reader)
        width = len(header)
        ts, n_in_col, n_out_col = (header[i].strip()[:40] for i in (at_i, in_i, out_i))
        for cells in reader:
            where = f"line {reader.line_num}"
            if not cells:
                continue
            if len(rows) + skipped >= MAX_TRACE_ROWS:
                raise _fail(path, where, f"more than {MAX_TRACE_ROWS} requests; cut the file")
            if len(cells) != width:
                raise _fail(path, where, "not as many cells as the header has columns")
            n_in = _whole(path, where, n_in_col, cells[in_i], 0, MAX_TOKENS)
            n_out = _whole(path, where, n_out_col, cells[out_i], 0, MAX_TOKENS)
            if fmt == "azure":
                at = _azure_time(path, where, cells[at_i])
            else:
                at = _seconds(path, where, ts, cells[at_i], 1.0)
            if n_in == 0 or n_out == 0:
                skipped += 1
                continue
            rows.append(TraceRow(at, n_in, n_out, (), where))
    except csv.Error as exc:
        raise _fail(path, f"line {reader.line_num}", f"not valid CSV ({exc})") from None
    return rows, skipped


def detect_format(path: str, text: str) -> str:
    """The format whose columns the file has: the first object's keys (JSON Lines) or the CSV
    header; :class:`UsageError` when none or more than one fits."""
    first = next((line for line in lines_of(text[: 1 << 20]) if line.strip()), "")
    if first.lstrip().startswith("{"):
        try:
            obj = json.loads(first)
        except (ValueError, RecursionError):
            raise _fail(path, "line 1", "not valid JSON") from None
        columns = {k.lower() for k in obj} if isinstance(obj, dict) else set()
    else:
        columns = {c.strip().lower() for c in next(csv.reader([first]), [])}
    fits = [f for f in FORMATS if set(COLUMNS[f]) <= columns]
    if first.lstrip().startswith("{"):
        fits = [f for f in fits if f == "mooncake"]
    else:
        fits = [f for f in fits if f != "mooncake"]
    if len(fits) == 1:
        return fits[0]
    shown = ", ".join(sorted(columns))[:200] or "none"
    if fits:
        raise _fail(path, "line 1", f"the columns fit {' and '.join(fits)}: give --trace-format")
    raise _fail(
        path,
        "line 1",
        f"not a known trace (columns: {shown}); expected Mooncake JSON Lines "
        "(timestamp, input_length, output_length), BurstGPT CSV (Timestamp, Request tokens, "
        "Response tokens) or Azure CSV (TIMESTAMP, ContextTokens, GeneratedTokens)",
    )


def read_trace(path: str, fmt: str | None = None) -> tuple[str, str, list[TraceRow], int]:
    """``(format, sha256, rows in file order, rows skipped)`` of a trace file."""
    raw = read_bounded(path, "prompts", "--trace", MAX_TRACE_BYTES)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise _fail(path, f"line {line}", "not UTF-8 text") from None
    if not text.strip():
        raise _fail(path, "", "empty file")
    found = detect_format(path, text) if fmt is None else fmt
    if fmt is not None and fmt not in FORMATS:
        raise UsageError(f"--trace-format {fmt!r}: use {', '.join(FORMATS)}")
    if found == "mooncake":
        rows, skipped = _mooncake(path, text)
    else:
        names = _header(path, text)
        missing = [c for c in COLUMNS[found] if c not in names]
        if missing:
            raise _fail(
                path, "line 1", f"no {', '.join(missing)} column for --trace-format {found}"
            )
        rows, skipped = _csv_rows(path, text, found)
    if not rows:
        raise _fail(path, "", "no requests in it")
    return found, hashlib.sha256(raw).hexdigest(), rows, skipped


def load_trace(
    path: str,
    fmt: str | None = None,
    speedup: float = 1.0,
    limit: int | None = None,
    window_s: tuple[float, float | None] | None = None,
) -> Trace:
    """The replay of ``path``: rows sorted by time, those inside ``window_s`` (``(start, end)``
    seconds after the trace's first request; ``end`` ``None``: to the end), the first ``limit``
    of them, and their send offsets at ``speedup``. Refused (one line, exit 2) when nothing is
    left, the replay lasts over :data:`MAX_REPLAY_S` or asks over :data:`MAX_TOKENS` prompt
    tokens in all."""
    if not isinstance(speedup, (int, float)) or not MIN_SPEEDUP <= speedup <= MAX_SPEEDUP:
        raise UsageError(
            f"--trace-speedup {speedup}: expected a number from {MIN_SPEEDUP} to {MAX_SPEEDUP:g}"
        )
    found, sha, rows, skipped = read_trace(path, fmt)
    ordered = all(a.at_s <= b.at_s for a, b in zip(rows, rows[1:]))
    rows = rows if ordered else sorted(rows, key=lambda r: r.at_s)
    t0 = rows[0].at_s
    origin = t0
    if window_s is not None:
        start, end = window_s
        origin = t0 + start
        rows = [r for r in rows if r.at_s >= origin and (end is None or r.at_s < t0 + end)]
        if not rows:
            raise _fail(path, "", f"no requests inside --trace-window {_window_text(window_s)}")
        # the replay starts at the window's start: its first request keeps its delay
    if limit is not None:
        rows = rows[:limit]
    offsets = tuple((r.at_s - origin) / speedup for r in rows)
    if offsets[-1] > MAX_REPLAY_S:
        raise _fail(
            path,
            "",
            f"the replay would last {offsets[-1]:.0f} s, over {MAX_REPLAY_S:g} s: use "
            "--trace-limit, --trace-window or --trace-speedup",
        )
    tokens = sum(r.input_tokens for r in rows)
    if tokens > MAX_TRACE_TOKENS:
        raise _fail(
            path,
            "",
            f"{tokens} prompt tokens in all, over the {MAX_TRACE_TOKENS} synthesised for one "
            "replay: use --trace-limit or --trace-window",
        )
    return Trace(
        os.path.abspath(path),
        found,
        sha,
        tuple(rows),
        offsets,
        float(speedup),
        limit,
        window_s,
        skipped,
        not ordered,
    )


def _window_text(window: tuple[float, float | None]) -> str:
    start, end = window
    return f"{start:g}s:" + ("" if end is None else f"{end:g}s")
