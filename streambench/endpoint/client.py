"""The streaming client: one request over HTTP, its server-sent events read within bounds.

:func:`send_request` streams one request and always returns a :class:`RequestRecord` (a failure is
a record with ``ok=False`` and its ``error``; only cancellation propagates). Times are
``time.perf_counter()`` seconds since the request was handed to ``httpx``. Everything the server
sends is bounded (see :class:`_Bounds`, :class:`_SSEParser`, :func:`_checked_usage`).
"""

from __future__ import annotations

import codecs
import json
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

from .records import RequestRecord
from .scrub import public_url, scrub_text
from .spec import MAX_CHARS_PER_TOKEN, MAX_ERROR_BODY, MAX_EVENT_CHARS, MAX_TOKENS, is_number
from .stream_parts import (
    carries_tokens,
    chunk_parts,
    first_output_s,
    has_choice,
    no_text_error,
    reasoning_count,
    silent_warning,
    usage_tokens,
)
from .tokens import count_chunk_tokens

if TYPE_CHECKING:
    import httpx


class _Live:
    """State of a request in flight, readable after a timeout cancelled it."""

    __slots__ = (
        "chars",
        "done",
        "events",
        "finish",
        "last_usage",
        "origin",
        "reasoning_chars",
        "silent",
        "silent_tokens",
        "status",
        "texts",
        "times",
        "usage",
        "usage_at",
    )

    def __init__(self, origin: float) -> None:
        self.origin = origin
        self.status: int | None = None
        self.times: list[float] = []
        self.texts: list[str] = []
        self.usage_at: list[Any] = []  # the raw completion_tokens seen with each text chunk
        self.usage: dict[str, Any] | None = None
        self.finish: str | None = None
        self.done = False
        self.events = 0
        self.chars = 0
        self.reasoning_chars: list[int] = []  # per chunk: how much of its text is reasoning
        self.last_usage = 0.0  # the last cumulative usage.completion_tokens of a chunk
        self.silent = 0  # chunks without text whose per-chunk usage says they held tokens
        self.silent_tokens = 0.0


class _Failed(Exception):
    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


@dataclass(frozen=True)
class _Bounds:
    """What one request may receive, sized from the ``max_tokens`` it asked for."""

    asked: int
    chunks: int
    chars: int
    events: int

    @classmethod
    def for_tokens(cls, asked: int) -> _Bounds:
        asked = max(1, min(int(asked), MAX_TOKENS))
        chunks = 2 * asked + 64
        return cls(
            asked=asked,
            chunks=chunks,
            chars=MAX_CHARS_PER_TOKEN * asked + 65536,
            events=2 * chunks + 1024,
        )


def _asked_tokens(body: dict[str, Any]) -> int:
    """The ``max_tokens`` a body asks for (``--extra-body`` may change it), within bounds."""
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if is_number(value) and value >= 1:
            return int(min(value, MAX_TOKENS))
    return MAX_TOKENS


_NEWLINE = re.compile(r"\r\n|\r|\n")


class _SSEParser:
    """Server-sent events from raw bytes, bounded: ``feed`` returns the ``data`` of every
    complete event (data lines joined with ``\\n``); comment lines, ``event``/``id``/``retry``
    fields and events without data are skipped. A line or event longer than ``max_chars``
    raises :class:`_Failed` instead of growing without end. An event still open when the stream
    ends is dropped (as the SSE specification says)."""

    def __init__(self, max_chars: int = MAX_EVENT_CHARS) -> None:
        self.max_chars = max_chars
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._tail: list[str] = []
        self._tail_len = 0
        self._cr = False
        self._data: list[str] = []
        self._size = 0

    def feed(self, raw: bytes) -> list[str]:
        text = self._decoder.decode(raw)
        if self._cr:
            text = "\r" + text
            self._cr = False
        if text.endswith("\r"):
            self._cr = True  # maybe the first half of \r\n
            text = text[:-1]
        if not text:
            return []
        pieces = _NEWLINE.split(text)
        out: list[str] = []
        for piece in pieces[:-1]:
            if self._tail:
                piece = "".join(self._tail) + piece
                self._tail, self._tail_len = [], 0
            data = self._line(piece)
            if data is not None:
                out.append(data)
        last = pieces[-1]
        if last:
            self._tail.append(last)
            self._tail_len += len(last)
            if self._tail_len + self._size > self.max_chars:
                raise _Failed(
                    f"protocol: a server-sent event longer than {self.max_chars} characters"
                )
        return out

    def _line(self, line: str) -> str | None:
        if not line:
            if not self._data:
                return None
            data = "\n".join(self._data)
            self._data, self._size = [], 0
            return data
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if name != "data":
            return None
        value = value[1:] if value.startswith(" ") else value
        self._size += len(value) + 1
        if self._size > self.max_chars:
            raise _Failed(f"protocol: a server-sent event longer than {self.max_chars} characters")
        self._data.append(value)
        return None


#: what an exception whose message is empty means (httpx/httpcore raise several such)
_MEANING = MappingProxyType(
    {
        "ReadError": "connection reset by the server",
        "WriteError": "connection broken while sending the request",
        "CloseError": "connection broken while closing it",
        "RemoteProtocolError": "the server closed the connection or broke the HTTP protocol",
        "LocalProtocolError": "the request could not be sent as valid HTTP",
        "ConnectError": "could not connect to the server",
        "ConnectTimeout": "no connection within the timeout",
        "ReadTimeout": "no data from the server within the timeout",
        "WriteTimeout": "could not send the request within the timeout",
        "PoolTimeout": "no free connection within the timeout",
        "ProxyError": "proxy error",
        "UnsupportedProtocol": "unsupported protocol",
        "DecodingError": "the reply could not be decoded",
        "TooManyRedirects": "too many redirects",
        "InvalidURL": "invalid URL",
    }
)


def describe_error(exc: BaseException, with_type: bool = True) -> str:
    """A one-line, never empty description of ``exc``: ``"Type: message"`` or, when the
    message is empty, what the exception means (and the message of its cause, if any)."""
    name = type(exc).__name__
    msg = " ".join(str(exc).split())
    if msg:
        return f"{name}: {msg}" if with_type else msg
    meaning = _MEANING.get(name, "no details given")
    detail, cause, seen = "", exc.__cause__ or exc.__context__, 0
    while cause is not None and seen < 8:  # the first message down the chain, or a new name
        text = " ".join(str(cause).split())
        if text:
            detail = text
            break
        if type(cause).__name__ != name:
            detail = type(cause).__name__
        cause, seen = cause.__cause__ or cause.__context__, seen + 1
    return f"{meaning} ({name}{': ' + detail if detail else ''})"


async def _read_some(resp: httpx.Response, limit: int = MAX_ERROR_BODY) -> bytes:
    """At most ``limit`` bytes of the body (raw: never decompressed), the rest left unread."""
    got = b""
    async for raw in resp.aiter_raw():
        got += raw
        if len(got) >= limit:
            break
    return got[:limit]


async def _stream_one(
    client: httpx.AsyncClient,
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
    live: _Live,
    bounds: _Bounds | None = None,
) -> None:
    import httpx

    bounds = bounds or _Bounds.for_tokens(_asked_tokens(body))
    t0 = live.origin
    try:
        async with client.stream("POST", url, json=body, headers=headers) as resp:
            live.status = resp.status_code
            if 300 <= resp.status_code < 400:
                location = resp.headers.get("location")
                if location:
                    target = _snippet(public_url(urljoin(url, location.strip())), 300)
                    raise _Failed(
                        f"http: HTTP {resp.status_code}: redirected to {target} (redirects are "
                        "not followed; use that URL)"
                    )
                raise _Failed(
                    f"http: HTTP {resp.status_code}: a redirect without a Location header "
                    "(redirects are not followed)"
                )
            if resp.status_code >= 300 or resp.status_code < 200:
                raw = await _read_some(resp)
                raise _Failed(f"http: HTTP {resp.status_code}: {_snippet(raw)}")
            ctype = resp.headers.get("content-type", "").partition(";")[0].strip()
            if "text/event-stream" not in ctype.lower():
                raise _Failed(
                    "protocol: not a server-sent event stream (Content-Type "
                    f"{_snippet(ctype, 60)!r}, expected text/event-stream)"
                )
            encoding = resp.headers.get("content-encoding", "").strip().lower()
            if encoding not in ("", "identity"):
                raise _Failed(
                    f"protocol: a {_snippet(encoding, 40)}-compressed stream although none was "
                    "asked for"
                )
            parser = _SSEParser()
            async for raw in resp.aiter_raw():
                for data in parser.feed(raw):
                    now = time.perf_counter()
                    if _event(data, now - t0, live, bounds):
                        break
                else:
                    continue
                break
    except _Failed:
        raise
    except httpx.TimeoutException as exc:
        raise _Failed(f"timeout: {describe_error(exc)}") from None
    except httpx.ConnectError as exc:
        raise _Failed(f"connect: {describe_error(exc, with_type=False)}") from None
    except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
        raise _Failed(f"stream_cut: {describe_error(exc)}") from None
    except httpx.HTTPError as exc:
        raise _Failed(f"connect: {describe_error(exc)}") from None
    if not live.done and live.finish is None:
        raise _Failed(
            f"stream_cut: stream ended before [DONE] or a finish_reason "
            f"({len(live.texts)} text chunks received)"
        )


def _event(data: str, at: float, live: _Live, bounds: _Bounds) -> bool:
    """Handle the data of one event; True at ``[DONE]``. Raises :class:`_Failed`."""
    data = data.strip()
    if not data:
        return False
    live.events += 1
    if live.events > bounds.events:
        raise _Failed(f"protocol: more than {bounds.events} events for max_tokens {bounds.asked}")
    if data == "[DONE]":
        live.done = True
        return True
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        raise _Failed(f"protocol: event data is not JSON: {data[:120]!r}") from None
    if not isinstance(obj, dict):
        raise _Failed(f"protocol: event data is not an object: {data[:120]!r}")
    if obj.get("error") and not obj.get("choices"):
        try:
            detail = json.dumps(obj["error"])
        except (ValueError, RecursionError):
            detail = repr(obj["error"])[:400]
        raise _Failed(f"server_error: {_snippet(detail)}")
    reasoning, content, finish = chunk_parts(obj)
    text = reasoning + content
    usage = obj.get("usage")
    if isinstance(usage, dict):
        live.usage = usage
    # a chunk after the finish_reason holds no tokens (some servers' final usage chunk has an
    # empty choice): its usage is the total, not a token arrival
    silent = (
        not text
        and live.finish is None
        and has_choice(obj)
        and carries_tokens(usage, live.last_usage)
    )
    if finish:
        live.finish = finish
    if silent:  # a token without visible text, timed by the server's per-chunk usage
        live.silent += 1
        live.silent_tokens += (usage_tokens(usage) or 0.0) - live.last_usage
    if text or silent:
        live.chars += len(text)
        if len(live.texts) >= bounds.chunks:
            raise _Failed(
                f"protocol: more than {bounds.chunks} text chunks for max_tokens {bounds.asked}"
            )
        if live.chars > bounds.chars:
            raise _Failed(
                f"protocol: more than {bounds.chars} characters of text for max_tokens "
                f"{bounds.asked}"
            )
        live.times.append(at)
        live.texts.append(text)
        live.reasoning_chars.append(len(reasoning))
        live.usage_at.append(usage.get("completion_tokens") if isinstance(usage, dict) else None)
    seen = usage_tokens(usage) if has_choice(obj) else None
    if seen is not None:
        live.last_usage = max(live.last_usage, seen)
    return False


def _snippet(raw: bytes | str, limit: int = 200) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    text = "".join(ch if ch.isprintable() else " " for ch in text[: limit * 4])
    text = " ".join(text.split())
    return text[:limit] + ("..." if len(text) > limit else "")


def _count(value: Any, limit: int) -> tuple[int | None, str | None]:
    """A count the server reported: (the count, None), (None, None) when absent, or (None, why it
    is not trusted): not a number, not finite, not whole, negative, above ``limit``."""
    if value is None:
        return None, None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None, f"{_snippet(repr(value), 40)} is not a number"
    if isinstance(value, float):
        if not math.isfinite(value):
            return None, f"{value} is not finite"
        if not value.is_integer():
            return None, f"{value:g} is not a whole number"
        if value > limit:
            return None, f"{value:g} is implausible (more than {limit})"
        value = int(value)
    if value < 0:
        return None, f"{value} is negative"
    if value > limit:
        return None, f"{value} is implausible (more than {limit})"
    return value, None


def _checked_usage(
    live: _Live, bounds: _Bounds, prompt_chars: int | None
) -> tuple[int | None, list[int | None], int | None, list[str]]:
    """The server's usage numbers that can be trusted: (completion total, cumulative counts per
    text chunk, prompt tokens, warnings about the ones that were not)."""
    warnings: list[str] = []
    usage = live.usage or {}
    n = len(live.texts)
    plausible = 2 * max(bounds.asked, n) + 16
    total, why = _count(usage.get("completion_tokens"), plausible)
    if why is None and total == 0 and n:
        why = f"0 is implausible after {n} text chunks"
    if why is not None:
        total = None
        warnings.append(
            f"usage.completion_tokens {why}: ignored, tokens counted from the text chunks"
        )
    per_chunk: list[int | None] = []
    chunk_why = None
    for raw in live.usage_at:
        value, why_chunk = _count(raw, plausible)
        if why_chunk is None and value is not None and per_chunk and per_chunk[-1] is not None:
            if value < per_chunk[-1]:
                why_chunk = f"decreases ({per_chunk[-1]} then {value})"
        if why_chunk is not None:
            chunk_why = chunk_why or why_chunk
        per_chunk.append(value)
    if chunk_why is not None:
        warnings.append(f"usage.completion_tokens in the chunks {chunk_why}: ignored")
        per_chunk = [None] * n
    prompt_limit = 4 * prompt_chars + 65536 if prompt_chars is not None else MAX_TOKENS * 16
    ptok, why = _count(usage.get("prompt_tokens"), prompt_limit)
    if why is not None:
        warnings.append(f"usage.prompt_tokens {why}: ignored")
    return total, per_chunk, ptok, warnings


async def send_request(
    client: httpx.AsyncClient,
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
    timeout_s: float,
    index: int,
    phase_start: float,
    warmup: bool,
    prompt_tokens_local: int | None,
    secrets: Sequence[str] | str | None,
) -> RequestRecord:
    import asyncio

    if isinstance(secrets, str):
        secrets = (secrets,)
    secrets = tuple(secrets or ())
    bounds = _Bounds.for_tokens(_asked_tokens(body))
    prompt = body.get("prompt")
    if prompt is None and isinstance(body.get("messages"), list):
        prompt = "".join(str(m.get("content", "")) for m in body["messages"] if isinstance(m, dict))
    t0 = time.perf_counter()
    live = _Live(t0)
    error: str | None = None
    try:
        await asyncio.wait_for(_stream_one(client, url, body, headers, live, bounds), timeout_s)
    except _Failed as exc:
        error = exc.error
    except asyncio.TimeoutError:
        error = (
            f"timeout: no complete stream within {timeout_s:g} s "
            f"({len(live.texts)} text chunks received)"
        )
    except Exception as exc:  # noqa: BLE001 - any other client error fails this request only
        error = f"client: {describe_error(exc)}"
    end = time.perf_counter()
    if error:
        error = scrub_text(error, secrets)
    prompt_chars = len(prompt) if isinstance(prompt, str) else None
    sent_s = t0 - phase_start
    return _record(
        live, bounds, error, end, index, sent_s, warmup, prompt_chars, prompt_tokens_local, secrets
    )


def _record(
    live: _Live,
    bounds: _Bounds,
    error: str | None,
    end: float,
    index: int,
    sent_s: float,
    warmup: bool,
    prompt_chars: int | None,
    prompt_tokens_local: int | None,
    secrets: tuple[str, ...],
) -> RequestRecord:
    """The record of one finished (or failed) stream, its server numbers checked."""
    total, per_chunk, ptok, warnings = _checked_usage(live, bounds, prompt_chars)
    # without the tokenizer here (cheap); EndpointBenchmark.result() recounts with it
    counts, method = count_chunk_tokens(live.texts, per_chunk, total, None)
    finish = scrub_text(_snippet(live.finish, 64), secrets) if live.finish else None
    reported, why = _count(_reasoning_usage(live.usage), 2 * bounds.asked + 16)
    if why is not None:
        warnings.append(f"usage.completion_tokens_details.reasoning_tokens {why}: ignored")
    silent = silent_warning(round(live.silent_tokens), total)
    if silent is not None and error is None:
        warnings.append(silent)
    common = dict(
        index=index,
        sent_s=sent_s,
        warmup=warmup,
        status=live.status,
        chunk_times_s=tuple(live.times),
        chunk_tokens=tuple(counts),
        output_tokens=sum(counts),
        prompt_tokens=ptok if ptok is not None else prompt_tokens_local,
        token_count=method,
        finish_reason=finish,
        events=live.events,
        warnings=tuple(scrub_text(w, secrets) for w in warnings),
        texts=tuple(live.texts),
        chunk_usage=tuple(per_chunk),
        usage_total=total,
        reasoning_tokens=reasoning_count(counts, live.texts, live.reasoning_chars, reported),
        reasoning_chars=tuple(live.reasoning_chars),
        usage_reasoning=reported,
    )
    if error is None and not live.times:
        error = no_text_error(total, live.silent, None)
    if error is not None:
        return RequestRecord(ok=False, error=error, **common)  # type: ignore[arg-type]
    ttfo = first_output_s(live.times, live.texts, live.reasoning_chars)
    return RequestRecord(
        ok=True, ttft_s=live.times[0], e2e_s=end - live.origin, ttfo_s=ttfo, **common
    )  # type: ignore[arg-type]


def _reasoning_usage(usage: dict[str, Any] | None) -> Any:
    """``usage.completion_tokens_details.reasoning_tokens`` as sent (checked by the caller)."""
    details = (usage or {}).get("completion_tokens_details")
    return details.get("reasoning_tokens") if isinstance(details, dict) else None
