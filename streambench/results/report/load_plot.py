"""The load figure of an endpoint sweep (several request rates or concurrencies) or capacity
search: written by ``streambench plot`` (and ``--plot``) beside the per-token figure.

- TTFT and ITL percentiles (from each entry's ``aggregates.endpoint.percentiles``: p50, p90, p99
  where present) against the *achieved* request rate and against output tokens/s, one colour per
  series (model, input-output pair, and the concurrency when the rate varies, else the rate),
  one line style per percentile;
- the latency-throughput curve: median TPOT (else median ITL) against output tokens/s of every
  load point, the Pareto-optimal points (no other point has at least the throughput at no more
  latency) connected;
- with a capacity search (the document's ``capacity``): each point's achieved against asked rate,
  marked pass or fail, and the maximum rate found.

:func:`load_data` returns what is drawn as a :class:`LoadData` (the tests compare it with the
entries); :func:`plot_load` draws it. Units: milliseconds for latencies.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..schema import ConfigurationResult, ResultsDocument
from ..values import finite_number

__all__ = [
    "LoadData",
    "LoadPoint",
    "SearchPoint",
    "has_load",
    "load_data",
    "load_path",
    "plot_load",
]

#: the percentiles drawn, where the entries have them
QUANTILES = ("p50", "p90", "p99")
_STYLES = {"p50": "-", "p90": "--", "p99": ":"}


@dataclass(frozen=True)
class LoadPoint:
    """One load point: its configuration ``id`` and ``series``, the asked ``request_rate``
    (``None``: as fast as the concurrency allows) and ``concurrency``, what it achieved
    (``requests_per_s``, ``output_tokens_per_s``), TTFT/ITL/TPOT percentiles in seconds
    (``{"p50": s, ...}``), and whether it is on the Pareto front of latency and throughput."""

    id: str
    series: str
    request_rate: float | None
    concurrency: int | None
    requests_per_s: float
    output_tokens_per_s: float
    ttft_s: dict[str, float]
    itl_s: dict[str, float]
    tpot_s: dict[str, float]
    pareto: bool = False

    @property
    def latency_s(self) -> float | None:
        """What the latency-throughput curve uses: median TPOT, else median ITL (s/token)."""
        return self.tpot_s.get("p50", self.itl_s.get("p50"))


@dataclass(frozen=True)
class SearchPoint:
    """One point of a capacity search: the asked ``rate``, whether it ``passed``, what it
    achieved (requests/s)."""

    rate: float
    passed: bool
    requests_per_s: float


@dataclass(frozen=True)
class LoadData:
    """Everything the load figure draws: the points in document order, the percentiles found,
    the search points and its maximum rate (requests/s, ``None`` when none passed or no search)."""

    points: list[LoadPoint]
    quantiles: tuple[str, ...]
    search: list[SearchPoint] = field(default_factory=list)
    max_rate: float | None = None

    @property
    def pareto(self) -> list[LoadPoint]:
        """The Pareto-optimal points, by output tokens/s."""
        return sorted((p for p in self.points if p.pareto), key=lambda p: p.output_tokens_per_s)


def _table(percentiles: Any, key: str) -> dict[str, float]:
    table = percentiles.get(key) if isinstance(percentiles, dict) else None
    if not isinstance(table, dict):
        return {}
    return {q: float(v) for q, v in table.items() if finite_number(v)}


def _point(entry: ConfigurationResult, series: str) -> LoadPoint | None:
    agg = entry.aggregates
    ep = agg.extra.get("endpoint") if agg is not None and entry.status == "ok" else None
    if not isinstance(ep, dict):
        return None
    rps, tps = ep.get("requests_per_s"), ep.get("output_tokens_per_s")
    pct = ep.get("percentiles")
    if not (finite_number(rps) and finite_number(tps)) or not pct:
        return None
    return LoadPoint(
        id=str(entry.id),
        series=series,
        request_rate=entry.settings.request_rate,
        concurrency=entry.settings.concurrency,
        requests_per_s=float(rps),
        output_tokens_per_s=float(tps),
        ttft_s=_table(pct, "ttft_s"),
        itl_s=_table(pct, "itl_s"),
        tpot_s=_table(pct, "tpot_s"),
    )


def _series(entry: ConfigurationResult, rates_vary: bool) -> str:
    s = entry.settings
    name = f"{s.model} {s.input_tokens}-{s.output_tokens}"
    if rates_vary:
        return f"{name} c{s.concurrency}"
    rate = s.request_rate
    shown = "inf" if rate is None else (f"{rate:g}/s" if finite_number(rate) else repr(rate))
    return f"{name} rate {shown}"


def _with_pareto(points: list[LoadPoint]) -> list[LoadPoint]:
    """``points`` with ``pareto`` set: no other point has at least the throughput at no more
    latency, one of them strictly better."""
    from dataclasses import replace

    def beaten(p: LoadPoint) -> bool:
        lat = p.latency_s
        return lat is None or any(
            q is not p
            and q.latency_s is not None
            and q.output_tokens_per_s >= p.output_tokens_per_s
            and q.latency_s <= lat
            and (q.output_tokens_per_s > p.output_tokens_per_s or q.latency_s < lat)
            for q in points
        )

    return [replace(p, pareto=not beaten(p)) for p in points]


def load_data(doc: ResultsDocument) -> LoadData:
    """The load points of ``doc`` (finished endpoint entries with percentiles) and its search."""
    entries = [e for e in doc.configurations if e.status == "ok"]
    rates_vary = len({repr(e.settings.request_rate) for e in entries}) > 1
    points = [p for e in entries if (p := _point(e, _series(e, rates_vary))) is not None]
    found = {q for p in points for t in (p.ttft_s, p.itl_s) for q in t}
    quantiles = tuple(q for q in QUANTILES if q in found)
    cap = doc.extra.get("capacity")
    search: list[SearchPoint] = []
    max_rate = None
    if isinstance(cap, dict):
        for p in cap.get("points") or []:
            if isinstance(p, dict) and finite_number(p.get("rate")):
                rps = p.get("requests_per_s")
                search.append(
                    SearchPoint(float(p["rate"]), bool(p.get("passed")), float(rps or 0.0))
                )
        max_rate = cap.get("max_rate") if finite_number(cap.get("max_rate")) else None
    return LoadData(_with_pareto(points), quantiles, search, max_rate)


def has_load(doc: ResultsDocument) -> bool:
    """Whether ``doc`` is an endpoint document with at least two load points to draw."""
    if doc.command != "endpoint":
        return False
    keys = {repr((e.settings.request_rate, e.settings.concurrency)) for e in doc.configurations}
    return len(keys) > 1 and len(load_data(doc).points) > 1


def load_path(path: str | os.PathLike[str]) -> Path:
    """Where the load figure of a plot written to ``path`` goes: ``NAME-load.EXT`` beside it."""
    p = Path(path)
    return p.with_name(f"{p.stem}-load{p.suffix}")


def plot_load(doc: ResultsDocument, path: str | os.PathLike[str]) -> LoadData:
    """Write the load figure of ``doc`` to ``path`` (PNG, SVG or PDF; atomically) and return
    the data drawn. ``ValueError`` with fewer than two load points; ``RuntimeError`` without
    matplotlib; ``OSError`` when the file cannot be written."""
    from .plot import _pyplot, _save

    data = load_data(doc)
    if len(data.points) < 2:
        raise ValueError("no load sweep to plot: fewer than two finished load points")
    plt = _pyplot()
    rows = 3
    fig, axes = plt.subplots(rows, 2, figsize=(13, 4.2 * rows), layout="constrained")
    try:
        colors = plt.get_cmap("tab10").colors
        series = list(dict.fromkeys(p.series for p in data.points))
        for col, metric in enumerate(("ttft_s", "itl_s")):
            name = "TTFT" if metric == "ttft_s" else "ITL"
            for row, (x_key, x_label) in enumerate(
                (
                    ("requests_per_s", "achieved requests/s"),
                    ("output_tokens_per_s", "output tokens/s"),
                )
            ):
                ax = axes[row, col]
                _percentile_lines(ax, data, series, colors, metric, x_key)
                ax.set_xlabel(x_label)
                ax.set_ylabel(f"{name} (ms)")
                ax.set_title(f"{name} percentiles against {x_label}", loc="left", fontsize=11)
                ax.grid(alpha=0.3)
        axes[0, 0].legend(fontsize=8)
        _pareto_panel(axes[2, 0], data)
        if data.search:
            _search_panel(axes[2, 1], data)
        else:
            axes[2, 1].axis("off")
        what = "capacity search" if data.search else "load sweep"
        fig.suptitle(f"{what}: {len(data.points)} load points", fontsize=12)
        _save(fig, Path(path))
    finally:
        plt.close(fig)
    return data


def _percentile_lines(
    ax: Any, data: LoadData, series: list[str], colors: Any, metric: str, x_key: str
) -> None:
    for i, name in enumerate(series):
        pts = sorted((p for p in data.points if p.series == name), key=lambda p: getattr(p, x_key))
        for q in data.quantiles:
            xy = [
                (getattr(p, x_key), getattr(p, metric)[q] * 1e3)
                for p in pts
                if q in getattr(p, metric)
            ]
            if xy:
                ax.plot(
                    *zip(*xy),
                    _STYLES[q],
                    marker="o",
                    markersize=4,
                    color=colors[i % len(colors)],
                    label=f"{name} {q}",
                )


def _pareto_panel(ax: Any, data: LoadData) -> None:
    pts = [(p.output_tokens_per_s, p.latency_s * 1e3) for p in data.points if p.latency_s]
    front = [(p.output_tokens_per_s, p.latency_s * 1e3) for p in data.pareto if p.latency_s]
    if not pts:
        ax.axis("off")
        return
    ax.scatter(*zip(*pts), color="0.6", s=18, label="load point")
    ax.plot(
        *zip(*front),
        "-o",
        color="tab:red",
        markersize=5,
        label="Pareto-optimal",
    )
    ax.set_xlabel("output tokens/s")
    ax.set_ylabel("median TPOT (ms/token)")
    ax.set_title("latency against throughput (Pareto front)", loc="left", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def _search_panel(ax: Any, data: LoadData) -> None:
    for passed, color, marker, name in (
        (True, "tab:green", "o", "pass"),
        (False, "tab:red", "x", "fail"),
    ):
        pts = [s for s in data.search if s.passed is passed]
        if pts:
            ax.scatter([s.rate for s in pts], [s.requests_per_s for s in pts], color=color,
                       marker=marker, s=40, label=name)  # fmt: skip
    for n, s in enumerate(data.search, 1):
        ax.annotate(str(n), (s.rate, s.requests_per_s), textcoords="offset points",
                    xytext=(4, 4), fontsize=7)  # fmt: skip
    if data.max_rate is not None:
        ax.axvline(data.max_rate, color="tab:green", alpha=0.6, linestyle="--",
                   label=f"max rate {data.max_rate:g}/s")  # fmt: skip
    from matplotlib.ticker import ScalarFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.set_xlabel("asked requests/s (log)")
    ax.set_ylabel("achieved requests/s")
    ax.set_title("capacity search: points in the order tried", loc="left", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def plot_figures(doc: ResultsDocument, path: str | os.PathLike[str]) -> list[Path]:
    """The per-token figure to ``path`` (:func:`.plot.plot_document`) and, for an endpoint sweep or
    search with several load points, the load figure beside it (``NAME-load.EXT``,
    :func:`plot_load`); the files written."""
    from .plot import plot_document

    written = [plot_document(doc, path)]
    if has_load(doc):
        target = load_path(path)
        plot_load(doc, target)
        written.append(target)
    return written
