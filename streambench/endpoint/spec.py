"""What an endpoint benchmark sends: :class:`EndpointSpec`, its bounds and their checks.

Also the URL each request goes to (:func:`request_url`) and the parsing of durations and SLO
thresholds given on the command line (:func:`parse_duration`, :func:`parse_slo`; seconds).
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from ..errors import UsageError
from .load import LoadSettings
from .scrub import public_url, scrub_json, scrub_text
from .transport import Transport

#: Request fields that force the output length; dropped when the server rejects them (``auto``).
FORCE_FIELDS = ("ignore_eos", "min_tokens")
#: ``ttfo``: time to first visible output token (after any reasoning); a request without one
#: misses it
SLO_KEYS = ("ttft", "tpot", "itl", "e2e", "ttfo")
#: request fields streambench sets itself -> the option that sets them; ``--extra-body`` may not
#: set them (``temperature``, 0 by default and without an option of its own, it may)
OWNED_BODY = {
    "model": "use --model",
    "stream": "streambench always streams",
    "max_tokens": "use --in-out",
    "max_completion_tokens": "use --in-out",
    "prompt": "use --prompt, --prompts or --in-out",
    "messages": "use --prompt, --prompts or --in-out",
    "ignore_eos": "use --force-output",
    "min_tokens": "use --force-output",
    "stream_options": "streambench asks for usage itself; see --force-output",
}
DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"

# Bounds of the inputs (options) and of what a server may send. A value outside them is an error
# (options: exit 2, one line) or a failed request / ignored count (server input), never a stall.
MAX_REQUESTS = 1_000_000
MAX_WARMUP = 1_000
MAX_CONCURRENCY = 4_096
#: the most requests in flight with a request rate (``inf`` included) without --concurrency
RATE_CONCURRENCY = 64
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


class EndpointError(UsageError):
    """Bad endpoint benchmark input (URL, numbers, SLO, tokenizer); the message says what to do.
    A :class:`streambench.errors.UsageError` (a ``ValueError``): the CLI prints it as one line and
    exits with 2. Messages never hold a secret (URLs are shown scrubbed)."""


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
        trust_remote_code: let the tokenizer directory's own Python code run
            (``--trust-remote-code``; off by default: such a tokenizer is refused).
        extra_body: more JSON fields merged into every request (server-specific options).
        slo: goodput thresholds in seconds, keys among ``ttft``, ``tpot``, ``itl`` (every
            inter-token latency of the request), ``e2e``.
        api_key: bearer token; ``None`` reads the environment variable ``api_key_env``.
        prompt: use this text for every request instead of generated prompts.
        temperature: sampling temperature sent (``0`` = greedy where servers honour it).
        load: arrivals, ramp-up, duration, error-rate stop, percentiles
            (:class:`~streambench.endpoint.load.LoadSettings`).
        transport: extra headers (values are secrets) and TLS options
            (:class:`~streambench.endpoint.transport.Transport`).
        backend: the served backend that builds the requests and reads the streams
            (``--backend``; :mod:`streambench.endpoint.backends`, default ``openai``).
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
    trust_remote_code: bool = False
    extra_body: dict[str, Any] = field(default_factory=dict)
    slo: dict[str, float] = field(default_factory=dict)
    api_key: str | None = field(default=None, repr=False)
    api_key_env: str = DEFAULT_API_KEY_ENV
    prompt: str | None = None
    temperature: float | None = 0.0
    #: the user's prompts / drawn lengths / shared prefix (:mod:`streambench.workloads`)
    workload: Any = None
    #: the workload's requests (:class:`streambench.workloads.Request`), built before sending;
    #: request ``i`` of a prompt file sends prompt ``i`` (cycling), warm-ups the first ones
    workload_requests: tuple[Any, ...] = field(default=(), repr=False, compare=False)
    load: LoadSettings = field(default_factory=LoadSettings)
    transport: Transport = field(default_factory=Transport, repr=False)
    backend: str = "openai"
    #: ``--multi-turn``: the conversations each session plays turn by turn
    #: (:class:`~streambench.endpoint.sessions.Conversations`), ``None`` otherwise
    multi_turn: Any = field(default=None, repr=False)
    #: ``--trace``: the requests replayed at their trace times
    #: (:class:`~streambench.endpoint.traces.Trace`), ``None`` otherwise
    trace: Any = field(default=None, repr=False)
    #: the server's Prometheus metrics URL scraped during each load point (``--server-metrics``;
    #: :mod:`streambench.endpoint.server_metrics`), ``None``: not scraped
    server_metrics: str | None = None

    def served(self) -> Any:
        """The :class:`~streambench.endpoint.backends.ServedBackend` named by :attr:`backend`
        (loaded on first use; a ``UsageError`` naming ``--backend`` when unknown)."""
        from .backends import get_backend

        return get_backend(self.backend)

    def validate(self) -> EndpointSpec:
        """Check every input against its bound (the ``MAX_*`` constants); returns ``self`` or
        raises :class:`EndpointError` with one line that names the option and the allowed range.
        """
        self.served().request_url(self)  # an unknown backend, a bad URL: raises
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
        if not is_number(self.timeout_s) or not 0 < self.timeout_s <= MAX_TIMEOUT_S:
            raise EndpointError(
                f"--timeout {self.timeout_s}: expected seconds, a finite number greater than 0 "
                f"and at most {MAX_TIMEOUT_S:g}"
            )
        if self.request_rate is not None:
            low = 1.0 / self.timeout_s
            if not is_number(self.request_rate) or not low <= self.request_rate <= MAX_REQUEST_RATE:
                raise EndpointError(
                    f"--request-rate {self.request_rate}: expected requests/s from {low:.4g} "
                    f"(1 / --timeout: the mean gap between arrivals must not exceed the timeout; "
                    f"raise --timeout for slower rates) to {MAX_REQUEST_RATE:g}"
                )
        if self.temperature is not None and not is_number(self.temperature):
            raise EndpointError(f"temperature {self.temperature}: expected a finite number")
        if self.force not in ("auto", "on", "off"):
            raise EndpointError(f"--force-output must be auto, on or off, got {self.force!r}")
        check_extra_body(self.extra_body)
        bad = set(self.slo) - set(SLO_KEYS)
        if bad:
            raise EndpointError(f"unknown SLO key(s) {sorted(bad)}: use {', '.join(SLO_KEYS)}")
        for key, value in self.slo.items():
            if not is_number(value) or not 0 <= value <= MAX_TIMEOUT_S:
                raise EndpointError(
                    f"--slo {key}={value}: expected a finite time from 0 to {MAX_TIMEOUT_S:g} s"
                )
        self.load.validate(self.request_rate, self.timeout_s)
        if self.load.workers > self.max_in_flight:
            raise EndpointError(
                f"--workers {self.load.workers}: more than the {self.max_in_flight} request(s) in "
                "flight (--concurrency); every worker needs at least one: raise --concurrency or "
                "lower --workers"
            )
        self.transport.validate()
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
        return RATE_CONCURRENCY if self.request_rate is not None else 1

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
        if self.load.duration_s is not None:  # sending stops at the deadline
            setup = (self.max_probes + self.warmup + 1) * self.timeout_s
            return setup + self.load.ramp_up_s + self.load.duration_s
        if self.trace is not None:  # sent at the trace's times, each bounded by the timeout
            setup = (self.max_probes + self.warmup + 1) * self.timeout_s
            return setup + self.trace.span_s
        if self.request_rate is not None:
            measured = self.requests
        else:
            measured = -(-self.requests // self.max_in_flight)
        if self.multi_turn is not None:  # a session sends its turns one after another
            measured *= self.multi_turn.max_turns
        ramp = self.load.ramp_up_s + (self.timeout_s if self.load.ramp_up_s else 0.0)
        return (self.max_probes + self.warmup + measured) * self.timeout_s + ramp

    @property
    def expected_duration_s(self) -> float | None:
        """About how long the measured phase takes when that does not depend on the server:
        ``ramp_up_s + duration_s`` with ``--duration``, ``ramp_up_s + requests / request_rate``
        (the arrivals' span) with a rate; ``None`` when the server's speed sets it (no rate).
        The last requests' own latency and the warm-up come on top; :attr:`max_duration_s` is
        the bound."""
        if self.load.duration_s is not None:
            return self.load.ramp_up_s + self.load.duration_s
        if self.trace is not None:
            return self.trace.span_s
        if self.request_rate is not None and self.multi_turn is None:
            return self.load.ramp_up_s + self.requests / self.request_rate
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe configuration; the API key is never included (only whether one was set),
        URLs are scrubbed and credential-named ``extra_body`` fields masked."""
        import dataclasses

        # the replayed requests stay out of asdict's deep copy (a trace may hold a million)
        out = asdict(dataclasses.replace(self, multi_turn=None, trace=None, workload_requests=()))
        out.pop("api_key")
        out.pop("workload_requests")
        for key in ("multi_turn", "trace"):  # written only when used (older files compare)
            out.pop(key)
            if getattr(self, key) is not None:
                out[key] = getattr(self, key).to_dict()
        if not self.trust_remote_code:  # the default, not written (files before it resume)
            out.pop("trust_remote_code")
        if self.workload is None or not self.workload.active:
            out.pop("workload")
        out["load"] = self.load.to_dict()
        out["transport"] = self.transport.to_dict()  # header names only
        out["url"] = public_url(self.url)
        out["endpoint"] = public_url(self.served().request_url(self))
        if self.backend == "openai":  # the default, not written (files before it resume)
            out.pop("backend")
        else:
            out["backend"] = self.served().settings()
        out["extra_body"] = scrub_json(self.extra_body, self.secrets())
        if self.server_metrics is None:  # not written when off (files before it resume)
            out.pop("server_metrics")
        else:
            out["server_metrics"] = public_url(self.server_metrics)
        out["max_in_flight"] = self.max_in_flight
        out["api_key_set"] = bool(self._resolved_key())
        return out

    def _resolved_key(self) -> str | None:
        return self.api_key or os.environ.get(self.api_key_env) or None

    def secrets(self) -> tuple[str, ...]:
        """Every secret this spec sends: the API key, and the URL's user info (the password, and
        the ``user:password`` pair and its Basic-auth encoding). Masked in every output."""
        out = [self._resolved_key() or "", *self.transport.secrets()]
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


def check_extra_body(extra: Any) -> None:
    """``--extra-body``: a strict JSON object that sets none of the fields streambench sends
    itself (:data:`OWNED_BODY`) — an override would change what was measured while the
    configuration's identity (model, in-out, …) stays the same. Raises :class:`EndpointError`
    naming every such field and the option that sets it."""
    if not isinstance(extra, dict):
        raise EndpointError("--extra-body must be a JSON object, e.g. '{\"top_k\": 1}'")
    try:
        json.dumps(extra, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise EndpointError(f"--extra-body is not strict JSON: {exc}") from None
    owned = [key for key in extra if key in OWNED_BODY]
    if owned:
        uses = "; ".join(f"{key!r}: {OWNED_BODY[key]}" for key in owned)
        raise EndpointError(f"--extra-body may not set fields streambench sends itself ({uses})")


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite ``int`` or ``float`` (``bool`` is not a number here)."""
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
    shown = public_url(url)
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


_DURATION = re.compile(
    r"^\s*([0-9]{0,40}\.?[0-9]{1,40}(?:e[-+]?[0-9]{1,4})?)\s*(us|µs|ms|s|min|m|h)?\s*$", re.I
)
_UNITS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str, unit: str = "ms") -> float:
    """``"200ms"``, ``"0.2s"``, ``"150us"``, ``"2m"``, ``"1h"`` or a bare number of ``unit``
    (milliseconds for SLOs; seconds for ``--timeout``, ``--duration``, ``--ramp-up``) -> seconds.
    The one parser of every time option."""
    m = _DURATION.match(str(text))
    if not m:
        raise EndpointError(f"bad duration {text!r}: write e.g. 200ms, 0.2s, 2m or 150us")
    value = float(m.group(1))
    seconds = value * _UNITS[(m.group(2) or unit).lower()]
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
