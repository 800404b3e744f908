"""What a run measured: :class:`EndpointSummary` (:func:`summarize`) and :class:`EndpointResult`."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..stats import Stats, describe
from .records import RequestRecord
from .spec import EndpointSpec

if TYPE_CHECKING:
    from ..timing import RunResult


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
    #: metric (``ttft_s``, ``tpot_s``, ``itl_s``, ``e2e_s``) -> ``{"p50": s, "p99.9": s, ...}``
    percentiles: dict[str, Any] = field(default_factory=dict)
    #: failed / measured requests (0.0 with none measured)
    error_rate: float = 0.0
    #: time to first *visible output* token (one per successful request that had one), only
    #: when some request's differs from its TTFT (reasoning streamed first, or tokens without
    #: text); ``reasoning_tokens``: per request, only when some request streamed reasoning
    ttfo_s: Stats | None = None
    reasoning_tokens: Stats | None = None

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
    percentiles: Sequence[float] = (),
) -> EndpointSummary:
    """:class:`EndpointSummary` of the measured (non-warm-up) records; ``percentiles`` (0-100)
    of every latency metric in :attr:`EndpointSummary.percentiles`."""
    from .load import percentile_table

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
        percentiles={
            key: percentile_table(values, tuple(percentiles))
            for key, values in _latencies(good).items()
        }
        if percentiles
        else {},
        error_rate=len(bad) / len(measured) if measured else 0.0,
        ttfo_s=describe(r.ttfo_s for r in good if r.ttfo_s is not None)
        if any(r.ttfo_s != r.ttft_s for r in good)
        else None,
        reasoning_tokens=describe(r.reasoning_tokens or 0 for r in good)
        if any(r.reasoning_tokens is not None for r in good)
        else None,
    )


def _latencies(good: Sequence[RequestRecord]) -> dict[str, list[float]]:
    return {
        "ttft_s": [r.ttft_s for r in good if r.ttft_s is not None],
        "tpot_s": [r.tpot_s for r in good if r.tpot_s is not None],
        "itl_s": [x for r in good for x in r.itl_s],
        "e2e_s": [r.e2e_s for r in good if r.e2e_s is not None],
    }


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
    #: the client's own lag (:meth:`streambench.endpoint.load.ClientLag.summary`)
    client: dict[str, Any] = field(default_factory=dict)
    #: why the point stopped before its end (``--max-error-rate``), else ``None``
    stopped_early: str | None = None
    #: the server's own metrics during the point (``--server-metrics``:
    #: :meth:`streambench.endpoint.server_metrics.ServerMetrics.to_dict`), else ``None``
    server_metrics: dict[str, Any] | None = None

    @property
    def measured(self) -> list[RequestRecord]:
        return [r for r in self.records if not r.warmup]

    def run_results(self, device: str | None = None) -> list[RunResult]:
        """Successful measured requests as :class:`~streambench.timing.RunResult` records."""
        dev = device or f"endpoint:{self.spec.model}"
        return [r.to_run_result(dev) for r in self.measured if r.ok]
