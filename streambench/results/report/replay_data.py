"""The HTML report's data about multi-turn sessions and trace replays of ``streambench
endpoint`` (``aggregates.sessions``, ``aggregates.trace`` and each request's ``intended_s`` /
``send_lag_s``): TTFT by turn, and each replayed request's send lag against its trace time.
Read from the results document only (numbers checked, never trusted as they come)."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["replay_payload"]

#: the most requests drawn in the send-lag chart (the first ones of the replay)
MAX_LAG_POINTS = 5000


def _num(value: Any, scale: float = 1.0) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return float(value) * scale if ok and math.isfinite(value) else None


def _turns(sessions: Any) -> list[dict[str, Any]] | None:
    rows = sessions.get("ttft_by_turn") if isinstance(sessions, dict) else None
    if not isinstance(rows, list):
        return None
    out = []
    for row in rows[:64]:
        if not isinstance(row, dict):
            continue
        st = row.get("ttft_s") if isinstance(row.get("ttft_s"), dict) else {}
        pct = st.get("percentiles") if isinstance(st.get("percentiles"), dict) else {}
        out.append(
            {
                "turn": str(row.get("turn"))[:8],
                "median_ms": _num(st.get("median"), 1e3),
                "p90_ms": _num(pct.get("90", st.get("p90")), 1e3),
                "n": st.get("n") if isinstance(st.get("n"), int) else 0,
            }
        )
    return out


def _lags(requests: Any) -> list[list[float]]:
    out: list[list[float]] = []
    for r in requests if isinstance(requests, list) else []:
        if not isinstance(r, dict) or r.get("warmup"):
            continue
        at, lag = _num(r.get("intended_s")), _num(r.get("send_lag_s"), 1e3)
        if at is not None and lag is not None:
            out.append([at, lag])
            if len(out) >= MAX_LAG_POINTS:
                break
    return out


def replay_payload(aggregates_extra: dict[str, Any], requests: Any) -> dict[str, Any]:
    """``{"ttft_by_turn": [...]}`` (``turn``, ``median_ms``, ``p90_ms``, ``n``) for a
    multi-turn configuration and ``{"trace_lag": [[intended_s, lag_ms], ...]}`` for a replay;
    ``{}`` for any other."""
    out: dict[str, Any] = {}
    turns = _turns(aggregates_extra.get("sessions"))
    if turns:
        out["ttft_by_turn"] = turns
    if isinstance(aggregates_extra.get("trace"), dict):
        out["trace_lag"] = _lags(requests)
    return out
