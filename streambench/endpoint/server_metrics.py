"""The server's own metrics (``--server-metrics [URL]``): its Prometheus ``/metrics`` scraped every
:data:`SCRAPE_INTERVAL_S` while a load point's measured requests run, beside the client's timings.

- :func:`metrics_url`: the URL scraped (default: ``/metrics`` beside the API base, e.g.
  ``http://host:8000/v1`` -> ``http://host:8000/metrics``).
- :class:`Scraper`: a task in the client's event loop that only *fetches* (a bounded GET every
  0.5 s, the raw bytes and the client's time kept); the text is parsed after the point, so the
  parsing never delays the requests' chunks. A server without ``/metrics`` (an HTTP error, no
  connection, not Prometheus text): said once, the run goes on without it.
- :func:`summarize_scrapes`: the text parsed with ``prometheus-client``'s parser into time series
  of the known gauges and counters of vLLM, SGLang and TGI under one name each
  (:data:`KNOWN`), unknown gauges/counters kept by their own name (at most
  :data:`MAX_UNKNOWN`), and the point's summary (:class:`ServerMetrics`).

The text is the server's and is not trusted: at most :data:`MAX_SCRAPE_BYTES` per scrape and
:data:`MAX_STORED_BYTES` per point, lines that are not samples dropped before parsing, names
outside the Prometheus grammar (or longer than :data:`MAX_NAME`) dropped, values that are not
finite or out of their range (:data:`RANGES`) ignored. Times are the client's
``time.perf_counter()`` seconds since the point's measured phase began.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from .spec import EndpointError

if TYPE_CHECKING:
    import httpx

SCRAPE_INTERVAL_S = 0.5
#: one scrape (vLLM 0.32's text is ~50 KB on a 2-layer model, mostly histogram buckets)
MAX_SCRAPE_BYTES = 4 << 20
#: every scrape of one point together; scraping stops there (said in the summary)
MAX_STORED_BYTES = 64 << 20
MAX_NAME = 120
#: unknown gauges and counters kept by name, the first ones seen
MAX_UNKNOWN = 64

#: our name -> the metric's sample names on vLLM, SGLang and TGI (several vLLM versions)
KNOWN: dict[str, tuple[str, ...]] = {
    "running": ("vllm:num_requests_running", "sglang:num_running_reqs", "tgi_batch_current_size"),
    "waiting": ("vllm:num_requests_waiting", "sglang:num_queue_reqs", "tgi_queue_size"),
    "kv_cache_usage": (
        "vllm:kv_cache_usage_perc",
        "vllm:gpu_cache_usage_perc",
        "sglang:token_usage",
    ),
    "prefix_cache_queries": (
        "vllm:prefix_cache_queries_total",
        "vllm:gpu_prefix_cache_queries_total",
    ),
    "prefix_cache_hits": ("vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total"),
    "prefix_cache_hit_rate": ("sglang:cache_hit_rate",),
    "preemptions": ("vllm:num_preemptions_total",),
    "prompt_tokens": ("vllm:prompt_tokens_total", "sglang:prompt_tokens_total"),
    "generation_tokens": ("vllm:generation_tokens_total", "sglang:generation_tokens_total"),
}  # fmt: skip
_BY_SAMPLE = {sample: ours for ours, samples in KNOWN.items() for sample in samples}
#: plausible values: fractions stay in [0, 1], counts below 1e7 in flight, counters below 1e18
RANGES: dict[str, tuple[float, float]] = {
    "kv_cache_usage": (0.0, 1.0),
    "prefix_cache_hit_rate": (0.0, 1.0),
    "running": (0.0, 1e7),
    "waiting": (0.0, 1e7),
}
_ANY_RANGE = (-1e18, 1e18)
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
#: a sample line (name, optional labels, a value) or a TYPE/HELP comment; anything else is dropped
_LINE = re.compile(
    r"^(# (TYPE|HELP) [a-zA-Z_:][a-zA-Z0-9_:]* .*"
    r"|[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^{}\n]*\})? \S+( \S+)?)$"
)


def metrics_url(api_base: str, given: str | None) -> str | None:
    """The URL ``--server-metrics`` scrapes: ``given`` (``"auto"``: ``/metrics`` beside the API
    base, its ``/v1`` dropped); ``None`` without the option. An :class:`EndpointError` (one line)
    for a URL that is not http(s)."""
    if given is None:
        return None
    if given == "auto":
        parts = urlsplit(api_base.strip())
        path = parts.path.rstrip("/")
        if path.endswith("/v1"):
            path = path[: -len("/v1")]
        return urlunsplit((parts.scheme, parts.netloc, path + "/metrics", "", ""))
    parts = urlsplit(given.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EndpointError(
            f"--server-metrics {given[:200]!r}: expected an http:// or https:// URL of the "
            "server's Prometheus metrics, e.g. http://127.0.0.1:8000/metrics (or no value: "
            "/metrics beside the API base)"
        )
    return given.strip()


def same_origin(a: str, b: str) -> bool:
    """Whether two URLs have the same scheme, host and port (the API key goes only there)."""
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.hostname, pa.port) == (pb.scheme, pb.hostname, pb.port)


@dataclass
class MetricsMemo:
    """Shared by the load points of one run: once the server had no metrics, the later points
    neither scrape nor say it again."""

    unavailable: str | None = None


class Scraper:
    """Fetches ``url`` every :data:`SCRAPE_INTERVAL_S` until cancelled (:meth:`run`); keeps
    ``(seconds since origin, raw bytes)``. ``failure``: why it stopped (the first failure ends
    scraping for the point: a server without metrics is not asked 120 times a minute)."""

    def __init__(self, client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> None:
        self.client = client
        self.url = url
        self.headers = headers
        self.raw: list[tuple[float, bytes]] = []
        self.stored = 0
        self.failure: str | None = None
        self.truncated = False

    async def run(self, origin: float) -> None:
        import asyncio

        next_at = time.perf_counter()
        while self.failure is None and not self.truncated:
            await self.scrape(origin)
            next_at += SCRAPE_INTERVAL_S
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))

    async def scrape(self, origin: float) -> None:
        """One bounded GET; sets :attr:`failure` on an HTTP error, no connection or no text."""
        import httpx

        from .client import describe_error

        at = time.perf_counter() - origin
        try:
            async with self.client.stream("GET", self.url, headers=self.headers) as resp:
                if resp.status_code != 200:
                    self.failure = f"HTTP {resp.status_code}"
                    return
                got = b""
                async for raw in resp.aiter_raw():
                    got += raw
                    if len(got) > MAX_SCRAPE_BYTES:
                        self.failure = f"more than {MAX_SCRAPE_BYTES} bytes"
                        return
        except httpx.HTTPError as exc:
            self.failure = describe_error(exc)
            return
        if not self.raw and b"# TYPE" not in got and b"# HELP" not in got:
            self.failure = "not Prometheus text (no # TYPE or # HELP line)"
            return
        if self.stored + len(got) > MAX_STORED_BYTES:
            self.truncated = True
            return
        self.stored += len(got)
        self.raw.append((at, got))


@dataclass(frozen=True)
class ServerMetrics:
    """The server's metrics over one load point. ``series``: name -> one value per scrape (``None``
    where the server did not give it, or gave a value out of range), beside ``t_s`` (client
    seconds since the measured phase began); counters are as the server counts them (since its
    start). Summary: ``max_kv_cache_usage`` (fraction 0-1), ``mean_running``/``mean_waiting``
    (requests, mean over scrapes), ``max_running``/``max_waiting``, ``prefix_cache_hit_rate``
    (hits / queries counted during the point, vLLM; SGLang's own rate, mean), ``preemptions``
    (counted during the point). ``ignored``: values dropped as out of range or not finite."""

    url: str
    scrapes: int
    t_s: tuple[float, ...]
    series: dict[str, tuple[float | None, ...]]
    unknown: tuple[str, ...] = ()
    max_kv_cache_usage: float | None = None
    mean_running: float | None = None
    max_running: float | None = None
    mean_waiting: float | None = None
    max_waiting: float | None = None
    prefix_cache_hit_rate: float | None = None
    preemptions: float | None = None
    ignored: int = 0
    notes: tuple[str, ...] = field(default=())

    def summary(self) -> dict[str, Any]:
        keys = ("scrapes", "max_kv_cache_usage", "mean_running", "max_running", "mean_waiting")
        keys += ("max_waiting", "prefix_cache_hit_rate", "preemptions", "ignored")
        return {k: getattr(self, k) for k in keys}

    def to_dict(self) -> dict[str, Any]:
        """The entry's ``server_metrics``: ``url``, ``summary``, ``timeline`` (``t_s`` and
        ``series``), ``unknown`` (the names kept that streambench does not map), ``notes``."""
        series = {k: list(v) for k, v in self.series.items()}
        return {
            "url": self.url,
            "summary": self.summary(),
            "timeline": {"t_s": list(self.t_s), "series": series},
            "unknown": list(self.unknown),
            "notes": list(self.notes),
        }


def _valid(name: str, value: float) -> bool:
    lo, hi = RANGES.get(name, _ANY_RANGE)
    return math.isfinite(value) and lo <= value <= hi


def parse_text(raw: bytes, unknown: list[str]) -> tuple[dict[str, float], int]:
    """One scrape: ``(name -> value summed over label sets, values ignored)``. Known samples under
    :data:`KNOWN`'s names; gauges/counters not known under their own name while ``unknown`` (the
    names kept so far, extended here) has room; histograms and summaries skipped."""
    from prometheus_client.parser import text_string_to_metric_families

    text = raw.decode("utf-8", "replace")
    lines = [ln for ln in text.splitlines() if len(ln) <= 4096 and _LINE.match(ln)]
    values: dict[str, float] = {}
    ignored = 0
    try:
        families = list(text_string_to_metric_families("\n".join(lines) + "\n"))
    except (ValueError, TypeError, IndexError, KeyError):
        return {}, 1
    for family in families:
        if family.type not in ("gauge", "counter", "unknown"):
            continue
        for sample in family.samples:
            name = sample.name
            if len(name) > MAX_NAME or not _NAME.fullmatch(name) or name.endswith("_created"):
                continue
            ours = _BY_SAMPLE.get(name)
            if ours is None:
                if name not in unknown:
                    if len(unknown) >= MAX_UNKNOWN:
                        continue
                    unknown.append(name)
                ours = name
            value = float(sample.value)
            if not _valid(ours, value):
                ignored += 1
                continue
            if ours in RANGES and RANGES[ours][1] <= 1.0:  # a fraction per engine: the highest
                values[ours] = max(values.get(ours, 0.0), value)
            else:
                values[ours] = values.get(ours, 0.0) + value
    for name in list(values):
        if not _valid(name, values[name]):  # a sum over label sets out of range
            del values[name]
            ignored += 1
    return values, ignored


def summarize_scrapes(url: str, raw: Sequence[tuple[float, bytes]], notes: Sequence[str] = ()):
    """:class:`ServerMetrics` of one point's scrapes (``None`` without any)."""
    if not raw:
        return None
    unknown: list[str] = []
    parsed, ignored = [], 0
    for _at, text in raw:
        values, bad = parse_text(text, unknown)
        parsed.append(values)
        ignored += bad
    names = [n for n in KNOWN if any(n in p for p in parsed)] + list(unknown)
    series = {n: tuple(p.get(n) for p in parsed) for n in names}
    return ServerMetrics(
        url=url,
        scrapes=len(raw),
        t_s=tuple(round(at, 4) for at, _ in raw),
        series=series,
        unknown=tuple(unknown),
        max_kv_cache_usage=_max(series.get("kv_cache_usage")),
        mean_running=_mean(series.get("running")),
        max_running=_max(series.get("running")),
        mean_waiting=_mean(series.get("waiting")),
        max_waiting=_max(series.get("waiting")),
        prefix_cache_hit_rate=_hit_rate(series),
        preemptions=_increase(series.get("preemptions")),
        ignored=ignored,
        notes=tuple(notes),
    )


def _present(values: Sequence[float | None] | None) -> list[float]:
    return [v for v in values or () if v is not None]


def _max(values: Sequence[float | None] | None) -> float | None:
    got = _present(values)
    return max(got) if got else None


def _mean(values: Sequence[float | None] | None) -> float | None:
    got = _present(values)
    return sum(got) / len(got) if got else None


def _increase(values: Sequence[float | None] | None) -> float | None:
    """A counter's increase over the point (last - first scrape); ``None`` with fewer than two
    values or when it went down (the server restarted: not an increase we can tell)."""
    got = _present(values)
    if len(got) < 2 or got[-1] < got[0]:
        return None
    return got[-1] - got[0]


def _hit_rate(series: dict[str, tuple[float | None, ...]]) -> float | None:
    """Prefix-cache hits / queries (tokens) counted during the point; SGLang: its own rate's
    mean; ``None`` when nothing was queried."""
    queries = _increase(series.get("prefix_cache_queries"))
    hits = _increase(series.get("prefix_cache_hits"))
    if queries and hits is not None and 0 <= hits <= queries:
        return hits / queries
    return _mean(series.get("prefix_cache_hit_rate"))


class Scraping:
    """What :func:`scraping` leaves after a point: ``result`` (:class:`ServerMetrics` or
    ``None``) and ``warnings`` (the one line saying why the server was not scraped)."""

    def __init__(self) -> None:
        self.result: ServerMetrics | None = None
        self.warnings: list[str] = []


def _headers(spec: Any, url: str) -> dict[str, str]:
    """The scrape's headers: the API key and ``--header`` values only when the metrics URL has
    the API's origin (a different host never gets them)."""
    headers = {"Accept": "text/plain", "Accept-Encoding": "identity"}
    if same_origin(url, spec.url):
        key = spec._resolved_key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        headers.update(spec.transport.headers)
    return headers


@contextlib.asynccontextmanager
async def scraping(spec: Any, memo: MetricsMemo | None) -> AsyncIterator[Scraping]:
    """Scrape ``spec.server_metrics`` in the background for the time of the ``async with`` (one
    more scrape at its end, so the counters cover the whole point); parsed on exit. Nothing when
    the spec asks for no metrics or ``memo`` says the server has none."""
    import asyncio

    from .scrub import public_url, scrub_text

    out = Scraping()
    url = spec.server_metrics
    if url is None or (memo is not None and memo.unavailable):
        yield out
        return
    shown = public_url(url)
    try:
        import prometheus_client  # noqa: F401 - the parser, needed only here
    except ImportError:
        out.warnings.append(
            "server metrics: not scraped: needs prometheus-client (pip install prometheus-client)"
        )
        if memo is not None:
            memo.unavailable = out.warnings[0]
        yield out
        return
    import httpx

    timeout = httpx.Timeout(2.0)
    verify = spec.transport.verify()
    async with httpx.AsyncClient(
        timeout=timeout, trust_env=False, follow_redirects=False, verify=verify
    ) as client:
        scraper = Scraper(client, url, _headers(spec, url))
        origin = time.perf_counter()
        task = asyncio.create_task(scraper.run(origin))
        finished = False
        try:
            yield out
            finished = True
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if finished and scraper.failure is None and scraper.raw:
                await scraper.scrape(origin)
                scraper.failure = None  # a last scrape that failed loses nothing
    notes = ["scraping stopped: more than 64 MiB of metrics text"] if scraper.truncated else []
    if scraper.failure is not None and not scraper.raw:
        why = scrub_text(scraper.failure, spec.secrets())
        line = (
            f"server metrics: {shown}: {why}: not scraped (the server may have no Prometheus "
            "metrics there; give --server-metrics URL, or leave it out)"
        )
        out.warnings.append(line)
        if memo is not None:
            memo.unavailable = line
    elif scraper.failure is not None:
        notes.append(f"scraping stopped: {scrub_text(scraper.failure, spec.secrets())}")
    out.result = summarize_scrapes(shown, scraper.raw, notes)
