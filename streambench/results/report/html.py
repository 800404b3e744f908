"""The HTML report: one self-contained, interactive page per results document, or a comparison
of several (``streambench report``, ``-o FILE.html`` on ``run`` and ``endpoint``).

The page holds everything it needs and makes no network request when opened: plotly.js (read
from the ``plotly`` package, the optional extra ``streambench[report]``), the page's own script
and style (``streambench/data/report.js``, ``report.css``) and the data, all inline; a
Content-Security-Policy (``default-src 'none'``, scripts only with the page's nonce) forbids any
fetch and any script but its own.

The data is computed here, in Python, from the typed results (:class:`ResultsDocument`): the
page draws it and does no arithmetic of its own, so the numbers shown are those of the file
(milliseconds, MiB, GiB, tokens/s). Everything from the file (model names, server text, error
messages) reaches the page only as JSON inside a ``<script type="application/json">`` with
``<``, ``>``, ``&`` and the JavaScript line separators escaped, and the script puts it into the
page as text (``textContent``; plotly labels with ``&``, ``<``, ``>`` as entities): a
``</script>`` in a model name neither breaks nor scripts the page.
"""

from __future__ import annotations

import datetime
import html
import importlib.util
import json
import math
import os
import re
import secrets
import statistics
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..compare import COMPARE_METRICS, compare_documents, verdict_text
from ..schema import ConfigurationResult, ResultsDocument, RunRecord, Statistics
from ..values import GiB, finite, is_number
from .load_plot import has_load, load_data
from .replay_data import replay_payload
from .server_timeline import server_timeline

__all__ = [
    "REPORT_EXTRA",
    "capacity_points",
    "check_html_outputs",
    "load_payload",
    "plotly_js",
    "render_html",
    "render_report",
    "report_payload",
    "slo_thresholds_ms",
]

#: what to install for HTML reports, from PyPI (messages say what fits the running copy:
#: :func:`streambench.extras.install_hint`)
REPORT_EXTRA = "pip install 'streambench[report]'"
_MiB = 1024**2
_DATA = Path(__file__).resolve().parent.parent.parent / "data"
#: aggregate statistics shown per configuration: key in the page, aggregate name, scale, unit
_STATS = (
    ("first_token_ms", "first_token_s", 1e3, "ms"),
    ("rest_token_ms", "rest_token_mean_s", 1e3, "ms/token"),
    ("decode_tokens_per_s", "decode_tokens_per_s", 1.0, "tokens/s"),
    ("decode_throughput_tokens_per_s", "decode_throughput_tokens_per_s", 1.0, "tokens/s"),
    ("prefill_tokens_per_s", "prefill_tokens_per_s", 1.0, "tokens/s"),
)
#: the endpoint summary's distributions shown (key in ``aggregates.endpoint``)
_ENDPOINT_STATS = ("ttft_s", "tpot_s", "itl_s", "e2e_s")


def plotly_js_path() -> Path:
    """plotly.min.js of the installed ``plotly`` package (found without importing it);
    ``RuntimeError`` naming the extra to install when it is missing."""
    spec = importlib.util.find_spec("plotly")
    places = list(spec.submodule_search_locations or []) if spec is not None else []
    for place in places:
        path = Path(place) / "package_data" / "plotly.min.js"
        if path.is_file():
            return path
    from ...extras import install_hint

    raise RuntimeError(
        f"HTML reports need plotly, which is not installed: {install_hint('report')}"
    )


def plotly_js() -> str:
    """The text of plotly.min.js (see :func:`plotly_js_path`)."""
    path = plotly_js_path()
    text = path.read_text(encoding="utf-8")
    if "</script" in text.lower():  # would end the inline script early
        raise RuntimeError(f"{path} holds '</script': cannot embed it")
    return text


def check_html_outputs(paths: Sequence[str], option: str = "-o") -> None:
    """:class:`~streambench.errors.UsageError` naming ``option`` and the extra to install when
    an ``.html`` output is asked for and plotly is missing (checked before any work)."""
    from ...errors import UsageError

    html_paths = [p for p in paths if str(p).lower().endswith(".html")]
    if html_paths:
        try:
            plotly_js_path()
        except RuntimeError as exc:
            raise UsageError(f"{option} {html_paths[0]}: {exc}") from None


# -- the data --------------------------------------------------------------------------------------
def _num(value: Any, scale: float = 1.0) -> float | None:
    """``value * scale`` for a finite number, else ``None`` (never a made-up 0)."""
    if not is_number(value) or not math.isfinite(value):
        return None
    return float(value) * scale


def _stats(stats: Any, scale: float) -> dict[str, Any] | None:
    if isinstance(stats, dict):
        stats = Statistics.from_dict(stats)
    if not isinstance(stats, Statistics):
        return None
    out = {k: _num(getattr(stats, k), scale) for k in ("mean", "median", "stdev", "min", "max")}
    out["stdev"] = _num(stats.stdev, scale)
    out["p90"] = _num(stats.percentile(90), scale)
    out["p99"] = _num(stats.percentile(99), scale)
    out["n"] = stats.n if is_number(stats.n) else None
    ci = stats.ci95 if isinstance(stats.ci95, list) and len(stats.ci95) == 2 else [None, None]
    out["ci95_low"], out["ci95_high"] = (_num(v, scale) for v in ci)
    return out


def _column(runs: Sequence[RunRecord], attr: str, position: int) -> list[float]:
    values = []
    for run in runs:
        series = getattr(run, attr) or []
        if position < len(series) and _num(series[position]) is not None:
            values.append(float(series[position]))
    return values


def per_token(trials: Sequence[RunRecord]) -> dict[str, Any] | None:
    """Per token position over the trials: the median latency (ms) with the band of the
    smallest and largest trial, and the median memory reading (MiB); ``None`` when no trial
    recorded per-token latencies."""
    length = max((len(t.token_latencies_s or []) for t in trials), default=0)
    if not length:
        return None
    out: dict[str, list[Any]] = {"index": [], "median_ms": [], "low_ms": [], "high_ms": []}
    out["memory_mib"] = []
    for i in range(length):
        lat = _column(trials, "token_latencies_s", i)
        mem = _column(trials, "memory_per_token_bytes", i)
        out["index"].append(i + 1)
        out["median_ms"].append(statistics.median(lat) * 1e3 if lat else None)
        out["low_ms"].append(min(lat) * 1e3 if lat else None)
        out["high_ms"].append(max(lat) * 1e3 if lat else None)
        out["memory_mib"].append(statistics.median(mem) / _MiB if mem else None)
    out["trials"] = [len(trials)]
    return out


def _endpoint(entry: ConfigurationResult) -> dict[str, Any] | None:
    """A served model's requests: TTFT, ITL and E2E of each (ms) and the load point."""
    agg = entry.aggregates
    summary = agg.extra.get("endpoint") if agg is not None else None
    if not isinstance(summary, dict) and entry.config.device != "endpoint":
        return None
    summary = summary if isinstance(summary, dict) else {}
    ttft = [_num(t.first_token_s, 1e3) for t in entry.trials]
    e2e = [_num(t.other.get("total_s"), 1e3) for t in entry.trials]
    itl = [_num(x, 1e3) for t in entry.trials for x in (t.token_latencies_s or [])[1:]]
    out: dict[str, Any] = {
        "ttft_ms": [v for v in ttft if v is not None],
        "itl_ms": [v for v in itl if v is not None],
        "e2e_ms": [v for v in e2e if v is not None],
        "requests_per_s": _num(summary.get("requests_per_s")),
        "output_tokens_per_s": _num(summary.get("output_tokens_per_s")),
        "requests": summary.get("requests"),
        "failed": summary.get("failed"),
        "server": server_timeline(entry.extra.get("server_metrics"), entry.extra.get("requests")),
    }
    for key in _ENDPOINT_STATS:
        out[key[:-2] + "_stats_ms"] = _stats(summary.get(key), 1e3)
    out.update(replay_payload(agg.extra if agg is not None else {}, entry.extra.get("requests")))
    return out


def _trace_link(entry: ConfigurationResult, where: str | None) -> str | None:
    """The profiler trace of the configuration (``extra["profile"]["trace"]``, written relative
    to the directory the run started in, or absolute) as a link relative to the page at
    ``where`` (see :func:`file_link`)."""
    profile = entry.extra.get("profile")
    trace = profile.get("trace") if isinstance(profile, dict) else None
    if not isinstance(trace, str) or not trace:
        return None
    return file_link(trace, where)


#: a URL's scheme (``javascript:``, ``data:``, ``http:``, ``file:`` ...)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")


def file_link(target: str, where: str | None = None) -> str | None:
    """``target`` (a file path from a results file) as a link the page may hold: a relative
    path, percent-encoded (a ``:``, a backslash or a control character in it is a file name's,
    never a scheme's), a ``file:`` URL for an absolute path, or a ``file:`` URL given as such;
    ``None`` (no link) for any other scheme (``javascript:``, ``data:``, ``http:`` ...).

    >>> file_link("javascript:alert(1)") is None, file_link("traces/a b.json")
    (True, 'traces/a%20b.json')
    """
    scheme = _SCHEME.match(target)
    if scheme and os.name == "nt" and re.match(r"[A-Za-z]:[\\/]", target):
        scheme = None  # a Windows drive (C:/...), not a scheme
    if scheme:
        plain = target.isprintable() and " " not in target
        # file:/p or file:///p: a local file (file://host/ would reach out to a host)
        local = re.match(r"(?:///|/)(?!/)", target[scheme.end() :]) is not None
        return target if scheme.group().lower() == "file:" and plain and local else None
    path = target
    if where is not None:
        try:
            path = os.path.relpath(os.path.abspath(target), os.path.dirname(os.path.abspath(where)))
        except ValueError:  # another drive (Windows)
            path = os.path.abspath(target)
    if os.path.isabs(path):
        if path.startswith("//"):  # //host/...: one slash, a local path (not a network one)
            path = "/" + path.lstrip("/")
        return Path(path).as_uri()
    return urllib.parse.quote(path.replace(os.sep, "/"), safe="/")


def configuration_data(entry: ConfigurationResult, where: str | None = None) -> dict[str, Any]:
    """One configuration as the page reads it (see the module docstring); ``where``: the
    page's file, for the link to a profiler trace."""
    agg = entry.aggregates if entry.status == "ok" else None
    stats = {
        key: _stats(agg.statistic(name), scale) if agg else None for key, name, scale, _ in _STATS
    }
    return {
        "key": entry.id if entry.id is not None else entry.settings.default_id(),
        "name": entry.name or entry.settings.default_id(),
        "status": entry.status or "unknown",
        "error": entry.error,
        "settings": entry.settings.to_dict(),
        "config": entry.config.to_dict(),
        "actual": [entry.actual_input_tokens, entry.actual_output_tokens],
        "stats": stats,
        "peak_memory_gib": _num(agg.peak_memory_bytes, 1 / GiB) if agg else None,
        "memory_kind": agg.memory_kind if agg else None,
        "trials": len(entry.trials),
        "tokens": per_token(entry.trials) if entry.status == "ok" else None,
        "endpoint": _endpoint(entry) if entry.status == "ok" else None,
        "profile": _trace_link(entry, where),
        "quality": _quality(entry),
    }


def _quality(entry: ConfigurationResult) -> dict[str, Any] | None:
    """``--quality``'s numbers for the speed-against-quality charts (not the greedy tokens)."""
    from ..quality import quality_of

    q = quality_of(entry)
    if q is None:
        return None
    keep = ("perplexity", "tokens", "agreement", "first_divergence_mean", "reference")
    return {k: getattr(q, k) for k in keep} | {"reasons": dict(q.reasons)}


def _environment(doc: ResultsDocument) -> list[list[str]]:
    env = doc.environment
    rows = [
        ("date", env.date),
        ("command", " ".join(["streambench", *env.argv[1:]]) if env.argv else None),
        ("device", env.device),
        ("device name", env.device_name),
        ("CPU", f"{env.cpu_model} ({env.cpu_count} cores)" if env.cpu_model else None),
        ("platform", env.platform),
        ("python", env.python),
        ("streambench", env.streambench),
        ("torch", env.torch),
        ("transformers", env.transformers),
    ]
    rows += [(k, v) for k, v in sorted(env.other.items()) if not isinstance(v, (dict, list))]
    return [[k, str(v)] for k, v in rows if v is not None]


def _ms_table(table: dict[str, float]) -> dict[str, float]:
    return {q: v * 1e3 for q, v in table.items()}


def load_payload(doc: ResultsDocument) -> dict[str, Any] | None:
    """The Load section of an endpoint document with several load points: what the load figure
    draws (:func:`~streambench.results.report.load_plot.load_data`), latencies in ms; ``None``
    without
    (see :func:`~streambench.results.report.load_plot.has_load`). ``front``: the indices of the
    Pareto-optimal points by output tokens/s; ``search``: numbered in the order tried."""
    if not has_load(doc):
        return None
    data = load_data(doc)
    index = {id(p): i for i, p in enumerate(data.points)}
    return {
        "quantiles": list(data.quantiles),
        "series": list(dict.fromkeys(p.series for p in data.points)),
        "points": [
            {
                "id": p.id,
                "series": p.series,
                "request_rate": p.request_rate,
                "concurrency": p.concurrency,
                "requests_per_s": p.requests_per_s,
                "output_tokens_per_s": p.output_tokens_per_s,
                "ttft_ms": _ms_table(p.ttft_s),
                "itl_ms": _ms_table(p.itl_s),
                "latency_ms": None if p.latency_s is None else p.latency_s * 1e3,
                "pareto": p.pareto,
            }
            for p in data.points
        ],
        "front": [index[id(p)] for p in data.pareto if p.latency_s is not None],
        "search": [
            {"order": n, "rate": s.rate, "passed": s.passed, "requests_per_s": s.requests_per_s}
            for n, s in enumerate(data.search, 1)
        ],
        "max_rate": data.max_rate,
        "slo_ms": slo_thresholds_ms(doc),
    }


def slo_thresholds_ms(doc: ResultsDocument) -> dict[str, list[float]]:
    """The SLO thresholds of ``doc`` in ms, drawn as horizontal lines on the latency charts:
    ``{"ttft": [70.0], ...}`` from the capacity search's ``slo_s``, else every distinct value
    of the configurations' ``config.slo_s`` (a request meets a threshold when its latency is at
    or below it)."""
    cap = doc.extra.get("capacity")
    tables = [cap.get("slo_s")] if isinstance(cap, dict) and cap.get("slo_s") else []
    if not tables:
        tables = [e.config.other.get("slo_s") for e in doc.configurations]
    out: dict[str, list[float]] = {}
    for table in tables:
        for key, value in (table if isinstance(table, dict) else {}).items():
            ms = _num(value, 1e3)
            if isinstance(key, str) and ms is not None and ms not in out.setdefault(key, []):
                out[key].append(ms)
    return out


def capacity_points(doc: ResultsDocument) -> dict[str, dict[str, Any]]:
    """A capacity search's verdict per configuration id: ``order`` (1 = tried first),
    ``passed`` (the point met the SLO attainment), ``slo_attained`` (the fraction of requests
    within every threshold); empty without a search."""
    cap = doc.extra.get("capacity")
    points = cap.get("points") if isinstance(cap, dict) else None
    out: dict[str, dict[str, Any]] = {}
    for n, p in enumerate(points if isinstance(points, list) else [], 1):
        if isinstance(p, dict) and isinstance(p.get("id"), str):
            out[p["id"]] = {
                "order": n,
                "passed": p.get("passed") is True,
                "slo_attained": _num(p.get("slo_attained")),
            }
    return out


def document_data(doc: ResultsDocument, name: str, where: str | None = None) -> dict[str, Any]:
    """One results document as the page reads it."""
    return {
        "name": name,
        "command": doc.command,
        "interrupted": doc.interrupted,
        "environment": _environment(doc),
        "settings": doc.settings,
        "configurations": [configuration_data(e, where) for e in doc.configurations],
        "load": load_payload(doc),
        "capacity": capacity_points(doc),
    }


def _ratio(old: float | None, new: float | None) -> float | None:
    if old is None or new is None or not old > 0 or not math.isfinite(new / old):
        return None
    return new / old


def comparison_data(
    old: ResultsDocument,
    new: ResultsDocument,
    threshold: float,
    ignore: Sequence[str] = (),
    strict: bool = False,
) -> dict[str, Any]:
    """``streambench compare``'s rows (matched the same way, the same verdicts): per metric OLD,
    NEW, the ratio NEW/OLD with its interval (``low``, ``high``, ``coverage``) and verdict; per
    row the trials per side, what differs, and the verdict in words."""
    rows, failed = compare_documents(old, new, threshold, frozenset(ignore), strict)
    units = {label: unit for _n, _s, label, _scale, unit in COMPARE_METRICS}
    units["peak memory"] = "GiB"
    out = []
    for row in rows:
        metrics = []
        for label, (o, n) in row.values.items():
            iv = row.intervals.get(label)
            metrics.append(
                {
                    "name": label,
                    "unit": units.get(label, ""),
                    "old": _num(o),
                    "new": _num(n),
                    "ratio": _ratio(_num(o), _num(n)),
                    "low": _num(iv.low) if iv is not None else None,
                    "high": _num(iv.high) if iv is not None else None,
                    "coverage": _num(iv.coverage) if iv is not None else None,
                    "verdict": iv.verdict if iv is not None else None,
                    "regressed": label in row.regressed,
                }
            )
        out.append(
            {
                "label": row.label,
                "problem": row.problem,
                "fails": row.fails,
                "verdict": row.verdict,
                "verdict_text": verdict_text(row),
                "n": list(row.n) if row.n else None,
                "differs": list(row.differs),
                "metrics": metrics,
            }
        )
    return {"threshold": threshold, "failed": failed, "ignore": sorted(ignore), "rows": out}


def report_payload(
    docs: Sequence[ResultsDocument],
    names: Sequence[str],
    threshold: float = 0.05,
    where: str | None = None,
    ignore: Sequence[str] = (),
    strict: bool = False,
) -> dict[str, Any]:
    """Everything the page shows: the documents and, given several, each compared with the
    first (the baseline; ``ignore``, ``strict`` as for ``compare``); ``where``: the page's file
    (links to traces are relative to it)."""
    from ...version import __version__

    return finite(
        {
            "generator": f"streambench {__version__}",
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "documents": [document_data(d, n, where) for d, n in zip(docs, names)],
            "comparisons": [
                {"old": 0, "new": i, **comparison_data(docs[0], d, threshold, ignore, strict)}
                for i, d in enumerate(docs[1:], 1)
            ],
        }
    )


# -- the page ------------------------------------------------------------------------------------
def script_json(value: Any) -> str:
    """``value`` as JSON that is safe inside a ``<script>`` element: ``<``, ``>``, ``&`` and
    U+2028/U+2029 as ``\\u`` escapes, so no text in it can end the element.

    >>> script_json({"m": "</script>"})
    '{"m": "\\\\u003c/script\\\\u003e"}'
    """
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, default=str)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escape)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _page(title: str, payload: dict[str, Any]) -> str:
    nonce = secrets.token_urlsafe(18)
    own_js = (_DATA / "report.js").read_text(encoding="utf-8")
    css = (_DATA / "report.css").read_text(encoding="utf-8")
    csp = (
        "default-src 'none'; "
        f"script-src 'nonce-{nonce}'; "
        "style-src 'unsafe-inline'; img-src data:; font-src data:"
    )
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{csp}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{html.escape(title)}</title>",
            f"<style>{css}</style>",
            "</head><body>",
            '<main id="report"><p id="loading">Loading the report…</p></main>',
            f'<script type="application/json" id="sb-data">{script_json(payload)}</script>',
            f'<script nonce="{nonce}">{plotly_js()}</script>',
            f'<script nonce="{nonce}">{own_js}</script>',
            "</body></html>",
            "",
        ]
    )


def render_report(
    docs: Sequence[ResultsDocument],
    names: Sequence[str],
    threshold: float = 0.05,
    where: str | None = None,
    ignore: Sequence[str] = (),
    strict: bool = False,
) -> str:
    """The HTML page of one or several documents (the first is the baseline of the
    comparison; ``ignore``, ``strict`` as for ``compare``); ``RuntimeError`` when plotly is not
    installed."""
    title = "streambench report: " + (names[0] if len(names) == 1 else " vs ".join(names))
    return _page(title, report_payload(docs, names, threshold, where, ignore, strict))


def render_html(doc: ResultsDocument, where: str | None = None) -> str:
    """The HTML report of one document (the ``.html`` output format) going to ``where``."""
    name = os.path.basename(where) if where else f"streambench {doc.command}"
    return render_report([doc], [name], where=where)
