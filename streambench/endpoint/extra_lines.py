"""Lines of the endpoint table beyond latencies and throughput: reasoning tokens and the server's
own metrics (``--server-metrics``), read from a results-document entry (so a file written earlier
prints the same). Every value from the server is a number checked here again; names are not
shown."""

from __future__ import annotations

import math
from typing import Any


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def reasoning_line(ep: dict[str, Any]) -> str | None:
    """``reasoning: N tokens per request (median) before the visible output``, or ``None``."""
    st = ep.get("reasoning_tokens")
    if not isinstance(st, dict):
        return None
    median = _num(st.get("median"))
    if median is None:
        return None
    ttfo = ep.get("ttfo_s") if isinstance(ep.get("ttfo_s"), dict) else {}
    ttft = ep.get("ttft_s") if isinstance(ep.get("ttft_s"), dict) else {}
    a, b = _num(ttfo.get("median")), _num(ttft.get("median"))
    gap = ""
    if a is not None and b is not None:
        gap = f"; TTFO - TTFT {(a - b) * 1e3:.1f} ms (medians)"
    return f"reasoning: {median:g} tokens per request (median){gap}"


def server_line(entry: dict[str, Any]) -> str | None:
    """The server's metrics over the point, one line, or ``None`` without them."""
    sm = entry.get("server_metrics")
    summary = sm.get("summary") if isinstance(sm, dict) else None
    if not isinstance(summary, dict):
        return None
    parts = []
    kv = _num(summary.get("max_kv_cache_usage"))
    if kv is not None:
        parts.append(f"KV cache max {kv:.1%}")
    for key, name in (("mean_running", "running"), ("mean_waiting", "waiting")):
        value = _num(summary.get(key))
        high = _num(summary.get(key.replace("mean", "max")))
        if value is not None:
            peak = f" (max {high:g})" if high is not None else ""
            parts.append(f"{name} mean {value:.2f}{peak}")
    rate = _num(summary.get("prefix_cache_hit_rate"))
    if rate is not None:
        parts.append(f"prefix-cache hits {rate:.1%}")
    pre = _num(summary.get("preemptions"))
    if pre is not None:
        parts.append(f"preemptions {pre:g}")
    scrapes = _num(summary.get("scrapes"))
    what = ", ".join(parts) if parts else "no known metric"
    return f"server: {what} ({scrapes or 0:g} scrapes)"


def extra_lines(entry: dict[str, Any], ep: dict[str, Any]) -> list[Any]:
    """The rich texts of :func:`reasoning_line` and :func:`server_line` that apply."""
    from rich.text import Text

    lines = [reasoning_line(ep), server_line(entry)]
    return [Text(line) for line in lines if line]


def extra_csv(ep: dict[str, Any], server_metrics: Any) -> dict[str, str]:
    """CSV columns that exist only where they apply: TTFO and reasoning tokens (medians), the
    server's KV usage, running mean and prefix-cache hit rate."""
    out: dict[str, str] = {}
    for column, key, scale, digits in (
        ("TTFO median (ms)", "ttfo_s", 1e3, 3),
        ("reasoning tokens median", "reasoning_tokens", 1.0, 1),
    ):
        st = ep.get(key)
        value = _num(st.get("median")) if isinstance(st, dict) else None
        if value is not None:
            out[column] = f"{value * scale:.{digits}f}"
    summary = server_metrics.get("summary") if isinstance(server_metrics, dict) else None
    for column, key in (
        ("server KV cache max", "max_kv_cache_usage"),
        ("server running mean", "mean_running"),
        ("server prefix-cache hit rate", "prefix_cache_hit_rate"),
    ):
        value = _num(summary.get(key)) if isinstance(summary, dict) else None
        if value is not None:
            out[column] = f"{value:.4g}"
    return out
