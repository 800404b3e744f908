"""The timeline of one served load point for the HTML report: the server's own metrics
(``server_metrics`` of an endpoint entry, ``--server-metrics``) beside the client's TTFT of each
request, on one time axis: seconds since the point's measured phase began (the scrapes' ``t_s``
and each request's ``sent_s + ttft_s``, both the client's ``perf_counter``).

Everything is read from a results file and checked again: numbers must be finite (anything else
is dropped), series are the known ones only (their names are streambench's, never the server's),
and at most :data:`MAX_POINTS` points per series are drawn.
"""

from __future__ import annotations

from typing import Any

from ..values import finite_number

#: the server series drawn (streambench's names) and the scale applied (KV usage in %)
DRAWN = (("running", 1.0), ("waiting", 1.0), ("kv_cache_usage", 100.0))
MAX_POINTS = 20_000


def server_timeline(server_metrics: Any, requests: Any) -> dict[str, Any] | None:
    """``{"t_s": [...], "series": {name: [...]}, "ttft": {"t_s": [...], "ms": [...]},
    "summary": {...}}``, or ``None`` without a server timeline."""
    if not isinstance(server_metrics, dict):
        return None
    timeline = server_metrics.get("timeline")
    if not isinstance(timeline, dict) or not isinstance(timeline.get("t_s"), list):
        return None
    t = [v if finite_number(v) else None for v in timeline["t_s"][:MAX_POINTS]]
    raw = timeline.get("series") if isinstance(timeline.get("series"), dict) else {}
    series: dict[str, list[float | None]] = {}
    for name, scale in DRAWN:
        values = raw.get(name)
        if isinstance(values, list) and len(values) >= len(t):
            series[name] = [v * scale if finite_number(v) else None for v in values[: len(t)]]
    ttft_t, ttft_ms = [], []
    for req in requests if isinstance(requests, list) else ():
        if not isinstance(req, dict) or req.get("warmup") or not req.get("ok"):
            continue
        sent, ttft = req.get("sent_s"), req.get("ttft_s")
        if finite_number(sent) and finite_number(ttft) and len(ttft_t) < MAX_POINTS:
            ttft_t.append(sent + ttft)
            ttft_ms.append(ttft * 1e3)
    summary = server_metrics.get("summary")
    shown = {
        k: v
        for k, v in (summary.items() if isinstance(summary, dict) else ())
        if isinstance(k, str) and k.isidentifier() and finite_number(v)
    }
    return {"t_s": t, "series": series, "ttft": {"t_s": ttft_t, "ms": ttft_ms}, "summary": shown}
