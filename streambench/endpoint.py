"""Benchmark an OpenAI-compatible streaming server: TTFT, TPOT, ITL and E2E per request.

Client side only: requests are streamed (``"stream": true``) over HTTP with ``httpx`` and the
server-sent events are decoded with ``httpx-sse`` (multi-line ``data:`` fields, ``:`` keep-alive
comments, ``[DONE]``). Every time below is ``time.perf_counter()`` seconds on the client, counted
from the moment the request is handed to the HTTP client (*sent*), for one request:

- ``ttft_s``: sent -> the first event that carries generated text (empty role/usage-only chunks
  do not count).
- ``e2e_s``: sent -> the end of the stream (``[DONE]``, or the server closing a stream whose last
  chunk had a ``finish_reason``).
- ``tpot_s``: ``(e2e_s - ttft_s) / (output_tokens - 1)``; ``None`` with fewer than two tokens.
- ``itl_s``: one inter-token latency per output token after the first. A chunk that carries ``k``
  tokens is ``k`` tokens: the gap since the previous text chunk is split evenly over them; the
  ``k - 1`` companions of the *first* token arrived with it and get ``0.0`` (the same rule as the
  local timing core, :mod:`streambench.timing`). So ``sum(itl_s) = last text chunk - ttft_s``.
- ``chunk_times_s`` / ``chunk_tokens``: the raw text chunks (arrival time since sent, tokens).

Tokens per chunk (``token_count``, one value per request):

- ``"usage_per_chunk"``: the server sent cumulative ``usage`` in every chunk (vLLM with
  ``stream_options.continuous_usage_stats``): exact.
- ``"usage+tokenizer"`` / ``"usage+text"``: the total from the final ``usage`` chunk
  (``stream_options.include_usage``), split over the chunks by tokenizing the text (``--tokenizer``)
  or, without a tokenizer, in proportion to each chunk's characters (each chunk gets at least one
  token while there are enough).
- ``"tokenizer"``: no usage; the concatenated text tokenized locally, each token counted in the
  chunk where it ends.
- ``"chunks"``: no usage and no tokenizer: every text chunk is counted as one token (a lower
  bound when the server sends several tokens per chunk).

Failed requests (connection refused, HTTP 4xx/5xx, a redirect, a non-SSE reply, an ``error``
event, a stream cut before ``[DONE]``/``finish_reason``, a timeout) are kept with ``ok=False`` and
their ``error``; they never enter latency statistics. Only the URL given is contacted: no redirects
are followed and proxy/``.netrc`` settings from the environment are ignored.

Secrets never reach an output (results files, tables, error lines, ``--verbose`` lines): the API
key is sent as a bearer token and masked wherever it could appear (also when a server echoes it);
a ``user:password@`` in a URL, query-string credentials, ``--api-key`` values and credential-named
``--extra-body`` fields are replaced by ``***`` (see :func:`scrub_text`, :func:`scrub_argv`).

Everything the server sends is input and bounded: an event is at most ``MAX_EVENT_CHARS``
characters, a request at most ``2 * max_tokens + 64`` text chunks and ``MAX_CHARS_PER_TOKEN *
max_tokens + 65536`` characters, an error body is read up to 4 KiB, compressed replies are
refused, and ``usage`` counts must be whole, finite, non-negative and plausible (at most
``2 * max(max_tokens, text chunks) + 16``); a count that is not is ignored, the tokens are counted
from the text chunks instead and the request records a warning (``warnings``).

Time bound: every request (probe, warm-up, measured) is bounded by ``timeout_s``, and with
``request_rate`` each arrival gap is cut at ``timeout_s``, so one configuration takes at most
:attr:`EndpointSpec.max_duration_s` = ``(probes + warmup + ceil(requests / concurrency)) *
timeout_s`` (``(probes + warmup + requests) * timeout_s`` with a request rate); ``probes`` is 3
with ``force="auto"`` (1 unless the server answers 400/422 to the forcing fields), else 0.

Example (library use; ``python -m streambench.endpoint --help`` for the command line):
    >>> from streambench.endpoint import EndpointSpec, run_endpoint
    >>> spec = EndpointSpec(url="http://127.0.0.1:8000/v1", model="my-model", requests=8,
    ...                     concurrency=2, prompt_tokens=32, output_tokens=64)
    >>> result = run_endpoint(spec)  # doctest: +SKIP
    >>> result.summary.ttft_s.median, result.summary.tpot_s.p90  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import codecs
import contextlib
import json
import math
import os
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

from .errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    HANDLED_SIGNALS,
    SignalPolicy,
    UsageError,
    exit_code_for_signal,
    interrupted_exit_code,
    signal_name,
)
from .stats import Stats, describe

if TYPE_CHECKING:
    import httpx

    from .timing import RunResult

__all__ = [
    "EndpointBenchmark",
    "EndpointError",
    "EndpointResult",
    "EndpointSpec",
    "EndpointSummary",
    "RequestRecord",
    "add_arguments",
    "apportion",
    "cmd_endpoint",
    "count_chunk_tokens",
    "endpoint_table",
    "format_summary",
    "main",
    "make_prompts",
    "parse_slo",
    "request_url",
    "run_endpoint",
    "scrub_argv",
    "scrub_text",
    "specs_from_args",
    "summarize",
    "to_entry",
]

#: Request fields that force the output length; dropped when the server rejects them (``auto``).
FORCE_FIELDS = ("ignore_eos", "min_tokens")
SLO_KEYS = ("ttft", "tpot", "itl", "e2e")
DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"

# Bounds of the inputs (options) and of what a server may send. A value outside them is an error
# (options: exit 2, one line) or a failed request / ignored count (server input), never a stall.
MAX_REQUESTS = 1_000_000
MAX_WARMUP = 1_000
MAX_CONCURRENCY = 4_096
#: each side of --in-out; also the largest max_tokens used to size the bounds below
MAX_TOKENS = 1_048_576
MAX_REQUEST_RATE = 1_000_000.0
MAX_TIMEOUT_S = 86_400.0
MAX_IN_OUT_PAIRS = 1_000
#: one server-sent event (its data lines together), characters
MAX_EVENT_CHARS = 1 << 20
#: a request's generated text: at most this many characters per asked token (+ 64 KiB)
MAX_CHARS_PER_TOKEN = 256
#: bytes of an HTTP error body kept for the message
MAX_ERROR_BODY = 4096
#: prompts are generated up front while (warm-up + requests) x prompt tokens stays below this
#: many words; above it, one at a time as they are sent (the same seeded prompts)
PROMPT_WORDS_UP_FRONT = 1 << 22
# Words that are one token each in the common BPE vocabularies (with a leading space).
_WORDS = (
    "the of and to in is was for that on with as by at from his her are be this which have or "
    "one had not but what all were when we there can an your more if has will each about how up "
    "out them then she many some so these would other into him time two way could people my than "
    "first water been call who its now find long down day did get come made may part over new "
    "sound take only little work know place year live me back give most very after thing our just "
    "name good sentence man think say great where help through much before line right too mean "
    "old any same tell boy follow came want show also around form three small set put end does "
    "another well large must big even such because turn here why ask went men read need land"
).split()


class EndpointError(UsageError):
    """Bad endpoint benchmark input (URL, numbers, SLO, tokenizer); the message says what to do.
    A :class:`streambench.errors.UsageError` (a ``ValueError``): the CLI prints it as one line and
    exits with 2. Messages never hold a secret (URLs are shown scrubbed)."""


# --------------------------------------------------------------------------- secrets
#: credential-like names: query parameters, ``key: value`` / ``"key": "value"`` pairs in text,
#: JSON fields of --extra-body, options on the command line
_CRED_CORE = (
    r"api[-_]?key|apikey|access[-_]?token|refresh[-_]?token|auth[-_]?token|id[-_]?token|"
    r"bearer[-_]?token|client[-_]?secret|secret[-_]?key|private[-_]?key|token|secret|password|"
    r"passwd|pwd|authorization|credentials?"
)
_CRED_WORDS = r"(?:x[-_])?(?:" + _CRED_CORE + ")"
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^\s/?#@\[\]]*@")
_AUTH_SCHEME = re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9\-._~+/=:]+")
# a query parameter whose name ends in a credential word (?api_key=, &subscription-key=, ?sig=)
_QUERY_CRED = re.compile(
    r"(?i)([?&;][^=&#\s]*?(?:" + _CRED_CORE + r"|key|sig|signature|auth|code|session|sessionid)=)"
    r"[^&#\s\"']*"
)
# password: value / "api_key": "value" / token=value (a quoted value up to its closing quote)
_KV_CRED = re.compile(
    r"(?i)([\"']?\b" + _CRED_WORDS + r"\b[\"']?\s*[:=]\s*)"
    r"((?:bearer|basic)\s+[^\s\"',;&}\]]+|\"[^\"]*\"?|'[^']*'?|[^\s\"',;&}\]]+)"
)


def scrub_text(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every secret replaced by ``***``: the given ``secrets`` (4 characters or
    longer; also percent-decoded), the ``user:password@`` of any URL, credential-named
    query-string values (``?api_key=``, ``&token=``, ``?sig=``...), ``Bearer``/``Basic`` tokens
    and ``password: value``-like pairs.

    >>> scrub_text("see http://bob:hunter2@h/v1?api_key=abc&x=1, Authorization: Bearer sk-1")
    'see http://***@h/v1?api_key=***&x=1, Authorization: ***'
    """
    text = str(text)
    known = {s for s in secrets if s and len(s) >= 4}
    known |= {unquote(s) for s in known}
    for secret in sorted(known, key=len, reverse=True):
        text = text.replace(secret, "***")
    text = _USERINFO.sub(r"\1***@", text)
    text = _AUTH_SCHEME.sub(r"\1\2***", text)
    text = _QUERY_CRED.sub(r"\1***", text)
    return _KV_CRED.sub(_mask_value, text)


def _mask_value(m: re.Match[str]) -> str:
    value = m.group(2)
    quote = value[0] if value[:1] in ("'", '"') else ""
    return m.group(1) + (quote + "***" + quote if quote else "***")


def _is_secret_name(name: str) -> bool:
    """A JSON field or option name that holds a credential (``api_key``, ``X-Api-Key``,
    ``password``...); ``*-env`` names (an environment variable's *name*) and ``*tokens`` (counts)
    are not."""
    name = name.strip().lower()
    if name.endswith(("-env", "_env")):
        return False
    words = _CRED_WORDS + "|key"
    return re.fullmatch(r"(?:[a-z0-9]+[-_])*(?:" + words + r")(?:[-_][a-z0-9]+)*", name) is not None


def _scrub_json(obj: Any, secrets: Iterable[str | None] = ()) -> Any:
    """``obj`` (decoded JSON) with credential-named fields' values and secrets in strings masked."""
    secrets = tuple(secrets)
    if isinstance(obj, dict):
        return {
            k: "***" if _is_secret_name(str(k)) else _scrub_json(v, secrets) for k, v in obj.items()
        }
    if isinstance(obj, (list, tuple)):
        return [_scrub_json(v, secrets) for v in obj]
    if isinstance(obj, str):
        return scrub_text(obj, secrets)
    return obj


# --------------------------------------------------------------------------- specification
@dataclass(frozen=True)
class EndpointSpec:
    """What to send, how many, and how fast. Times in seconds.

    Args:
        url: the OpenAI-compatible base, e.g. ``http://127.0.0.1:8000/v1`` (``/completions`` or
            ``/chat/completions`` is appended; a URL already ending in one is used as is; a bare
            ``http://host:port`` gets ``/v1``).
        model: the ``model`` field of each request.
        chat: stream ``/chat/completions`` (one user message) instead of ``/completions``.
        prompt_tokens: prompt length N. Exact when ``tokenizer`` is given, else N common English
            words (about N tokens in most vocabularies; the server's ``usage`` reports the truth).
        output_tokens: forced output length M: ``max_tokens = M`` plus ``ignore_eos`` and
            ``min_tokens = M`` (see ``force``).
        requests: measured requests. warmup: requests sent one at a time first, not measured.
        concurrency: most requests in flight (default 1; 64 with ``request_rate``).
        request_rate: mean requests per second with Poisson arrivals (exponential gaps drawn from
            ``random.Random(seed)``); ``None`` sends as fast as ``concurrency`` allows.
        timeout_s: hard limit per request (connect + whole stream); a request past it fails.
        force: ``"auto"`` (send the forcing fields; when a 1-token probe gets HTTP 400/422, drop
            them, then ``stream_options`` too, and say so), ``"on"`` (always send), ``"off"``.
        tokenizer: a local tokenizer directory (``AutoTokenizer``, never downloaded) for exact
            prompts and per-chunk token counts.
        extra_body: more JSON fields merged into every request (server-specific options).
        slo: goodput thresholds in seconds, keys among ``ttft``, ``tpot``, ``itl`` (every
            inter-token latency of the request), ``e2e``.
        api_key: bearer token; ``None`` reads the environment variable ``api_key_env``.
        prompt: use this text for every request instead of generated prompts.
        temperature: sampling temperature sent (``0`` = greedy where servers honour it).
    """

    url: str
    model: str
    chat: bool = False
    prompt_tokens: int = 32
    output_tokens: int = 32
    requests: int = 10
    warmup: int = 1
    concurrency: int | None = None
    request_rate: float | None = None
    timeout_s: float = 60.0
    seed: int = 0
    force: str = "auto"
    tokenizer: str | None = None
    extra_body: dict[str, Any] = field(default_factory=dict)
    slo: dict[str, float] = field(default_factory=dict)
    api_key: str | None = field(default=None, repr=False)
    api_key_env: str = DEFAULT_API_KEY_ENV
    prompt: str | None = None
    temperature: float | None = 0.0

    def validate(self) -> EndpointSpec:
        """Check every input against its bound (the ``MAX_*`` constants); returns ``self`` or
        raises :class:`EndpointError` with one line that names the option and the allowed range.
        """
        request_url(self.url, self.chat)  # raises on a bad URL
        if not isinstance(self.model, str) or not self.model.strip():
            raise EndpointError("--model is required: the model name the server serves")
        for name, value in (("prompt", self.prompt_tokens), ("output", self.output_tokens)):
            if not _whole(value) or not 1 <= value <= MAX_TOKENS:
                raise EndpointError(
                    f"--in-out {self.prompt_tokens}-{self.output_tokens}: the {name} token count "
                    f"must be a whole number from 1 to {MAX_TOKENS}"
                )
        _check_whole("--requests", self.requests, 1, MAX_REQUESTS)
        _check_whole("--warmup", self.warmup, 0, MAX_WARMUP)
        if self.concurrency is not None:
            _check_whole("--concurrency", self.concurrency, 1, MAX_CONCURRENCY)
        if not _number(self.timeout_s) or not 0 < self.timeout_s <= MAX_TIMEOUT_S:
            raise EndpointError(
                f"--timeout {self.timeout_s}: expected seconds, a finite number greater than 0 "
                f"and at most {MAX_TIMEOUT_S:g}"
            )
        if self.request_rate is not None:
            low = 1.0 / self.timeout_s
            if not _number(self.request_rate) or not low <= self.request_rate <= MAX_REQUEST_RATE:
                raise EndpointError(
                    f"--request-rate {self.request_rate}: expected requests/s from {low:.4g} "
                    f"(1 / --timeout: the mean gap between arrivals must not exceed the timeout; "
                    f"raise --timeout for slower rates) to {MAX_REQUEST_RATE:g}"
                )
        if self.temperature is not None and not _number(self.temperature):
            raise EndpointError(f"temperature {self.temperature}: expected a finite number")
        if self.force not in ("auto", "on", "off"):
            raise EndpointError(f"--force-output must be auto, on or off, got {self.force!r}")
        if not isinstance(self.extra_body, dict):
            raise EndpointError("--extra-body must be a JSON object, e.g. '{\"top_k\": 1}'")
        try:
            json.dumps(self.extra_body, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise EndpointError(f"--extra-body is not strict JSON: {exc}") from None
        bad = set(self.slo) - set(SLO_KEYS)
        if bad:
            raise EndpointError(f"unknown SLO key(s) {sorted(bad)}: use {', '.join(SLO_KEYS)}")
        for key, value in self.slo.items():
            if not _number(value) or not 0 <= value <= MAX_TIMEOUT_S:
                raise EndpointError(
                    f"--slo {key}={value}: expected a finite time from 0 to {MAX_TIMEOUT_S:g} s"
                )
        key = self._resolved_key()
        if key is not None and not re.fullmatch(r"[\x21-\x7e]+", key):
            where = "--api-key" if self.api_key else f"${self.api_key_env}"
            raise EndpointError(
                f"the API key from {where} contains spaces, control or non-ASCII characters; "
                "an HTTP header cannot carry it"
            )
        return self

    @property
    def max_in_flight(self) -> int:
        if self.concurrency is not None:
            return self.concurrency
        return 64 if self.request_rate is not None else 1

    @property
    def max_probes(self) -> int:
        """1-token probe requests sent before the warm-up: up to 3 with ``force="auto"`` (a
        second and third only after HTTP 400/422), none otherwise."""
        return 3 if self.force == "auto" else 0

    @property
    def max_duration_s(self) -> float:
        """The most this configuration's requests can take, in seconds: ``(probes + warmup +
        ceil(requests / max_in_flight)) * timeout_s``, or ``(probes + warmup + requests) *
        timeout_s`` with a request rate (arrival gaps are cut at ``timeout_s``). Every request is
        bounded by ``timeout_s``; prompt generation and token counting come on top (small)."""
        if self.request_rate is not None:
            measured = self.requests
        else:
            measured = -(-self.requests // self.max_in_flight)
        return (self.max_probes + self.warmup + measured) * self.timeout_s

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe configuration; the API key is never included (only whether one was set),
        URLs are scrubbed and credential-named ``extra_body`` fields masked."""
        out = asdict(self)
        out.pop("api_key")
        out["url"] = _public_url(self.url)
        out["endpoint"] = _public_url(request_url(self.url, self.chat))
        out["extra_body"] = _scrub_json(self.extra_body, self.secrets())
        out["max_in_flight"] = self.max_in_flight
        out["api_key_set"] = bool(self._resolved_key())
        return out

    def _resolved_key(self) -> str | None:
        return self.api_key or os.environ.get(self.api_key_env) or None

    def secrets(self) -> tuple[str, ...]:
        """Every secret this spec sends: the API key, and the URL's user info (the password, and
        the ``user:password`` pair and its Basic-auth encoding). Masked in every output."""
        out = [self._resolved_key() or ""]
        try:
            parts = urlsplit(self.url.strip())
            if parts.password:
                out += [parts.password, unquote(parts.password)]
            if "@" in parts.netloc:
                info = parts.netloc.rsplit("@", 1)[0]
                out.append(info)
                pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
                out.append(base64.b64encode(pair.encode()).decode())
        except (ValueError, AttributeError):
            pass
        return tuple(s for s in out if s)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_whole(option: str, value: Any, low: int, high: int) -> None:
    if not _whole(value) or not low <= value <= high:
        raise EndpointError(f"{option} {value}: expected a whole number from {low} to {high}")


def request_url(url: str, chat: bool = False) -> str:
    """The URL each request goes to. Raises :class:`EndpointError` (one line, the URL shown
    without secrets) for a URL that is not a usable http(s) base: scheme http or https, a host,
    a port from 1 to 65535, no whitespace or control characters, no query or fragment."""
    if not isinstance(url, str):
        raise EndpointError(f"URL {url!r}: not a string")
    shown = _public_url(url)
    raw = url.strip()
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in raw):
        raise EndpointError(f"URL {shown!r}: contains whitespace or control characters")
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        why = str(exc)
        if "range" in why or "integer" in why.lower():
            raise EndpointError(
                f"URL {shown!r}: the port must be a number from 1 to 65535"
            ) from None
        raise EndpointError(f"URL {shown!r}: not a valid URL ({why})") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise EndpointError(
            f"endpoint URL {shown!r} is not an http(s) URL: give the OpenAI-compatible base, "
            "e.g. http://127.0.0.1:8000/v1"
        )
    if not parts.hostname:
        raise EndpointError(f"URL {shown!r}: no host name, e.g. http://127.0.0.1:8000/v1")
    if port is not None and not 1 <= port <= 65535:
        raise EndpointError(f"URL {shown!r}: the port must be a number from 1 to 65535")
    if parts.query or parts.fragment or raw.endswith(("?", "#")):
        raise EndpointError(
            f"endpoint URL {shown!r} has a query or fragment: give only the base (pass the key "
            "with --api-key-env, options with --extra-body)"
        )
    path = parts.path.rstrip("/")
    if path.endswith("/chat/completions") or path.endswith("/completions"):
        is_chat = path.endswith("/chat/completions")
        if is_chat != chat:
            want = "add --chat" if is_chat else "drop --chat"
            raise EndpointError(f"URL {shown!r} names the other endpoint: {want} or give the base")
        full = path
    else:
        if not path:
            path = "/v1"
        full = path + ("/chat/completions" if chat else "/completions")
    out = urlunsplit((parts.scheme, parts.netloc, full, "", ""))
    try:
        import httpx

        httpx.URL(out)
    except Exception as exc:  # noqa: BLE001 - httpx.InvalidURL, idna errors...
        reason = scrub_text(str(exc) or type(exc).__name__)
        raise EndpointError(f"URL {shown!r}: not a valid URL ({reason})") from None
    return out


def _public_url(url: str) -> str:
    """``url`` without user:password and with every query value replaced by ``***`` (the
    fragment dropped): safe to print and to store."""
    try:
        parts = urlsplit(str(url).strip())
        host = parts.netloc.rsplit("@", 1)[-1]
        query = "&".join(
            (p.split("=", 1)[0] + "=***") if "=" in p else p
            for p in re.split(r"[&;]", parts.query)
            if p
        )
        out = urlunsplit((parts.scheme, host, parts.path, query, ""))
    except ValueError:
        out = str(url)
    return scrub_text(out)


_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[-+]?\d+)?)\s*(us|µs|ms|s)?\s*$", re.I)


def parse_duration(text: str) -> float:
    """``"200ms"``, ``"0.2s"``, ``"150us"`` or a bare number of milliseconds -> seconds."""
    m = _DURATION.match(text)
    if not m:
        raise EndpointError(f"bad duration {text!r}: write e.g. 200ms, 0.2s or 150us")
    value = float(m.group(1))
    unit = (m.group(2) or "ms").lower()
    seconds = value * {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0}[unit]
    if not math.isfinite(seconds) or seconds > MAX_TIMEOUT_S:
        raise EndpointError(f"bad duration {text!r}: at most {MAX_TIMEOUT_S:g} s")
    return seconds


def parse_slo(text: str | None) -> dict[str, float]:
    """``"ttft=200ms,tpot=50ms"`` -> ``{"ttft": 0.2, "tpot": 0.05}`` (seconds)."""
    if not text:
        return {}
    out: dict[str, float] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        key = key[:-2] if key.endswith("_s") else key
        key = {"e2el": "e2e", "e2e_latency": "e2e"}.get(key, key)
        if not sep or key not in SLO_KEYS:
            raise EndpointError(
                f"bad --slo part {part!r}: write KEY=TIME with KEY in {', '.join(SLO_KEYS)}, "
                "e.g. --slo ttft=200ms,tpot=50ms"
            )
        out[key] = parse_duration(value)
    return out


# --------------------------------------------------------------------------- per request
@dataclass(frozen=True)
class RequestRecord:
    """One streamed request. Times in seconds (``perf_counter``), counted from when it was sent.

    ``index``: position in its phase (the 1-token probes of ``force="auto"``: -1, -2, -3);
    ``warmup``: a warm-up (or probe) request, never in
    statistics; ``ok``: the stream completed. ``error`` (``"kind: detail"``, kinds: ``connect``,
    ``http``, ``timeout``, ``stream_cut``, ``protocol``, ``server_error``) and ``status`` (HTTP
    status) explain a failure. ``sent_s``: when it was sent, from the start of its phase.
    ``prompt_tokens``: from the server's ``usage``, else the local tokenizer, else ``None``.
    ``warnings``: server numbers that were not trusted (see the module doc); the tokens were then
    counted from the text chunks.
    """

    index: int
    ok: bool
    sent_s: float
    warmup: bool = False
    error: str | None = None
    status: int | None = None
    ttft_s: float | None = None
    e2e_s: float | None = None
    chunk_times_s: tuple[float, ...] = ()
    chunk_tokens: tuple[int, ...] = ()
    output_tokens: int = 0
    prompt_tokens: int | None = None
    token_count: str = "chunks"
    finish_reason: str | None = None
    events: int = 0
    #: server input that was not trusted (an implausible ``usage`` count ignored, ...)
    warnings: tuple[str, ...] = ()
    # raw stream data, kept to (re)count tokens after the run (not written to results)
    texts: tuple[str, ...] = field(default=(), repr=False, compare=False)
    chunk_usage: tuple[int | None, ...] = field(default=(), repr=False, compare=False)
    usage_total: int | None = field(default=None, repr=False, compare=False)

    def recount(self, tokenizer: Any) -> RequestRecord:
        """This record with its tokens per chunk counted again with ``tokenizer`` (see
        :func:`count_chunk_tokens`). Done after the measured phase, never while requests stream:
        tokenizing long outputs inside the event loop would delay the other requests' chunks."""
        if tokenizer is None or not self.texts:
            return self
        counts, method = count_chunk_tokens(
            self.texts, self.chunk_usage, self.usage_total, tokenizer
        )
        return replace(
            self, chunk_tokens=tuple(counts), output_tokens=sum(counts), token_count=method
        )

    @property
    def error_kind(self) -> str | None:
        return self.error.split(":", 1)[0] if self.error else None

    @property
    def tpot_s(self) -> float | None:
        """``(e2e_s - ttft_s) / (output_tokens - 1)``, seconds/token."""
        if self.ttft_s is None or self.e2e_s is None or self.output_tokens < 2:
            return None
        return (self.e2e_s - self.ttft_s) / (self.output_tokens - 1)

    @property
    def token_latencies_s(self) -> tuple[float, ...]:
        """Per output token: ``ttft_s`` first, then the inter-token latencies (see module doc)."""
        out: list[float] = []
        prev: float | None = None
        for t, k in zip(self.chunk_times_s, self.chunk_tokens):
            if k <= 0:
                continue  # its time is carried into the next chunk with tokens
            if prev is None:
                out.append(t)
                out.extend([0.0] * (k - 1))
            else:
                out.extend([(t - prev) / k] * k)
            prev = t
        return tuple(out)

    @property
    def itl_s(self) -> tuple[float, ...]:
        """Inter-token latencies, one per output token after the first."""
        return self.token_latencies_s[1:]

    @property
    def chunk_gaps_s(self) -> tuple[float, ...]:
        """Time between consecutive text chunks (the first entry is ``ttft_s``)."""
        prev = 0.0
        out = []
        for t in self.chunk_times_s:
            out.append(t - prev)
            prev = t
        return tuple(out)

    def meets(self, slo: dict[str, float]) -> bool:
        """True when the request succeeded and every given SLO threshold (seconds) holds."""
        if not self.ok:
            return False
        checks = {
            "ttft": self.ttft_s,
            "tpot": self.tpot_s,
            "e2e": self.e2e_s,
            "itl": max(self.itl_s) if self.itl_s else None,
        }
        for key, limit in slo.items():
            value = checks[key]
            if value is not None and value > limit:
                return False
        return True

    def to_dict(self, per_token: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "index": self.index,
            "warmup": self.warmup,
            "ok": self.ok,
            "error": self.error,
            "status": self.status,
            "sent_s": self.sent_s,
            "ttft_s": self.ttft_s,
            "tpot_s": self.tpot_s,
            "e2e_s": self.e2e_s,
            "output_tokens": self.output_tokens,
            "prompt_tokens": self.prompt_tokens,
            "token_count": self.token_count,
            "finish_reason": self.finish_reason,
            "chunks": len(self.chunk_times_s),
            "events": self.events,
            "warnings": list(self.warnings),
        }
        if per_token:
            out["chunk_times_s"] = list(self.chunk_times_s)
            out["chunk_tokens"] = list(self.chunk_tokens)
            out["itl_s"] = list(self.itl_s)
        return out

    def to_run_result(self, device: str = "endpoint") -> RunResult:
        """The same request as a :class:`~streambench.timing.RunResult` (``reference="request"``,
        ``batch_size=1``), so reports and :func:`streambench.stats.aggregate` treat it like a local
        run: ``first_token_s`` = TTFT, ``token_latencies_s`` = TTFT then ITL, ``step_*`` = chunks.
        ``extra`` holds ``e2e_s``, ``tpot_s`` and ``token_count``."""
        from .timing import RunResult

        lat = self.token_latencies_s
        return RunResult(
            device=device,
            reference="request",
            first_token_s=lat[0] if lat else None,
            token_latencies_s=lat,
            step_latencies_s=self.chunk_gaps_s,
            step_tokens=self.chunk_tokens,
            new_tokens=len(lat),
            batch_size=1,
            prompt_tokens=self.prompt_tokens or 0,
            complete=self.ok,
            extra={"e2e_s": self.e2e_s, "tpot_s": self.tpot_s, "token_count": self.token_count},
        )


def apportion(total: int, weights: Sequence[float]) -> list[int]:
    """Split ``total`` tokens over chunks in proportion to ``weights`` (largest remainder).

    While ``total >= len(weights)`` every chunk gets at least one token (a text chunk holds at
    least one token); the first chunk always gets one when ``total >= 1``. Sums to ``total``.
    """
    n = len(weights)
    if n == 0 or total <= 0:
        return [0] * n
    if total >= n:
        base = [1] * n
        rest = total - n
        w = [max(float(x) - 1.0, 0.0) for x in weights]
    else:
        base = [0] * n
        base[0] = 1
        rest = total - 1
        w = [0.0] + [max(float(x), 0.0) for x in weights[1:]]
    if rest:
        if sum(w) <= 0:
            w = [1.0] * n if total >= n else [0.0] + [1.0] * (n - 1)
        s = sum(w)
        exact = [rest * x / s for x in w]
        add = [math.floor(x) for x in exact]
        left = rest - sum(add)
        order = sorted(range(n), key=lambda i: (-(exact[i] - add[i]), i))
        for i in order[:left]:
            add[i] += 1
        base = [b + a for b, a in zip(base, add)]
    return base


def _tokenizer_counts(tokenizer: Any, texts: Sequence[str]) -> list[int]:
    """Tokens of each chunk: the whole text tokenized once, each token given to the chunk where
    it ends (character offsets of a fast tokenizer; O(length), so cheap inside the event loop).
    Without offsets (slow tokenizers): each chunk tokenized on its own."""
    import bisect

    text = "".join(texts)
    ends, acc = [], 0
    for t in texts:
        acc += len(t)
        ends.append(acc)
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        offsets = enc["offset_mapping"]
    except (NotImplementedError, KeyError, TypeError, ValueError):
        return [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    counts = [0] * len(texts)
    for _start, end in offsets:
        counts[min(bisect.bisect_left(ends, max(end, 1)), len(texts) - 1)] += 1
    return counts


def count_chunk_tokens(
    texts: Sequence[str],
    chunk_usage: Sequence[int | None] = (),
    usage_total: int | None = None,
    tokenizer: Any = None,
) -> tuple[list[int], str]:
    """Tokens per text chunk and how they were counted (see the module doc for the methods).

    ``chunk_usage``: cumulative ``usage.completion_tokens`` seen with each chunk (``None`` where
    absent); ``usage_total``: the last ``usage.completion_tokens`` of the stream. The counts sum to
    ``usage_total`` whenever it is known.
    """
    n = len(texts)
    if n == 0:
        return [], "usage" if usage_total is not None else "chunks"
    if len(chunk_usage) == n and all(u is not None for u in chunk_usage):
        counts, prev = [], 0
        for u in chunk_usage:
            counts.append(max(int(u) - prev, 0))  # type: ignore[arg-type]
            prev = max(prev, int(u))  # type: ignore[arg-type]
        if usage_total is not None and usage_total > sum(counts):
            counts[-1] += usage_total - sum(counts)
        if counts[0] == 0 and sum(counts) > 0:
            counts = apportion(sum(counts), counts)
        return counts, "usage_per_chunk"
    tok_counts = _tokenizer_counts(tokenizer, texts) if tokenizer is not None else None
    if usage_total is not None:
        weights = tok_counts if tok_counts is not None else [len(t) for t in texts]
        method = "usage+tokenizer" if tok_counts is not None else "usage+text"
        return apportion(usage_total, weights), method
    if tok_counts is not None:
        if tok_counts[0] == 0:
            tok_counts[0] = 1
        return tok_counts, "tokenizer"
    return [1] * n, "chunks"


# --------------------------------------------------------------------------- prompts
def load_tokenizer(path: str | None) -> Any:
    """A local tokenizer (``AutoTokenizer.from_pretrained(path, local_files_only=True)``)."""
    if not path:
        return None
    if not os.path.isdir(path):
        raise EndpointError(
            f"--tokenizer {path!r} is not a directory: give a local tokenizer folder "
            "(the model's directory works); it is never downloaded"
        )
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as exc:
        raise EndpointError(f"cannot load a tokenizer from {path!r}: {exc}") from exc


def make_prompts(count: int, tokens: int, seed: int = 0, tokenizer: Any = None) -> list[str]:
    """``count`` different prompts of ``tokens`` tokens: random common words (seeded).

    With a tokenizer the text is cut so that it encodes to exactly ``tokens`` tokens (without
    special tokens) where the vocabulary allows; without one, ``tokens`` words.
    """
    return list(iter_prompts(count, tokens, seed, tokenizer))


def iter_prompts(count: int, tokens: int, seed: int = 0, tokenizer: Any = None) -> Iterator[str]:
    """The prompts of :func:`make_prompts`, one at a time (the same seeded sequence)."""
    rng = random.Random(seed)
    for _ in range(count):
        words = [rng.choice(_WORDS) for _ in range(tokens)]
        text = " ".join(words)
        if tokenizer is not None:
            text = _fit(tokenizer, text, tokens, rng)
        yield text


class _Prompts:
    """Prompt ``i`` of a run (``i`` never decreasing, repeats allowed) and its local token count.

    Generated up front while ``count * tokens <= PROMPT_WORDS_UP_FRONT`` (no tokenizing inside the
    event loop while requests stream), otherwise one at a time as requests are sent, so memory
    stays at one prompt however many requests are asked for."""

    def __init__(
        self, spec: EndpointSpec, count: int, tokenizer: Any, count_tokens: Callable[[str], Any]
    ) -> None:
        self._count_tokens = count_tokens
        self._fixed = spec.prompt
        self._list: list[str] | None = None
        self._gen: Iterator[str] | None = None
        self._cache: dict[int, str] = {}
        self._next = 0
        self._ptoks: dict[str, Any] = {}
        if self._fixed is not None:
            self._ptoks[self._fixed] = count_tokens(self._fixed)
        elif count * spec.prompt_tokens <= PROMPT_WORDS_UP_FRONT:
            self._list = make_prompts(count, spec.prompt_tokens, spec.seed, tokenizer)
            self._ptoks = {p: count_tokens(p) for p in set(self._list)}
        else:
            self._gen = iter_prompts(count, spec.prompt_tokens, spec.seed, tokenizer)

    def get(self, i: int) -> tuple[str, Any]:
        """(prompt ``i``, its local token count or ``None``)."""
        if self._fixed is not None:
            return self._fixed, self._ptoks[self._fixed]
        if self._list is not None:
            prompt = self._list[i]
            return prompt, self._ptoks.get(prompt)
        assert self._gen is not None
        while self._next <= i:
            self._cache[self._next] = next(self._gen)
            self._next += 1
        for k in [k for k in self._cache if k < i]:
            del self._cache[k]
        prompt = self._cache[i]
        return prompt, self._count_tokens(prompt)


def _fit(tokenizer: Any, text: str, tokens: int, rng: random.Random) -> str:
    for _ in range(8):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) == tokens:
            return text
        if len(ids) > tokens:
            text = tokenizer.decode(ids[:tokens])
        else:
            text = text + " " + " ".join(rng.choice(_WORDS) for _ in range(tokens - len(ids)))
    return text


# --------------------------------------------------------------------------- streaming client
class _Live:
    """State of a request in flight, readable after a timeout cancelled it."""

    __slots__ = (
        "chars",
        "done",
        "events",
        "finish",
        "origin",
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
        if _number(value) and value >= 1:
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


def _chunk_text(obj: dict[str, Any]) -> tuple[str, str | None]:
    """Generated text and finish_reason of choice 0 of one streamed chunk (only strings count:
    a server's other types are ignored)."""
    text, finish = "", None
    choices = obj.get("choices")
    for choice in choices if isinstance(choices, list) else ():
        if not isinstance(choice, dict) or choice.get("index", 0) != 0:
            continue
        reason = choice.get("finish_reason")
        if isinstance(reason, str) and reason:
            finish = reason
        if isinstance(choice.get("text"), str):
            text += choice["text"]
        delta = choice.get("delta")
        if isinstance(delta, dict):
            for key in ("reasoning_content", "reasoning", "content"):
                if isinstance(delta.get(key), str):
                    text += delta[key]
    return text, finish


#: what an exception whose message is empty means (httpx/httpcore raise several such)
_MEANING = {
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


def _describe(exc: BaseException, with_type: bool = True) -> str:
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
                    target = _snippet(_public_url(urljoin(url, location.strip())), 300)
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
        raise _Failed(f"timeout: {_describe(exc)}") from None
    except httpx.ConnectError as exc:
        raise _Failed(f"connect: {_describe(exc, with_type=False)}") from None
    except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
        raise _Failed(f"stream_cut: {_describe(exc)}") from None
    except httpx.HTTPError as exc:
        raise _Failed(f"connect: {_describe(exc)}") from None
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
    text, finish = _chunk_text(obj)
    usage = obj.get("usage")
    if isinstance(usage, dict):
        live.usage = usage
    if finish:
        live.finish = finish
    if text:
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
        live.usage_at.append(usage.get("completion_tokens") if isinstance(usage, dict) else None)
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


async def _request(
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
        error = f"client: {_describe(exc)}"
    end = time.perf_counter()
    if error:
        error = scrub_text(error, secrets)
    total, per_chunk, ptok, warnings = _checked_usage(
        live, bounds, len(prompt) if isinstance(prompt, str) else None
    )
    # without the tokenizer here (cheap); EndpointBenchmark.result() recounts with it
    counts, method = count_chunk_tokens(live.texts, per_chunk, total, None)
    finish = scrub_text(_snippet(live.finish, 64), secrets) if live.finish else None
    common = dict(
        index=index,
        sent_s=t0 - phase_start,
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
    )
    if error is None and not live.times:
        error = "protocol: stream completed without any generated text"
    if error is not None:
        return RequestRecord(ok=False, error=error, **common)  # type: ignore[arg-type]
    return RequestRecord(ok=True, ttft_s=live.times[0], e2e_s=end - t0, **common)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class EndpointSummary:
    """Aggregates over the measured requests (warm-up excluded); latencies in seconds.

    ``ttft_s``/``tpot_s``/``e2e_s``: one value per successful request; ``itl_s``: every inter-token
    latency of every successful request pooled. ``requests_per_s`` and ``output_tokens_per_s``:
    successful requests and their output tokens divided by ``duration_s`` (first request sent ->
    last request finished). ``goodput_requests_per_s``/``slo_attained``: requests meeting every
    ``slo`` threshold, per second and as a fraction of all measured requests (``None`` without an
    SLO). ``errors``: failure kind -> count; ``short_outputs``: successful requests that returned
    fewer tokens than asked; ``warnings``: requests whose server numbers were not trusted, by
    subject (e.g. ``usage.completion_tokens``), ``first_warnings`` the first message of each.
    """

    requests: int
    ok: int
    failed: int
    duration_s: float
    ttft_s: Stats | None
    tpot_s: Stats | None
    itl_s: Stats | None
    e2e_s: Stats | None
    output_tokens: Stats | None
    prompt_tokens: Stats | None
    total_output_tokens: int
    requests_per_s: float
    output_tokens_per_s: float
    goodput_requests_per_s: float | None
    slo_attained: float | None
    slo: dict[str, float]
    errors: dict[str, int]
    first_errors: list[str]
    token_count: dict[str, int]
    short_outputs: int
    #: requests (measured, successful or not) with a warning, by its subject; the first of each
    warnings: dict[str, int] = field(default_factory=dict)
    first_warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in self.__dataclass_fields__:
            value = getattr(self, key)
            out[key] = value.to_dict() if isinstance(value, Stats) else value
        return out


def summarize(
    records: Sequence[RequestRecord],
    duration_s: float,
    slo: dict[str, float] | None = None,
    asked_tokens: int | None = None,
) -> EndpointSummary:
    """:class:`EndpointSummary` of the measured (non-warm-up) records."""
    measured = [r for r in records if not r.warmup]
    good = [r for r in measured if r.ok]
    bad = [r for r in measured if not r.ok]
    total_out = sum(r.output_tokens for r in good)
    dur = duration_s if duration_s > 0 else math.inf
    slo = dict(slo or {})
    met = sum(1 for r in good if r.meets(slo)) if slo else None
    errors = Counter(r.error_kind or "unknown" for r in bad)
    firsts: list[str] = []
    seen: set[str] = set()
    for r in bad:
        kind = r.error_kind or "unknown"
        if kind not in seen and r.error:
            seen.add(kind)
            firsts.append(r.error)
    warned: Counter[str] = Counter()
    first_warnings: list[str] = []
    for r in measured:
        for w in dict.fromkeys(r.warnings):
            subject = w.split(" ", 1)[0]
            if subject not in warned:
                first_warnings.append(w)
            warned[subject] += 1
    return EndpointSummary(
        requests=len(measured),
        ok=len(good),
        failed=len(bad),
        duration_s=duration_s,
        ttft_s=describe(r.ttft_s for r in good if r.ttft_s is not None),
        tpot_s=describe(r.tpot_s for r in good if r.tpot_s is not None),
        itl_s=describe(x for r in good for x in r.itl_s),
        e2e_s=describe(r.e2e_s for r in good if r.e2e_s is not None),
        output_tokens=describe(r.output_tokens for r in good),
        prompt_tokens=describe(r.prompt_tokens for r in good if r.prompt_tokens is not None),
        total_output_tokens=total_out,
        requests_per_s=len(good) / dur,
        output_tokens_per_s=total_out / dur,
        goodput_requests_per_s=None if met is None else met / dur,
        slo_attained=None if met is None or not measured else met / len(measured),
        slo=slo,
        errors=dict(errors),
        first_errors=firsts,
        token_count=dict(Counter(r.token_count for r in good)),
        short_outputs=sum(1 for r in good if asked_tokens and r.output_tokens < asked_tokens),
        warnings=dict(warned),
        first_warnings=first_warnings,
    )


@dataclass(frozen=True)
class EndpointResult:
    """One endpoint benchmark: the spec, every request (warm-up and probe included, flagged), the
    request fields actually sent (``sent_fields``; ``dropped_fields`` the server refused), and
    :class:`EndpointSummary` over the measured ones. ``interrupted``: stopped early by
    ``interrupt_signal`` (Ctrl-C is SIGINT; SIGTERM and SIGHUP under a
    :class:`~streambench.errors.SignalPolicy`). ``warnings``: notes about the run as a whole."""

    spec: EndpointSpec
    records: tuple[RequestRecord, ...]
    summary: EndpointSummary
    started_at: str
    sent_fields: tuple[str, ...]
    dropped_fields: tuple[str, ...] = ()
    interrupted: bool = False
    interrupt_signal: int | None = None
    warnings: tuple[str, ...] = ()

    @property
    def measured(self) -> list[RequestRecord]:
        return [r for r in self.records if not r.warmup]

    def run_results(self, device: str | None = None) -> list[RunResult]:
        """Successful measured requests as :class:`~streambench.timing.RunResult` records."""
        dev = device or f"endpoint:{self.spec.model}"
        return [r.to_run_result(dev) for r in self.measured if r.ok]

    def to_dict(self, per_token: bool = True) -> dict[str, Any]:
        """JSON-serializable (schema in docs/endpoint.md)."""
        return {
            "kind": "endpoint",
            "started_at": self.started_at,
            "config": self.spec.to_dict(),
            "sent_fields": list(self.sent_fields),
            "dropped_fields": list(self.dropped_fields),
            "interrupted": self.interrupted,
            "interrupted_by": (
                signal_name(self.interrupt_signal) if self.interrupt_signal is not None else None
            ),
            "warnings": list(self.warnings),
            "summary": self.summary.to_dict(),
            "requests": [r.to_dict(per_token) for r in self.records],
        }


# --------------------------------------------------------------------------- the run
def _body(spec: EndpointSpec, prompt: str, max_tokens: int, level: int) -> dict[str, Any]:
    """Request body. ``level`` 0: everything; 1: without the forcing fields; 2: also without
    ``stream_options``."""
    body: dict[str, Any] = {"model": spec.model, "stream": True, "max_tokens": max_tokens}
    if spec.chat:
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    if spec.temperature is not None:
        body["temperature"] = spec.temperature
    force = spec.force == "on" or (spec.force == "auto" and level == 0)
    if force:
        body["ignore_eos"] = True
        body["min_tokens"] = max_tokens
    if spec.force == "on" or level < 2:
        opts: dict[str, Any] = {"include_usage": True}
        if force:
            opts["continuous_usage_stats"] = True
        body["stream_options"] = opts
    body.update(spec.extra_body)
    return body


def arrival_gaps(count: int, rate: float, seed: int, cap_s: float) -> Iterator[tuple[float, bool]]:
    """The ``count`` gaps between Poisson arrivals at ``rate``/s (``random.Random(seed)``
    exponential draws), each cut at ``cap_s``: ``(gap, was_cut)`` pairs."""
    rng = random.Random(seed)
    for _ in range(count):
        gap = rng.expovariate(rate)
        yield (cap_s, True) if gap > cap_s else (gap, False)


def _policy_in_force() -> SignalPolicy | None:
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


def _signal_policy() -> contextlib.AbstractContextManager[Any]:
    """The policy already in force (``streambench.cli.main`` installs one), else a new one."""
    policy = _policy_in_force()
    return contextlib.nullcontext(policy) if policy is not None else SignalPolicy()


class EndpointBenchmark:
    """Runs a spec; :attr:`records` fills as requests finish (kept when interrupted).

    Interruptions: under a :class:`~streambench.errors.SignalPolicy` (the command line installs
    one) SIGINT, SIGTERM and SIGHUP are taken over inside the event loop for the run, so a signal
    cancels the run in an orderly way (in-flight requests dropped, the client closed) and
    :meth:`run` returns the finished requests with ``interrupted=True`` and
    ``interrupt_signal``. Without a policy, Ctrl-C does the same through ``asyncio.run``."""

    def __init__(
        self,
        spec: EndpointSpec,
        on_request: Callable[[RequestRecord], None] | None = None,
        tokenizer: Any = None,
    ) -> None:
        self.spec = spec.validate()
        self.on_request = on_request
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(spec.tokenizer)
        self.records: list[RequestRecord] = []
        self.level = 0
        self.dropped: tuple[str, ...] = ()
        self.started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.duration_s = 0.0
        self.interrupted = False
        self.interrupt_signal: int | None = None
        self.warnings: list[str] = []

    def _ptok(self, prompt: str) -> int | None:
        if self.tokenizer is None or self.spec.chat:
            return None
        return len(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])

    # -- signals: the policy's handlers, run inside the event loop for the run
    def _take_signals(self, loop: Any, task: Any) -> list[tuple[int, Any]]:
        import signal
        import threading

        policy = _policy_in_force()
        if policy is None or threading.current_thread() is not threading.main_thread():
            return []
        taken: list[tuple[int, Any]] = []
        for signum in policy.signals:
            try:
                previous = signal.getsignal(signum)
                if getattr(previous, "__self__", None) is not policy:
                    continue
                loop.add_signal_handler(signum, self._on_signal, signum, policy, task)
            except (ValueError, OSError, RuntimeError, NotImplementedError):
                continue
            taken.append((signum, previous))
        return taken

    def _on_signal(self, signum: int, policy: SignalPolicy, task: Any) -> None:
        policy.received.append(int(signum))  # the policy then ignores later signals
        if len(policy.received) == 1:
            self.interrupt_signal = int(signum)
            task.cancel()

    @staticmethod
    def _give_back_signals(loop: Any, taken: list[tuple[int, Any]]) -> None:
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

    async def arun(self) -> EndpointResult:
        import asyncio

        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        taken = self._take_signals(loop, task)
        try:
            await self._arun()
        except asyncio.CancelledError:
            if self.interrupt_signal is None:
                raise
            uncancel = getattr(task, "uncancel", None)  # Python >= 3.11
            if uncancel is not None:
                uncancel()
            self.interrupted = True
        finally:
            self._give_back_signals(loop, taken)
        return self.result()

    async def _arun(self) -> None:
        import asyncio

        import httpx

        spec = self.spec
        url = request_url(spec.url, spec.chat)
        key = spec._resolved_key()
        secrets = spec.secrets()
        headers = {
            "Accept": "text/event-stream",
            "Accept-Encoding": "identity",
            "Cache-Control": "no-store",
        }
        if key:
            headers["Authorization"] = f"Bearer {key}"
        prompts = _Prompts(spec, spec.warmup + spec.requests, self.tokenizer, self._ptok)
        limit = spec.max_in_flight
        timeout = httpx.Timeout(spec.timeout_s, connect=min(spec.timeout_s, 10.0))
        limits = httpx.Limits(max_connections=limit, max_keepalive_connections=limit)
        async with httpx.AsyncClient(
            timeout=timeout, limits=limits, trust_env=False, follow_redirects=False
        ) as client:

            async def one(i: int, prompt_i: int, max_tokens: int, warm: bool, start: float):
                prompt, ptok = prompts.get(prompt_i)
                rec = await _request(
                    client,
                    url,
                    _body(spec, prompt, max_tokens, self.level),
                    headers,
                    spec.timeout_s,
                    i,
                    start,
                    warm,
                    ptok,
                    secrets,
                )
                self.records.append(rec)
                if self.on_request is not None:
                    self.on_request(rec)
                return rec

            # 1. settle which optional fields the server accepts (1-token probe, auto only)
            if spec.force == "auto":
                for level in (0, 1, 2):
                    self.level = level
                    rec = await one(-1 - level, 0, 1, True, time.perf_counter())
                    if rec.ok or rec.status not in (400, 422):
                        break
                else:
                    self.level = 0
                sent = _body(spec, "", 1, self.level)
                full = _body(spec, "", 1, 0)
                self.dropped = tuple(k for k in FORCE_FIELDS if k not in sent)
                if "stream_options" in full and "stream_options" not in sent:
                    self.dropped += ("stream_options",)
                elif full.get("stream_options") != sent.get("stream_options"):
                    self.dropped += ("stream_options.continuous_usage_stats",)
            # 2. warm-up, one at a time
            t_warm = time.perf_counter()
            for i in range(spec.warmup):
                await one(i, i, spec.output_tokens, True, t_warm)
            # 3. measured requests: bounded concurrency, optional Poisson arrivals. At most
            # max_in_flight requests exist at a time without a rate; with one, arrival gaps are
            # cut at the timeout (see EndpointSpec.max_duration_s)
            sem = asyncio.Semaphore(limit)
            start = time.perf_counter()

            async def guarded(i: int, acquired: bool) -> None:
                if not acquired:
                    await sem.acquire()
                try:
                    await one(i, spec.warmup + i, spec.output_tokens, False, start)
                finally:
                    sem.release()

            tasks: set[asyncio.Task[None]] = set()
            gaps = (
                arrival_gaps(spec.requests - 1, spec.request_rate, spec.seed, spec.timeout_s)
                if spec.request_rate is not None
                else None
            )
            cut = 0
            next_t = start
            try:
                for i in range(spec.requests):
                    if gaps is not None and i > 0:
                        gap, was_cut = next(gaps)
                        cut += was_cut
                        next_t += gap
                        delay = next_t - time.perf_counter()
                        if delay > 0:
                            await asyncio.sleep(delay)
                        acquired = False
                    else:
                        await sem.acquire()
                        acquired = True
                    t = asyncio.ensure_future(guarded(i, acquired))
                    tasks.add(t)
                    t.add_done_callback(tasks.discard)
                while tasks:
                    await asyncio.gather(*list(tasks))
            finally:
                for t in list(tasks):
                    t.cancel()
                self.duration_s = time.perf_counter() - start
                if cut:
                    self.warnings.append(
                        f"{cut} of {spec.requests - 1} arrival gaps were longer than --timeout "
                        f"({spec.timeout_s:g} s) and were cut to it"
                    )

    def result(self) -> EndpointResult:
        """The result of what has finished so far (after an interruption: a partial result)."""
        records = tuple(
            r.recount(self.tokenizer)
            for r in sorted(
                self.records, key=lambda r: (not r.warmup, r.index if not r.warmup else 0)
            )
        )
        sent = _body(self.spec, "", 1, self.level)
        return EndpointResult(
            spec=self.spec,
            records=records,
            summary=summarize(records, self.duration_s, self.spec.slo, self.spec.output_tokens),
            started_at=self.started_at,
            sent_fields=tuple(k for k in sent if k not in ("prompt", "messages")),
            dropped_fields=self.dropped,
            interrupted=self.interrupted,
            interrupt_signal=self.interrupt_signal if self.interrupted else None,
            warnings=tuple(self.warnings),
        )

    def run(self) -> EndpointResult:
        """Run to the end (blocking). Interrupted (Ctrl-C; SIGTERM/SIGHUP under a
        :class:`~streambench.errors.SignalPolicy`): a partial result with ``interrupted=True``."""
        import asyncio
        import signal

        try:
            return asyncio.run(self.arun())
        except KeyboardInterrupt as exc:
            self.interrupted = True
            if self.interrupt_signal is None:
                self.interrupt_signal = getattr(exc, "signum", int(signal.SIGINT))
            return self.result()


def run_endpoint(
    spec: EndpointSpec,
    on_request: Callable[[RequestRecord], None] | None = None,
    tokenizer: Any = None,
) -> EndpointResult:
    """Benchmark ``spec`` and return its :class:`EndpointResult` (blocking)."""
    return EndpointBenchmark(spec, on_request=on_request, tokenizer=tokenizer).run()


# --------------------------------------------------------------------------- text output
def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1e3:.2f}"


def format_summary(result: EndpointResult) -> str:
    """A plain-text report: one line per metric (ms), throughput, goodput and failures."""
    s = result.summary
    spec = result.spec
    lines = [
        f"endpoint {_public_url(request_url(spec.url, spec.chat))}  model {spec.model}",
        f"requests {s.requests} (ok {s.ok}, failed {s.failed})  in/out {spec.prompt_tokens}/"
        f"{spec.output_tokens} tokens  concurrency {spec.max_in_flight}"
        + (f"  rate {spec.request_rate:g}/s" if spec.request_rate else ""),
        f"{'metric (ms)':<12}{'mean':>10}{'median':>10}{'p90':>10}{'p99':>10}{'stdev':>10}{'n':>8}",
    ]
    for name, st in (("TTFT", s.ttft_s), ("TPOT", s.tpot_s), ("ITL", s.itl_s), ("E2E", s.e2e_s)):
        if st is None:
            lines.append(f"{name:<12}{'-':>10}")
            continue
        lines.append(
            f"{name:<12}{_ms(st.mean):>10}{_ms(st.median):>10}{_ms(st.p90):>10}"
            f"{_ms(st.p99):>10}{_ms(st.stdev):>10}{st.n:>8}"
        )
    lines.append(
        f"throughput {s.requests_per_s:.3f} requests/s, {s.output_tokens_per_s:.1f} output "
        f"tokens/s over {s.duration_s:.2f} s ({s.total_output_tokens} tokens)"
    )
    if s.slo_attained is not None:
        slo = ",".join(f"{k}={v * 1e3:g}ms" for k, v in s.slo.items())
        lines.append(
            f"goodput ({slo}) {s.goodput_requests_per_s:.3f} requests/s, "
            f"{s.slo_attained:.1%} of requests within SLO"
        )
    if s.token_count:
        lines.append(
            "tokens counted by " + ", ".join(f"{k} ({v})" for k, v in s.token_count.items())
        )
    if result.dropped_fields:
        lines.append(
            "server rejected " + ", ".join(result.dropped_fields) + ": output length not forced"
            if "ignore_eos" in result.dropped_fields
            else "server rejected " + ", ".join(result.dropped_fields)
        )
    if s.short_outputs:
        lines.append(
            f"{s.short_outputs} request(s) returned fewer than {spec.output_tokens} tokens"
        )
    if s.failed:
        lines.append("failures: " + ", ".join(f"{k} x{v}" for k, v in s.errors.items()))
        lines.extend(f"  {e}" for e in s.first_errors)
    if result.interrupted:
        lines.append("interrupted: partial results")
    return "\n".join(lines)


# --------------------------------------------------------------------------- results document
#: CSV columns of an endpoint configuration, after the columns shared with ``streambench run``
CSV_COLUMNS = (
    "requests",
    "failed requests",
    "concurrency",
    "request rate (/s)",
    "TTFT median (ms)",
    "TTFT p99 (ms)",
    "TPOT mean (ms/token)",
    "TPOT median (ms/token)",
    "TPOT p90 (ms/token)",
    "TPOT p99 (ms/token)",
    "ITL mean (ms)",
    "ITL median (ms)",
    "ITL p90 (ms)",
    "ITL p99 (ms)",
    "E2E mean (ms)",
    "E2E median (ms)",
    "E2E p90 (ms)",
    "E2E p99 (ms)",
    "requests/s",
    "output tokens/s",
    "goodput (requests/s)",
    "SLO attained",
    "token count",
)


def configuration_id(spec: EndpointSpec) -> tuple[str, str]:
    """(id, label) of one endpoint configuration."""
    rate = f" rate{spec.request_rate:g}" if spec.request_rate is not None else ""
    chat = " chat" if spec.chat else ""
    io = f"{spec.prompt_tokens}-{spec.output_tokens}"
    cid = (
        f"{spec.model}|{io}|bs1|c{spec.max_in_flight}"
        + rate.replace(" ", "|")
        + chat.replace(" ", "|")
    )
    return cid, f"{spec.model} {io} c{spec.max_in_flight}{rate}{chat}"


def to_entry(result: EndpointResult) -> dict[str, Any]:
    """A configuration entry of the shared results document (``docs/results-schema.md``).

    Shared with ``streambench run`` where the numbers mean the same: ``trials`` holds one run
    object per successful measured request (``first_token_s`` = TTFT; ``token_latencies_s`` =
    TTFT then the inter-token latencies; ``step_*`` = the raw chunks), and ``aggregates`` holds
    :func:`streambench.stats.aggregate` over them. ``aggregates.endpoint`` adds TTFT/TPOT/ITL/E2E
    statistics, throughput, goodput and failures; ``requests`` lists every request (warm-up and
    probe included), failed ones with their error.
    """
    from .stats import aggregate

    spec, s = result.spec, result.summary
    cid, label = configuration_id(spec)
    runs = result.run_results(device="endpoint")
    warm = [
        r.to_run_result("endpoint") for r in result.records if r.warmup and r.ok and r.index >= 0
    ]
    aggregates: dict[str, Any] | None = None
    if runs:
        aggregates = aggregate(runs).to_dict()
        aggregates["pre_prompt_s"] = None
        aggregates["memory_kind"] = None
        aggregates["endpoint"] = _finite(s.to_dict())
    if result.interrupted:
        status = "interrupted"
    else:
        status = "ok" if s.ok else "failed"
    error = None
    if s.failed:
        error = f"{s.failed} of {s.requests} requests failed: " + "; ".join(s.first_errors)
    elif result.interrupted:
        how = signal_name(result.interrupt_signal) if result.interrupt_signal else "Ctrl-C"
        error = f"interrupted ({how}) before all requests finished"

    def ms(st: Stats | None, stat: str) -> str:
        value = getattr(st, stat) if st is not None else None
        return "" if value is None else f"{value * 1e3:.3f}"

    def num(value: float | None, digits: int) -> str:
        return "" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"

    csv_extra = dict(
        zip(
            CSV_COLUMNS,
            [
                s.requests,
                s.failed,
                spec.max_in_flight,
                "" if spec.request_rate is None else f"{spec.request_rate:g}",
                ms(s.ttft_s, "median"),
                ms(s.ttft_s, "p99"),
                ms(s.tpot_s, "mean"),
                ms(s.tpot_s, "median"),
                ms(s.tpot_s, "p90"),
                ms(s.tpot_s, "p99"),
                ms(s.itl_s, "mean"),
                ms(s.itl_s, "median"),
                ms(s.itl_s, "p90"),
                ms(s.itl_s, "p99"),
                ms(s.e2e_s, "mean"),
                ms(s.e2e_s, "median"),
                ms(s.e2e_s, "p90"),
                ms(s.e2e_s, "p99"),
                num(s.requests_per_s, 3),
                num(s.output_tokens_per_s, 1),
                num(s.goodput_requests_per_s, 3),
                num(s.slo_attained, 3),
                ",".join(sorted(s.token_count)),
            ],
        )
    )
    return {
        "id": cid,
        "label": label,
        "config": {
            "model": spec.model,
            "input_tokens": spec.prompt_tokens,
            "output_tokens": spec.output_tokens,
            "batch_size": 1,
            "num_beams": 1,
            "low_bit": None,
            "dtype": None,
            "device": "endpoint",
            "warmup": spec.warmup,
            "trials": spec.requests,
            "concurrency": spec.max_in_flight,
            "request_rate": spec.request_rate,
            "chat": spec.chat,
            "endpoint": _public_url(request_url(spec.url, spec.chat)),
            "sent_fields": list(result.sent_fields),
            "dropped_fields": list(result.dropped_fields),
            "extra_body": _scrub_json(spec.extra_body, spec.secrets()),
            "slo_s": dict(spec.slo),
        },
        "status": status,
        "error": error,
        "actual_input_tokens": _median_int(s.prompt_tokens),
        "actual_output_tokens": _median_int(s.output_tokens),
        "encoder_decoder": False,
        "model_loading_time_s": None,
        "started_at": result.started_at,
        "duration_s": s.duration_s,
        "aggregates": aggregates,
        "warmup_runs": [r.to_dict(per_token=False) for r in warm],
        "trials": [_finite(r.to_dict()) for r in runs],
        "requests": [_finite(r.to_dict(per_token=False)) for r in result.records],
        "warnings": list(result.warnings)
        + [f"{w} ({s.warnings.get(w.split(' ', 1)[0], 1)} request(s))" for w in s.first_warnings],
        "csv_extra": csv_extra,
    }


def _median_int(st: Stats | None) -> int | None:
    return None if st is None else round(st.median)


def environment(spec: EndpointSpec) -> dict[str, Any]:
    """The results document's ``environment``: this client's machine and versions, with
    ``device = "endpoint"`` and ``device_name`` = the URL (the server's own hardware is unknown
    to the client)."""
    from importlib import metadata

    from . import report

    extra: dict[str, Any] = {
        "device": "endpoint",
        "device_name": _public_url(spec.url),
        "endpoint": _public_url(spec.url),
    }
    for dist in ("httpx", "httpx-sse"):
        try:
            extra[dist.replace("-", "_")] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    env = report.environment(None, extra=extra)
    env["argv"] = scrub_argv(env.get("argv") or [], spec.secrets())
    return env


def scrub_argv(argv: Sequence[str], secrets: Iterable[str | None] = ()) -> list[str]:
    """``argv`` without secrets (results never hold them): the value of every credential-named
    option (``--api-key X``, ``--api-key=X``, ``--token X``...; not ``--api-key-env``, whose value
    is a variable's name) becomes ``***``, and every argument goes through :func:`scrub_text`
    (URL user info, query-string credentials, ``secrets`` wherever they appear).

    >>> scrub_argv(["endpoint", "http://u:pw@h/v1", "--api-key", "sk-1", "--api-key-env", "K"])
    ['endpoint', 'http://***@h/v1', '--api-key', '***', '--api-key-env', 'K']
    """
    secrets = tuple(secrets)
    out: list[str] = []
    hide = False
    for raw in argv:
        arg = str(raw)
        if hide:
            out.append("***")
            hide = False
            continue
        name, eq, _value = arg.partition("=")
        if arg.startswith("-") and _is_secret_name(name.lstrip("-")):
            if eq:
                out.append(f"{name}=***")
            else:
                out.append(arg)
                hide = True
            continue
        out.append(scrub_text(arg, secrets))
    return out


def endpoint_table(entry: dict[str, Any]) -> Any:
    """A rich renderable of one endpoint configuration: TTFT, TPOT, ITL and E2E (mean, median,
    p90, p99, stdev in ms), then throughput, goodput, token counting and failures."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from . import report

    cfg = entry.get("config", {})
    ep = (entry.get("aggregates") or {}).get("endpoint") or {}
    reqs = entry.get("requests") or []
    measured = [r for r in reqs if not r.get("warmup")]
    ok = sum(1 for r in measured if r.get("ok"))
    header = Text(
        f"{entry.get('label')}  ·  {ok}/{len(measured)} requests ok after "
        f"{cfg.get('warmup')} warm-up  ·  {cfg.get('endpoint')}",
        style="bold",
    )
    parts: list[Any] = [header]
    if ep:
        table = Table(min_width=60)
        table.add_column("metric", style="bold")
        for name in ("mean", "median", "p90", "p99", "stdev", "n"):
            table.add_column(name, justify="right")
        for name, key in (
            ("TTFT (ms)", "ttft_s"),
            ("TPOT (ms/token)", "tpot_s"),
            ("ITL (ms)", "itl_s"),
            ("E2E (ms)", "e2e_s"),
        ):
            st = ep.get(key)
            if not st:
                table.add_row(name, *["-"] * 6)
                continue
            table.add_row(
                name,
                *(f"{st[k] * 1e3:.2f}" for k in ("mean", "median", "p90", "p99", "stdev")),
                str(st["n"]),
            )
        parts.append(table)
        line = (
            f"{ep.get('requests_per_s') or 0:.3f} requests/s  ·  "
            f"{ep.get('output_tokens_per_s') or 0:.1f} output tokens/s  ·  "
            f"actual in/out {report.actual_tokens(entry, '/') or 'n/a'} tokens  ·  counted by "
            + ", ".join(f"{k} ({v})" for k, v in (ep.get("token_count") or {}).items())
        )
        parts.append(Text(line, style="dim"))
        if ep.get("slo_attained") is not None:
            slo = ",".join(f"{k}={v * 1e3:g}ms" for k, v in (ep.get("slo") or {}).items())
            parts.append(
                Text(
                    f"goodput ({slo}): {ep.get('goodput_requests_per_s') or 0:.3f} requests/s, "
                    f"{ep['slo_attained']:.1%} of requests within SLO"
                )
            )
        if ep.get("short_outputs"):
            parts.append(
                Text(
                    f"{ep['short_outputs']} request(s) returned fewer than "
                    f"{cfg.get('output_tokens')} tokens",
                    style="yellow",
                )
            )
    dropped = cfg.get("dropped_fields") or []
    if dropped:
        note = "server refused " + ", ".join(dropped) + " (dropped)"
        if "ignore_eos" in dropped:
            note += (
                ": the output length is forced only by --extra-body options, if any; see the "
                "actual tokens"
                if cfg.get("extra_body")
                else ": output length not forced (server-specific options: --extra-body)"
            )
        parts.append(Text(note, style="yellow"))
    for warning in entry.get("warnings") or []:
        parts.append(Text(f"warning: {warning}", style="yellow"))
    if entry.get("error"):
        parts.append(Text(str(entry["error"]), style="red"))
    parts.append(Text(""))
    return Group(*parts)


# --------------------------------------------------------------------------- command line
def add_arguments(parser: Any) -> None:
    """Add the ``endpoint`` options to an ``argparse`` parser (``streambench endpoint`` and
    ``python -m streambench.endpoint``)."""
    parser.add_argument(
        "url", metavar="URL", help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1"
    )
    parser.add_argument("--model", required=True, help="model name sent in each request")
    parser.add_argument(
        "--chat", action="store_true", help="stream /chat/completions (default /completions)"
    )
    parser.add_argument(
        "--in-out",
        default="32-32",
        metavar="IN-OUT[,...]",
        help="prompt tokens-forced output tokens pairs, e.g. 32-32,512-128 (default 32-32)",
    )
    parser.add_argument(
        "--requests", type=int, default=10, metavar="N", help="measured requests (default 10)"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=1,
        metavar="N",
        help="warm-up requests, sent one at a time, not measured (default 1)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        metavar="N",
        help="most requests in flight (default 1; 64 with --request-rate)",
    )
    parser.add_argument(
        "--request-rate",
        type=float,
        default=None,
        metavar="R",
        help="Poisson arrivals at R requests/s (seeded); default: as fast as --concurrency allows",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of prompts and arrivals (default 0)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds per request, connect to last byte (default 60)",
    )
    parser.add_argument(
        "--api-key",
        default=None,
        help=f"bearer token; default: the environment variable ${DEFAULT_API_KEY_ENV} "
        "(prefer it: a key on the command line is visible to other users)",
    )
    parser.add_argument(
        "--api-key-env",
        default=None,
        metavar="VAR",
        help=f"environment variable holding the key (default {DEFAULT_API_KEY_ENV}, used when "
        "set; a variable named here must be set and not empty)",
    )
    parser.add_argument(
        "--tokenizer",
        default=None,
        metavar="DIR",
        help="local tokenizer directory: exact prompt lengths and per-chunk token counts",
    )
    parser.add_argument(
        "--force-output",
        choices=("auto", "on", "off"),
        default="auto",
        help="send ignore_eos and min_tokens to force the output length; auto (default) drops "
        "them when the server refuses them",
    )
    parser.add_argument(
        "--extra-body",
        default=None,
        metavar="JSON",
        help="JSON object merged into every request (server-specific options)",
    )
    parser.add_argument(
        "--prompt", default=None, help="send this text instead of generated prompts"
    )
    parser.add_argument(
        "--slo",
        default=None,
        metavar="KEY=TIME,...",
        help="goodput thresholds: ttft, tpot, itl, e2e, e.g. ttft=200ms,tpot=50ms",
    )
    parser.add_argument(
        "-o",
        "--output",
        action="append",
        metavar="FILE",
        help="write results; format by extension: .csv .json .jsonl .md (repeatable)",
    )
    parser.add_argument("--plot", metavar="FILE.png", help="plot per-token latency")
    parser.add_argument("-v", "--verbose", action="store_true", help="print one line per request")


def specs_from_args(args: Any) -> list[EndpointSpec]:
    """One validated :class:`EndpointSpec` per ``--in-out`` pair (:class:`EndpointError`, one
    line naming the option, for anything out of bounds)."""
    from .sweep import parse_in_out

    extra: dict[str, Any] = {}
    if args.extra_body:

        def constant(name: str) -> Any:
            raise ValueError(f"{name} is not a number in strict JSON")

        try:
            extra = json.loads(args.extra_body, parse_constant=constant)
        except (ValueError, RecursionError) as exc:
            raise EndpointError(f"--extra-body is not JSON: {scrub_text(str(exc))}") from None
        if not isinstance(extra, dict):
            raise EndpointError("--extra-body must be a JSON object, e.g. '{\"top_k\": 1}'")
    slo = parse_slo(args.slo)
    api_key = args.api_key
    key_env = getattr(args, "api_key_env", None)
    if api_key is not None and not api_key.strip():
        raise EndpointError("--api-key is empty: give the key, or drop --api-key")
    if api_key is None and key_env is not None:
        if not key_env or "=" in key_env or "\0" in key_env:
            raise EndpointError(f"--api-key-env {key_env!r}: not an environment variable name")
        value = os.environ.get(key_env)
        if value is None or not value.strip():
            state = "not set" if value is None else "empty"
            raise EndpointError(
                f"--api-key-env {key_env}: the environment variable ${key_env} is {state}; "
                f"export {key_env}=<key>, or drop --api-key-env to send no key"
            )
    pairs = parse_in_out(args.in_out)
    if len(pairs) > MAX_IN_OUT_PAIRS:
        raise EndpointError(f"--in-out: {len(pairs)} pairs; at most {MAX_IN_OUT_PAIRS}")
    for name in ("requests", "warmup", "concurrency", "timeout", "request_rate"):
        value = getattr(args, name, None)
        if isinstance(value, float) and not math.isfinite(value):
            raise EndpointError(f"--{name.replace('_', '-')} {value}: expected a finite number")
    return [
        EndpointSpec(
            url=args.url,
            model=args.model,
            chat=args.chat,
            prompt_tokens=n_in,
            output_tokens=n_out,
            requests=args.requests,
            warmup=args.warmup,
            concurrency=args.concurrency,
            request_rate=args.request_rate,
            timeout_s=args.timeout,
            seed=args.seed,
            force=args.force_output,
            tokenizer=args.tokenizer,
            extra_body=extra,
            slo=slo,
            api_key=api_key,
            api_key_env=key_env or DEFAULT_API_KEY_ENV,
            prompt=args.prompt,
        ).validate()
        for n_in, n_out in pairs
    ]


def cmd_endpoint(args: Any) -> int:
    """``streambench endpoint``: benchmark every ``--in-out`` pair against URL, print a table per
    pair, write ``--output`` files after each (atomically) and ``--plot`` at the end.

    Every input is checked before anything is sent: options (bounds), the URL, the key variable,
    the ``--output`` and ``--plot`` targets (:func:`streambench.outputs.check_output_targets`).
    An existing results file is replaced only once there is something to write.

    Exit codes: 0 every measured request succeeded; 1 some failed, or an output could not be
    written (the failures are counted and reported, the results kept); 2 bad input; 128 + the
    signal when interrupted (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP; finished requests written,
    ``"interrupted": true``). Runs under the :class:`~streambench.errors.SignalPolicy` in force,
    or installs one."""
    with _signal_policy():
        return _cmd_endpoint(args)


def _cmd_endpoint(args: Any) -> int:
    import signal

    from rich.console import Console

    from . import report
    from .outputs import check_output_targets

    specs = specs_from_args(args)
    outputs = [str(o) for o in (args.output or [])]
    protected = [("tokenizer", specs[0].tokenizer)] if specs[0].tokenizer else []
    check_output_targets(
        outputs, option="--output", formats=tuple(report.OUTPUT_FORMATS), protected=protected
    )
    if args.plot:
        check_output_targets(
            [str(args.plot)], option="--plot", formats=(".png", ".svg", ".pdf"), protected=protected
        )
    tokenizer = load_tokenizer(specs[0].tokenizer)
    secrets = specs[0].secrets()
    out = Console(highlight=False)
    err = Console(stderr=True)
    settings = specs[0].to_dict()
    for key in ("prompt_tokens", "output_tokens"):
        settings.pop(key)
    settings["in_out"] = [f"{s.prompt_tokens}-{s.output_tokens}" for s in specs]
    doc = report.new_document("endpoint", environment(specs[0]), settings)
    bound = sum(spec.max_duration_s for spec in specs)
    out.print(
        f"[bold]streambench endpoint[/bold]: {len(specs)} configuration(s) x "
        f"({specs[0].warmup} warm-up + {specs[0].requests} requests) against "
        f"{settings['endpoint']}, concurrency {specs[0].max_in_flight}"
        + (f", {specs[0].request_rate:g} requests/s" if specs[0].request_rate else "")
        + f"; at most {bound:g} s",
        markup=True,
    )
    progress = report.progress_bar(err)
    per_config = specs[0].warmup + specs[0].requests
    task = progress.add_task("requests", total=len(specs) * per_config)

    def on_request(rec: RequestRecord) -> None:
        # Runs inside the event loop while other requests stream: keep it cheap (no printing;
        # --verbose lines are printed after each configuration, with the final token counts).
        if rec.index >= 0:
            progress.advance(task)

    write_failed: list[str] = []

    def save() -> None:
        """Write every output, each atomically; only when there is something to write."""
        if not outputs or not doc["configurations"]:
            return
        for path in outputs:
            try:
                report.write_outputs([path], doc)
            except OSError as exc:
                message = f"cannot write --output {path}: {exc.strerror or _describe(exc)}"
                if message not in write_failed:
                    write_failed.append(message)
                    print(f"streambench: error: {scrub_text(message, secrets)}", file=sys.stderr)

    def add(result: EndpointResult) -> None:
        """Record a finished (or interrupted) configuration; an interrupted one without any
        finished measured request adds nothing."""
        nonlocal failed
        if result.interrupted:
            doc["interrupted"] = True
            if not any(not r.warmup for r in result.records):
                return
        entry = to_entry(result)
        doc["configurations"].append(entry)
        failed += result.summary.failed
        if args.verbose:
            for rec in result.records:
                out.print(_request_line(rec), markup=False, highlight=False)
        out.print(endpoint_table(entry))

    failed = 0
    signum: int | None = None
    bench: EndpointBenchmark | None = None
    added = False
    try:
        with progress:
            for spec in specs:
                progress.update(task, description=f"{spec.prompt_tokens}-{spec.output_tokens}")
                bench, added = None, False
                bench = EndpointBenchmark(spec, on_request=on_request, tokenizer=tokenizer)
                result = bench.run()
                added = True
                add(result)
                save()
                if result.interrupted:
                    signum = result.interrupt_signal or int(signal.SIGINT)
                    break
    except KeyboardInterrupt as exc:  # a signal outside a run (between runs, while writing)
        signum = getattr(exc, "signum", int(signal.SIGINT))
        doc["interrupted"] = True
        if bench is not None and not added:
            bench.interrupted, bench.interrupt_signal = True, signum
            add(bench.result())
        save()
    if signum is not None or doc["interrupted"]:
        signum = signum or int(signal.SIGINT)
        written = outputs and doc["configurations"] and not write_failed
        if written:
            where = f": finished requests kept in {', '.join(outputs)}"
        elif outputs and not doc["configurations"]:
            where = " before any request finished: nothing written"
        else:
            where = ": finished requests kept" if not outputs else ""
        print(f"streambench: error: interrupted ({signal_name(signum)}){where}", file=sys.stderr)
        return exit_code_for_signal(signum)
    if args.plot:
        try:
            report.plot_document(doc, args.plot)
            out.print(f"plot written to {args.plot}")
        except (RuntimeError, ValueError, OSError) as exc:
            reason = scrub_text(_describe(exc, with_type=False), secrets)
            print(f"streambench: error: --plot {args.plot}: {reason}", file=sys.stderr)
            failed += 1
    if outputs and not write_failed:
        out.print("results written to " + ", ".join(outputs))
    return EXIT_FAILED if failed or write_failed else EXIT_OK


def _request_line(rec: RequestRecord) -> str:
    what = "probe" if rec.index < 0 else ("warm-up" if rec.warmup else "request")
    if not rec.ok:
        return f"{what} {rec.index}: failed: {rec.error}"
    return (
        f"{what} {rec.index}: TTFT {_ms(rec.ttft_s)} ms, TPOT {_ms(rec.tpot_s)} ms, "
        f"E2E {_ms(rec.e2e_s)} ms, {rec.output_tokens} tokens in {len(rec.chunk_times_s)} "
        f"chunks ({rec.token_count})"
    )


def _parser() -> Any:
    """The ``python -m streambench.endpoint`` parser; its errors are one line (a
    :class:`UsageError`: exit 2), not a usage block."""
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> Any:  # type: ignore[override]
            raise UsageError(f"{message} (see --help)")

    parser = Parser(
        prog="python -m streambench.endpoint",
        description="Benchmark an OpenAI-compatible streaming endpoint (TTFT, TPOT, ITL, E2E).",
    )
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m streambench.endpoint URL --model NAME [options]``: the same as
    ``streambench endpoint``, with the same exit codes (0 ok, 1 failed, 2 bad input, 128 + signal
    when interrupted) and one-line errors (``streambench: error: ...``, no traceback, no
    secret). Runs under a :class:`~streambench.errors.SignalPolicy`."""
    argv = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
    with _signal_policy():
        try:
            return cmd_endpoint(_parser().parse_args(argv))
        except UsageError as exc:
            _error(str(exc), argv)
            return EXIT_USAGE
        except KeyboardInterrupt as exc:
            code = interrupted_exit_code(exc)
            _error(f"interrupted ({signal_name(code - 128)})", argv)
            return code
        except Exception as exc:  # noqa: BLE001 - one line, never a traceback
            _error(_describe(exc), argv)
            return EXIT_FAILED


def _error(message: str, argv: Sequence[str] = ()) -> None:
    """One line on stderr, with every secret masked (also those given in ``argv``)."""
    line = " ".join(scrub_text(message, _argv_secrets(argv)).split())
    print(f"streambench: error: {line}", file=sys.stderr)


def _argv_secrets(argv: Sequence[str]) -> list[str]:
    """Secret values given on a command line (what :func:`scrub_argv` hides, URL passwords) and
    the keys in the environment variables it names."""
    argv = [str(a) for a in argv]
    found: list[str] = [os.environ.get(DEFAULT_API_KEY_ENV, "")]
    for i, (raw, clean) in enumerate(zip(argv, scrub_argv(argv))):
        if clean == "***":
            found.append(raw)
        elif clean.endswith("=***") and not raw.endswith("=***"):
            found.append(raw.partition("=")[2])
        if raw == "--api-key-env" and i + 1 < len(argv):
            found.append(os.environ.get(argv[i + 1], ""))
        elif raw.startswith("--api-key-env="):
            found.append(os.environ.get(raw.partition("=")[2], ""))
        with contextlib.suppress(ValueError):
            password = urlsplit(raw).password
            if password:
                found.append(password)
    return [f for f in found if f]


def write_json(result: EndpointResult, path: str) -> None:
    """Write ``result.to_dict()`` (this module's own per-request format, not the shared results
    document) to ``path`` atomically."""
    from .report import atomic_write_text

    atomic_write_text(path, json.dumps(_finite(result.to_dict()), indent=1, allow_nan=False) + "\n")


def _finite(obj: Any) -> Any:
    """``obj`` with NaN/inf floats replaced by ``None`` (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
