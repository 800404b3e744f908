"""The endpoint benchmark in the shared results document and on the console.

:func:`to_entry` is the one place an endpoint configuration entry of the results document
(``docs/results-schema.md``) is built; :func:`environment` is the document's ``environment``;
:func:`endpoint_table` and :func:`request_line` are what the command prints. Times in the entry
are seconds; the console shows milliseconds.
"""

from __future__ import annotations

import math
import os
from typing import Any

from ..errors import signal_name
from ..stats import Stats
from .extra_lines import extra_csv, extra_lines
from .load import lag_warning
from .metrics import EndpointResult, EndpointSummary
from .records import RequestRecord
from .scrub import public_url, scrub_argv, scrub_json
from .spec import EndpointSpec
from .workload import identity, io_of, summary_of

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
    "arrivals",
    "duration limit (s)",
    "error rate",
    "stopped early",
    "client send lag p99 (ms)",
    "client loop lag p99 (ms)",
)
#: metrics with a CSV column per asked percentile beyond the fixed ones, e.g. "TTFT p99.9 (ms)"
PERCENTILE_COLUMNS = (
    ("TTFT", "ttft_s", "ms"),
    ("TPOT", "tpot_s", "ms/token"),
    ("ITL", "itl_s", "ms"),
    ("E2E", "e2e_s", "ms"),
)


def configuration_id(spec: EndpointSpec) -> tuple[str, str]:
    """(id, label) of one endpoint configuration."""
    rate = f" rate{spec.request_rate:g}" if spec.request_rate is not None else ""
    chat = " chat" if spec.chat else ""
    n_in, n_out = io_of(spec)
    io = f"{'data' if n_in is None else n_in}-{'from-data' if n_out is None else n_out}"
    load = spec.load.identity(spec.request_rate)
    further = "".join(f"|{k}={v}" for k, v in sorted({**identity(spec), **load}.items()))
    cid = (
        f"{spec.model}|{io}|bs1|c{spec.max_in_flight}"
        + rate.replace(" ", "|")
        + chat.replace(" ", "|")
        + further
    )
    tag = f" {spec.workload.tag()}" if spec.workload is not None and spec.workload.tag() else ""
    if spec.workload is not None and spec.workload.uses_file:
        io = spec.workload.tag() + (" multi-turn" if spec.multi_turn is not None else "")
        tag = ""
    if spec.trace is not None:
        io = f"trace {os.path.basename(spec.trace.path)} x{spec.trace.speedup:g}"
    shown = "".join(f" {k}={v}" for k, v in sorted(load.items())).replace("_s=", "=")
    return cid, f"{spec.model} {io}{tag} c{spec.max_in_flight}{rate}{chat}{shown}"


def to_entry(result: EndpointResult) -> dict[str, Any]:
    """A configuration entry of the shared results document (``docs/results-schema.md``).

    Shared with ``streambench run`` where the numbers mean the same: ``trials`` holds one run
    object per successful measured request (``first_token_s`` = TTFT; ``token_latencies_s`` =
    TTFT then the inter-token latencies; ``step_*`` = the raw chunks), and ``aggregates`` holds
    :func:`streambench.stats.aggregate` over them. ``aggregates.endpoint`` adds TTFT/TPOT/ITL/E2E
    statistics, throughput, goodput and failures; ``requests`` lists every request (warm-up and
    probe included), failed ones with their error.
    """
    from ..results.values import finite as _finite

    s = result.summary
    cid, label = configuration_id(result.spec)
    runs = result.run_results(device="endpoint")
    warm = [
        r.to_run_result("endpoint") for r in result.records if r.warmup and r.ok and r.index >= 0
    ]
    status, error = _status_and_error(result)
    aggregates = _aggregates(runs, s)
    if aggregates is not None:
        _request_intervals(aggregates["endpoint"], result.records)
    if aggregates is not None and result.spec.workload is not None:
        aggregates["workload"] = summary_of(result.spec, result.records)
    if aggregates is not None:
        aggregates.update(_replay_aggregates(result))
    return {
        "id": cid,
        "label": label,
        "config": _entry_config(result),
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
        "client": _finite(result.client) if result.client else None,
        "warnings": list(result.warnings)
        + [f"{w} ({s.warnings.get(w.split(' ', 1)[0], 1)} request(s))" for w in s.first_warnings]
        + [w for w in [lag_warning(result.client)] if w],
        "csv_extra": _csv_extra(result),
        **({"server_metrics": result.server_metrics} if result.server_metrics else {}),
    }


def length_note(entry: dict[str, Any], spec: EndpointSpec) -> str | None:
    """Without ``--tokenizer``: the line saying that a length target was not met exactly and how
    to fix it, or ``None``. The prompt is ``N`` common words, and the server's ``usage`` may count
    other than ``N`` tokens; an output counted one token per chunk (no ``usage``) is a guess.
    Only for generated prompts (not ``--prompt`` or a workload)."""
    if spec.tokenizer or spec.prompt is not None or spec.trace is not None:
        return None
    if spec.workload is not None and spec.workload.active:
        return None
    fix = "give --tokenizer DIR (the model's tokenizer folder) for exact lengths and counts"
    got_in = entry.get("actual_input_tokens")
    if got_in is not None and got_in != spec.prompt_tokens:
        return (
            f"prompts of {spec.prompt_tokens} words are {got_in} tokens for the server (the "
            f"median of its usage), not the {spec.prompt_tokens} of --in-out: {fix}"
        )
    ep = (entry.get("aggregates") or {}).get("endpoint") or {}
    got_out = entry.get("actual_output_tokens")
    if "chunks" in (ep.get("token_count") or {}) and got_out != spec.output_tokens:
        return (
            f"output tokens were counted one per streamed chunk (the server reports no usage): "
            f"{got_out} against the {spec.output_tokens} of --in-out; {fix}"
        )
    return None


def _aggregates(runs: list[Any], s: EndpointSummary) -> dict[str, Any] | None:
    """:func:`streambench.stats.aggregate` over the successful measured requests (as runs), plus
    ``endpoint``: the :class:`EndpointSummary`; ``None`` when no request succeeded."""
    from ..results.values import finite as _finite
    from ..stats import aggregate

    if not runs:
        return None
    aggregates = aggregate(runs).to_dict()
    aggregates["pre_prompt_s"] = None
    aggregates["memory_kind"] = None
    aggregates["endpoint"] = _finite(s.to_dict())
    return aggregates


def _request_intervals(summary: dict[str, Any], records: Any) -> None:
    """``ci95`` of the per-request medians of ``aggregates.endpoint`` (TTFT, TPOT, E2E: one value
    per successful measured request, the unit of replication here); ITL is pooled over tokens,
    so it gets no interval, and says why."""
    from ..results.trial_intervals import POOLED_NOTE, add_interval

    good = [r for r in records if not r.warmup and r.ok]
    for key in ("ttft_s", "tpot_s", "e2e_s"):
        values = [getattr(r, key) for r in good]
        add_interval(summary.get(key), [v for v in values if v is not None and math.isfinite(v)])
    if isinstance(summary.get("itl_s"), dict):
        summary["itl_s"].update(ci95=None, ci95_note=POOLED_NOTE)


def _status_and_error(result: EndpointResult) -> tuple[str, str | None]:
    """The entry's ``status`` (``ok``, ``failed``, ``interrupted``) and ``error`` line."""
    s = result.summary
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
    return status, error


def _entry_config(result: EndpointResult) -> dict[str, Any]:
    """The entry's ``config``: as for ``streambench run`` plus the endpoint's own settings."""
    spec = result.spec
    n_in, n_out = io_of(spec)
    out = {
        "model": spec.model,
        "input_tokens": n_in,
        "output_tokens": n_out,
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
        "endpoint": public_url(spec.served().request_url(spec)),
        "sent_fields": list(result.sent_fields),
        "dropped_fields": list(result.dropped_fields),
        "extra_body": scrub_json(spec.extra_body, spec.secrets()),
        "slo_s": dict(spec.slo),
        "load": spec.load.to_dict(),
        "transport": spec.transport.to_dict(),
    }
    if spec.backend != "openai":  # appended, and only when not the default (as in settings)
        out["backend"] = spec.backend
    # settings that change what is measured, when not their default (identity): the workload's
    # and the load's (arrivals, duration, workers ...)
    further = {**identity(spec), **spec.load.identity(spec.request_rate)}
    if further:
        out["further"] = further
    return out


def _csv_ms(st: Stats | None, stat: str) -> str:
    """Statistic ``stat`` of ``st`` (seconds) in milliseconds, 3 decimals; ``""`` when unknown."""
    value = getattr(st, stat) if st is not None else None
    return "" if value is None else f"{value * 1e3:.3f}"


def _csv_num(value: float | None, digits: int) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _csv_extra(result: EndpointResult) -> dict[str, Any]:
    """The entry's ``csv_extra``: one value per :data:`CSV_COLUMNS` column."""
    spec, s = result.spec, result.summary
    values = [
        s.requests,
        s.failed,
        spec.max_in_flight,
        "" if spec.request_rate is None else f"{spec.request_rate:g}",
        _csv_ms(s.ttft_s, "median"),
        _csv_ms(s.ttft_s, "p99"),
    ]
    for st in (s.tpot_s, s.itl_s, s.e2e_s):
        values += [_csv_ms(st, stat) for stat in ("mean", "median", "p90", "p99")]
    values += [
        _csv_num(s.requests_per_s, 3),
        _csv_num(s.output_tokens_per_s, 1),
        _csv_num(s.goodput_requests_per_s, 3),
        _csv_num(s.slo_attained, 3),
        ",".join(sorted(s.token_count)),
        spec.load.arrivals if spec.request_rate is not None else "",
        "" if spec.load.duration_s is None else f"{spec.load.duration_s:g}",
        _csv_num(s.error_rate, 3),
        "yes" if result.stopped_early else "",
        _csv_ms(_Lag(result.client.get("send_lag_s")), "p99"),
        _csv_ms(_Lag(result.client.get("timer_lag_s")), "p99"),
    ]
    out = dict(zip(CSV_COLUMNS, values))
    ep = {"ttfo_s": _as_dict(s.ttfo_s), "reasoning_tokens": _as_dict(s.reasoning_tokens)}
    out.update(extra_csv(ep, result.server_metrics))
    for name, key, unit in PERCENTILE_COLUMNS:  # the asked percentiles not in a fixed column
        for q, value in ((s.percentiles or {}).get(key) or {}).items():
            column = f"{name} {q} ({unit})"
            if column not in out:
                out[column] = f"{value * 1e3:.3f}"
    return out


def _as_dict(st: Stats | None) -> dict[str, Any] | None:
    return None if st is None else st.to_dict()


class _Lag:
    """A ``p99`` read from a stats dict (``None``-safe), for :func:`_csv_ms`."""

    def __init__(self, stats: dict[str, Any] | None) -> None:
        self.p99 = (stats or {}).get("p99")


def _median_int(st: Stats | None) -> int | None:
    return None if st is None else round(st.median)


def environment(spec: EndpointSpec) -> dict[str, Any]:
    """The results document's ``environment``: this client's machine and versions, with
    ``device = "endpoint"`` and ``device_name`` = the URL (the server's own hardware is unknown
    to the client)."""
    from importlib import metadata

    from ..results.environment import environment as host_environment

    extra: dict[str, Any] = {
        "device": "endpoint",
        "device_name": public_url(spec.url),
        "endpoint": public_url(spec.url),
    }
    for dist in ("httpx", "httpx-sse"):
        try:
            extra[dist.replace("-", "_")] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    env = host_environment(None, extra=extra)
    env["argv"] = scrub_argv(env.get("argv") or [], spec.secrets())
    return env


def endpoint_table(entry: dict[str, Any]) -> Any:
    """A rich renderable of one endpoint configuration: TTFT, TPOT, ITL and E2E (mean, median,
    p90, p99, stdev in ms), then throughput, goodput, token counting and failures."""
    from rich.console import Group
    from rich.text import Text

    from ..terminal import inert

    cfg = entry.get("config", {})
    ep = (entry.get("aggregates") or {}).get("endpoint") or {}
    reqs = entry.get("requests") or []
    measured = [r for r in reqs if not r.get("warmup")]
    ok = sum(1 for r in measured if r.get("ok"))
    header = Text(
        inert(
            f"{entry.get('label')}  ·  {ok}/{len(measured)} requests ok after "
            f"{cfg.get('warmup')} warm-up  ·  {cfg.get('endpoint')}"
        ),
        style="bold",
    )
    parts: list[Any] = [header]
    if ep:
        parts.append(_metrics_table(ep))
        parts.extend(_throughput_lines(entry, cfg, ep))
        parts.extend(_replay_parts(entry.get("aggregates") or {}))
    if isinstance(entry.get("quality"), dict):  # --quality: measured after the timed requests
        from ..results.report.quality_text import quality_lines
        from ..results.schema import as_configuration

        parts.extend(Text(line) for line in quality_lines([as_configuration(entry)])[1:])
    dropped = cfg.get("dropped_fields") or []
    if dropped:
        parts.append(Text(_dropped_note(dropped, cfg), style="yellow"))
    for warning in entry.get("warnings") or []:
        parts.append(Text(inert(f"warning: {warning}"), style="yellow"))
    if entry.get("error"):
        parts.append(Text(inert(entry["error"]), style="red"))
    parts.append(Text(""))
    return Group(*parts)


def _metrics_table(ep: dict[str, Any]) -> Any:
    """TTFT, TPOT, ITL and E2E statistics (``aggregates.endpoint``, seconds) in milliseconds:
    mean, the asked percentiles (``percentiles``; else median, p90, p99), stdev, n."""
    from rich.table import Table

    pct = ep.get("percentiles") or {}
    qs = next((list(v) for v in pct.values() if v), None) or ["median", "p90", "p99"]
    table = Table(min_width=60)
    table.add_column("metric", style="bold")
    for name in ("mean", *qs, "±95%", "stdev", "n"):
        table.add_column(name, justify="right")
    rows = [("TTFT (ms)", "ttft_s")]
    if ep.get("ttfo_s"):  # reasoning (or tokens without text) came before the visible output
        rows.append(("TTFO (ms)", "ttfo_s"))
    for name, key in (
        *rows,
        ("TPOT (ms/token)", "tpot_s"),
        ("ITL (ms)", "itl_s"),
        ("E2E (ms)", "e2e_s"),
    ):
        st = ep.get(key)
        if not st:
            table.add_row(name, *["-"] * (len(qs) + 4))
            continue
        values = {**st, **(pct.get(key) or {})}
        table.add_row(
            name,
            *(_ms(values.get(k)) for k in ("mean", *qs)),
            _pm_ms(st),
            _ms(values.get("stdev")),
            str(st["n"]),
        )
    return table


def _replay_aggregates(result: EndpointResult) -> dict[str, Any]:
    """``aggregates.sessions`` (``--multi-turn``: TTFT by turn) and ``aggregates.trace``
    (``--trace``: the replay and the client's send lag against the trace's times)."""
    from ..results.values import finite as _finite

    out: dict[str, Any] = {}
    if result.spec.multi_turn is not None:
        from .sessions import sessions_summary

        out["sessions"] = _finite(sessions_summary(result.spec, result.records))
        # the prefix cache is what history reuse should hit: the server's own rate, when scraped
        summary = (result.server_metrics or {}).get("summary") or {}
        rate = summary.get("prefix_cache_hit_rate")
        if isinstance(rate, (int, float)) and 0.0 <= rate <= 1.0:
            out["sessions"]["prefix_cache_hit_rate"] = float(rate)
    if result.spec.trace is not None:
        from .tracesend import trace_summary

        out["trace"] = _finite(trace_summary(result.spec, result.records))
    return out


def _replay_parts(aggregates: dict[str, Any]) -> list[Any]:
    """The console's parts of :func:`_replay_aggregates`."""
    parts: list[Any] = []
    if isinstance(aggregates.get("sessions"), dict):
        from .sessions import turn_table

        parts.extend(turn_table(aggregates["sessions"]))
    if isinstance(aggregates.get("trace"), dict):
        from .tracesend import trace_lines

        parts.extend(trace_lines(aggregates["trace"]))
    return parts


def _pm_ms(stats: dict[str, Any]) -> str:
    """``±h`` (ms): the far end of the median's 95 % interval over requests; ``-`` without one."""
    from ..results.percentiles import Statistics
    from ..results.trial_intervals import half_width

    h = half_width(Statistics.from_dict(stats))
    return "-" if h is None else "±" + _ms(h)


def _throughput_lines(entry: dict[str, Any], cfg: dict[str, Any], ep: dict[str, Any]) -> list[Any]:
    """Throughput and token counting, goodput (with an SLO) and short outputs, as rich texts."""
    from rich.text import Text

    from ..results.schema import as_configuration
    from ..results.writers import actual_tokens

    counted = actual_tokens(as_configuration(entry), "/") or "n/a"
    line = (
        f"{ep.get('requests_per_s') or 0:.3f} requests/s  ·  "
        f"{ep.get('output_tokens_per_s') or 0:.1f} output tokens/s  ·  "
        f"actual in/out {counted} tokens  ·  counted by "
        + ", ".join(f"{k} ({v})" for k, v in (ep.get("token_count") or {}).items())
    )
    parts: list[Any] = [Text(line, style="dim")]
    if ep.get("slo_attained") is not None:
        slo = ",".join(f"{k}={v * 1e3:g}ms" for k, v in (ep.get("slo") or {}).items())
        parts.append(
            Text(
                f"goodput ({slo}): {ep.get('goodput_requests_per_s') or 0:.3f} requests/s, "
                f"{ep['slo_attained']:.1%} of requests within SLO"
            )
        )
    parts.extend(extra_lines(entry, ep))
    if ep.get("short_outputs"):
        parts.append(
            Text(
                f"{ep['short_outputs']} request(s) returned fewer than "
                f"{cfg.get('output_tokens')} tokens",
                style="yellow",
            )
        )
    return parts


def _dropped_note(dropped: list[str], cfg: dict[str, Any]) -> str:
    """The line about request fields the server refused (``dropped_fields``)."""
    note = "server refused " + ", ".join(dropped) + " (dropped)"
    if "ignore_eos" in dropped:
        note += (
            ": the output length is forced only by --extra-body options, if any; see the "
            "actual tokens"
            if cfg.get("extra_body")
            else ": output length not forced (server-specific options: --extra-body)"
        )
    return note


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1e3:.2f}"


def request_line(rec: RequestRecord) -> str:
    """The ``--verbose`` line of one request (times in ms)."""
    what = "probe" if rec.index < 0 else ("warm-up" if rec.warmup else "request")
    if not rec.ok:
        return f"{what} {rec.index}: failed: {rec.error}"
    return (
        f"{what} {rec.index}: TTFT {_ms(rec.ttft_s)} ms, TPOT {_ms(rec.tpot_s)} ms, "
        f"E2E {_ms(rec.e2e_s)} ms, {rec.output_tokens} tokens in {len(rec.chunk_times_s)} "
        f"chunks ({rec.token_count})"
    )
