"""``streambench plot``: one figure of a results document. Per-token latency over token position
(median over trials, a band), the first token in its own panel, and memory per token and peak
memory where measured. Needs matplotlib (``pip install streambench[plot]``); written atomically.

Units: milliseconds for latencies; MiB (GiB from 4 GiB on) for memory.
"""

from __future__ import annotations

import math
import os
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...stats import percentile
from ..schema import ConfigurationResult, Environment, ResultsDocument, RunRecord
from ..values import GiB, finite_number, is_number

__all__ = ["IQR_FROM_TRIALS", "plot_document"]

#: trials from which the plot's band is the interquartile range instead of min...max
IQR_FROM_TRIALS = 4

_MEMORY_KINDS = {
    "rss": ("process resident memory (RSS)", "RSS"),
    "peak_allocated": ("peak memory allocated by torch in the step", "allocated"),
    "current_allocated": ("memory allocated by torch at the token", "allocated"),
}


def per_position(
    trials: list[RunRecord], key: str, skip_holes: bool = False
) -> tuple[list[float], list[float], list[float]]:
    """Per position over trials of ``getattr(trial, key)[position]``: the median, and a band: the
    25th-75th percentiles with at least :data:`IQR_FROM_TRIALS` values, else min and max.

    A trial with a hole (null, NaN) in its list is left out rather than drawn wrong; with
    ``skip_holes`` (memory: a token may have no reading) only the hole is left out, and a
    position where no trial has a value is NaN in all three lists (drawn as a gap, or skipped)."""
    series = [getattr(t, key) or [] for t in trials]
    if not skip_holes:
        series = [s for s in series if s and all(finite_number(v) for v in s)]
    series = [s for s in series if s]
    if not series:
        return [], [], []
    n = min(len(s) for s in series) if not skip_holes else max(len(s) for s in series)
    med, lo, hi = [], [], []
    for i in range(n):
        values = sorted(s[i] for s in series if i < len(s) and finite_number(s[i]))
        if not values and skip_holes:
            med.append(math.nan)
            lo.append(math.nan)
            hi.append(math.nan)
            continue
        if not values:
            break
        med.append(statistics.median(values))
        if len(values) >= IQR_FROM_TRIALS:
            lo.append(percentile(values, 25))
            hi.append(percentile(values, 75))
        else:
            lo.append(values[0])
            hi.append(values[-1])
    return med, lo, hi


@dataclass
class _Figure:
    """The figure being drawn: the configurations, their colours, labels and numbers."""

    fig: Any
    grid: Any
    entries: list[ConfigurationResult]
    colors: Any
    labels: list[str]
    numbers: list[str]
    single_model: str | None

    def color(self, i: int) -> Any:
        return self.colors[i % len(self.colors)]


def plot_document(doc: ResultsDocument, path: str | os.PathLike[str]) -> Path:
    """Write a PNG (or SVG, PDF): per-token latency (and memory, where measured) over token
    position, one line per configuration (median over trials, band), the first token in its own
    panel. ``ValueError`` when no configuration finished; ``RuntimeError`` without
    matplotlib; ``OSError`` when the file cannot be written."""
    plt = _pyplot()
    entries = [e for e in doc.configurations if e.status == "ok" and e.trials]
    if not entries:
        raise ValueError("nothing to plot: no configuration finished")
    has_mem = any(t.memory_per_token_bytes for e in entries for t in e.trials)
    has_power = any(_power_traces(e) for e in entries)
    has_lengths = len({x for e in entries for x, _ in _first_by_input(e)}) > 1
    rows = (2 if has_mem else 1) + int(has_power) + int(has_lengths)
    fig = plt.figure(figsize=(12, 3.9 * rows + 1.4), layout="constrained")
    f = _Figure(
        fig=fig,
        grid=fig.add_gridspec(rows, 2, width_ratios=[1, 3.6]),
        entries=entries,
        colors=plt.get_cmap("tab10").colors,
        labels=[e.name for e in entries],
        numbers=[str(i + 1) for i in range(len(entries))],
        single_model=None,
    )
    models = {str(e.settings.model) for e in entries}
    if len(models) == 1:  # say the model once, in the title
        f.single_model = models.pop()
        f.labels = [lab.removeprefix(f.single_model).strip() or lab for lab in f.labels]
    try:
        _first_token_panel(f, fig.add_subplot(f.grid[0, 0]))
        ax_rest = fig.add_subplot(f.grid[0, 1])
        _rest_tokens_panel(f, ax_rest)
        if has_mem:
            ax_peak = fig.add_subplot(f.grid[1, 0])
            _memory_panels(f, ax_peak, fig.add_subplot(f.grid[1, 1], sharex=ax_rest))
        if has_power:
            _power_panel(f, fig.add_subplot(f.grid[rows - 1 - int(has_lengths), :]))
        if has_lengths:
            _input_length_panel(f, fig.add_subplot(f.grid[rows - 1, :]))
        _legend_and_title(f, ax_rest, doc.environment)
        return _save(fig, Path(path))
    finally:
        plt.close(fig)


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from ...extras import install_hint

        raise RuntimeError(
            f"plots need matplotlib, which is not installed: {install_hint('plot')}"
        ) from None
    return plt


def _bar(ax: Any, i: int, value: float, color: Any, top: float | None = None) -> None:
    """A bar with its value written above it (3 significant digits)."""
    ax.bar(i, value, color=color, alpha=0.85, width=0.7)
    ax.annotate(
        _short(value),
        (i, value if top is None else top),
        textcoords="offset points",
        xytext=(0, 3),
        ha="center",
        va="bottom",
        fontsize=8,
    )


def _bar_axes(ax: Any, f: _Figure, ylabel: str, title: str) -> None:
    ax.set_xticks(range(len(f.entries)), f.numbers)
    ax.set_xlabel("configuration")
    ax.set_ylabel(ylabel)
    ax.set_title(title, loc="left", fontsize=11)
    ax.set_ylim(bottom=0)
    ax.margins(y=0.12)
    ax.grid(axis="y", alpha=0.3)


def _first_token_panel(f: _Figure, ax: Any) -> None:
    """One bar per configuration: the median first token (ms) over trials, whiskers min-max."""
    for i, entry in enumerate(f.entries):
        firsts = [
            t.first_token_s * 1e3
            for t in entry.trials
            if finite_number(t.first_token_s) and t.first_token_s > 0  # type: ignore[operator]
        ]
        if not firsts:
            continue
        med = statistics.median(firsts)
        _bar(ax, i, med, f.color(i), top=max(firsts))
        if len(firsts) > 1:
            yerr = [[med - min(firsts)], [max(firsts) - med]]
            ax.errorbar(i, med, yerr=yerr, color="0.2", capsize=3, linewidth=1)
    _bar_axes(ax, f, "time to first token (ms)", "First token: median, min…max")


def _rest_tokens_panel(f: _Figure, ax: Any) -> None:
    """Every later token over its position (ms): median over trials, band."""
    tops: list[float] = []
    longest = 1
    for i, entry in enumerate(f.entries):
        med, lo, hi = per_position(entry.trials, "token_latencies_s")
        if len(med) < 2:
            continue
        longest = max(longest, len(med))
        xs = list(range(2, len(med) + 1))
        rest = [v * 1e3 for v in med[1:]]
        color = f.color(i)
        ax.plot(xs, rest, color=color, linewidth=1.5, label=f"{i + 1}: {f.labels[i]}")
        low, high = [v * 1e3 for v in lo[1:]], [v * 1e3 for v in hi[1:]]
        ax.fill_between(xs, low, high, color=color, alpha=0.12, linewidth=0)
        ordered = sorted(rest)
        tops.append(ordered[min(len(ordered) - 1, int(0.98 * len(ordered)))])
    ax.set_xlabel("generated token position")
    ax.set_ylabel("latency of the token (ms)")
    few = min(len(e.trials) for e in f.entries) < IQR_FROM_TRIALS
    band = "min…max" if few else "25th…75th percentile"
    ax.set_title(
        f"Rest tokens (decode): median over trials, band = {band}", loc="left", fontsize=11
    )
    if tops:
        # Keep the lines readable: a rare outlier of one trial may leave the axes.
        ax.set_ylim(0, max(tops) * 1.6)
    ax.set_xlim(0.5, longest + 0.5)
    ax.grid(alpha=0.3)


def _memory_panels(f: _Figure, ax_peak: Any, ax_mem: Any) -> None:
    """Memory per token (median over trials; a token without a reading is left out) and the
    peak memory of each configuration."""
    unit, scale = _memory_unit(f.entries)
    for i, entry in enumerate(f.entries):
        color = f.color(i)
        med, _, _ = per_position(entry.trials, "memory_per_token_bytes", skip_holes=True)
        points = [(x, v / scale) for x, v in enumerate(med, start=1) if not math.isnan(v)]
        if points:
            # tokens without a reading are skipped: the line joins the readings there are
            ax_mem.plot(*zip(*points), color=color, linewidth=1.5, marker=".", markersize=4)
            if points[0][0] == 1:
                ax_mem.plot([1], [points[0][1]], marker="o", color=color, markersize=6)
        peak = entry.aggregates.peak_memory_bytes if entry.aggregates is not None else None
        if finite_number(peak):
            _bar(ax_peak, i, peak / scale, color)  # type: ignore[operator]
    long, short = _MEMORY_KINDS.get(_memory_kind(f.entries), ("memory", "memory"))
    ax_mem.set_xlabel("generated token position (● = first token)")
    ax_mem.set_ylabel(f"{short} ({unit})")
    ax_mem.set_title(f"Memory per token: {long}", loc="left", fontsize=11)
    ax_mem.grid(alpha=0.3)
    _tight_ylim(ax_mem)
    _bar_axes(ax_peak, f, f"peak {short} ({unit})", "Peak memory")


def _legend_and_title(f: _Figure, ax_rest: Any, env: Environment) -> None:
    handles, texts = ax_rest.get_legend_handles_labels()
    if handles:
        f.fig.legend(
            handles,
            texts,
            loc="outside lower center",
            ncol=min(len(handles), 3),
            fontsize=9,
            frameon=False,
        )
    model = f.single_model
    f.fig.suptitle(
        f"streambench: {model + ' on ' if model else ''}"
        f"{env.device_name or env.device or ''} "
        f"({env.device or '?'}) · torch {env.torch or '?'} · "
        f"transformers {env.transformers or '?'} · {str(env.date or '')[:10]}",
        fontsize=12,
    )


def _first_by_input(entry: ConfigurationResult) -> list[tuple[float, float]]:
    """(input tokens as ``generate()`` saw them, first-token time in ms) of every trial."""
    out = []
    for trial in entry.trials:
        x, y = trial.other.get("prompt_tokens"), trial.first_token_s
        if is_number(x) and is_number(y) and x > 0:
            out.append((float(x), float(y) * 1e3))
    return out


def _input_length_panel(f: _Figure, ax: Any) -> None:
    """First-token time against input length, every trial a point (prompt files of varied
    lengths, drawn lengths, sweeps over input lengths)."""
    for i, entry in enumerate(f.entries):
        points = sorted(_first_by_input(entry))
        if points:
            ax.plot(*zip(*points), "o", color=f.color(i), ms=4, alpha=0.8)
    ax.set_xlabel("input tokens per sequence (padded, as generate() saw them)")
    ax.set_ylabel("time to first token (ms)")
    ax.set_title("first token against input length (every trial)", fontsize=10, loc="left")
    ax.grid(alpha=0.3)


def _power_traces(entry: ConfigurationResult) -> dict[str, Any]:
    telemetry = entry.extra.get("telemetry")
    traces = telemetry.get("power_trace") if isinstance(telemetry, dict) else None
    return traces if isinstance(traces, dict) else {}


def _power_panel(f: _Figure, ax: Any) -> None:
    """Power (W) over time from the telemetry sampler, from each configuration's first measured
    prompt (t = 0): where the energy per phase comes from."""
    for i, entry in enumerate(f.entries):
        for name, trace in _power_traces(entry).items():
            t, p = trace.get("t_s") or [], trace.get("power_w") or []
            if t and len(t) == len(p):
                ax.plot(t, p, color=f.color(i), lw=1.2, label=f"{f.numbers[i]} {name}")
    ax.set_xlabel("time from the first measured prompt (s)")
    ax.set_ylabel("power (W)")
    ax.set_title("power during the configuration (telemetry samples)", fontsize=10, loc="left")
    ax.grid(alpha=0.3)


def _save(fig: Any, target: Path) -> Path:
    """Save through :func:`streambench.results.outputs.atomic_write`, like the JSON and CSV writers:
    atomic, a symlinked target written through, an existing file's permission bits kept, a new
    file ``0666 & ~umask``."""
    from ..outputs import atomic_write

    fmt = target.suffix.lower().lstrip(".") or "png"
    atomic_write(target, lambda f: fig.savefig(f, format=fmt, dpi=110))
    return target


def _short(value: float) -> str:
    """Compact label: 3 significant digits."""
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def _memory_kind(entries: list[ConfigurationResult]) -> str:
    for e in entries:
        if e.aggregates is not None and e.aggregates.memory_kind:
            return e.aggregates.memory_kind
    return ""


def _memory_unit(entries: list[ConfigurationResult]) -> tuple[str, float]:
    peaks = [e.aggregates.peak_memory_bytes for e in entries if e.aggregates is not None]
    largest = max((p for p in peaks if finite_number(p)), default=0)
    return ("GiB", float(GiB)) if largest >= 4 * GiB else ("MiB", float(2**20))


def _tight_ylim(ax: Any) -> None:
    """Memory lines differ by little compared with their level: zoom in, but keep some room."""
    lo, hi = ax.get_ylim()
    pad = max((hi - lo) * 0.1, abs(hi) * 0.002, 1e-9)
    ax.set_ylim(lo - pad, hi + pad)
