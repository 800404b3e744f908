"""Console output (rich): the sweep's progress bar, one configuration's table, and the table of
``streambench compare``. Text from a file (labels, errors) is never read as rich markup."""

from __future__ import annotations

import math
from typing import Any

from .compare import COMPARE_METRICS, CompareRow
from .schema import ConfigurationResult
from .values import GiB, fmt, is_number, scaled
from .writers import actual_tokens

__all__ = ["compare_table", "configuration_table", "progress_bar"]


def progress_bar(console: Any) -> Any:
    """The sweep's progress bar (``run`` and ``endpoint``): description, bar, done/total, elapsed
    time; drawn on ``console`` only when it is a terminal, and cleared when finished."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
        transient=True,
    )


#: rows of :func:`configuration_table`: name, aggregate statistic, scale, decimals
_TABLE_ROWS = [
    ("first token (ms)", "first_token_s", 1e3, 2),
    ("rest tokens (ms/token)", "rest_token_mean_s", 1e3, 3),
    ("decode (tokens/s)", "decode_tokens_per_s", 1.0, 1),
]


def stopped_text(extra: dict[str, Any]) -> str:
    """``--trials auto``: which rule stopped the trials, e.g. ``"  ·  auto: ±5 % reached"``."""
    auto, stopped = extra.get("adaptive"), extra.get("stopped")
    if not isinstance(auto, dict):
        return ""
    target = auto.get("target_ci")
    reached = f"±{target * 100:g} % reached" if isinstance(target, (int, float)) else "target"
    text = {
        "target": reached,
        "max_trials": f"stopped at --max-trials {auto.get('max_trials')} before ±"
        + (f"{target * 100:g} %" if isinstance(target, (int, float)) else "the target"),
        "max_time": f"stopped at --max-time {auto.get('max_time_s')} s",
    }.get(str(stopped), str(stopped))
    return f"  ·  auto: {text}"


def configuration_table(entry: ConfigurationResult) -> Any:
    """A rich renderable for one configuration: a table of first token and rest tokens (mean,
    median, p90, stdev over trials, ms) and decode tokens/s, then a line with peak memory (GiB),
    the actual token counts and the model loading time (or the error of a failed one)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    trials = len(entry.trials)
    title = f"{entry.name}  ·  {trials} trial{'s' * (trials != 1)}"
    warmup = entry.config.warmup
    if warmup:
        title += f" after {warmup} warm-up{'s' * (warmup != 1)}"
    title += stopped_text(entry.extra)
    header = Text(title, style="bold")
    if entry.status != "ok":
        status = entry.status or "failed"
        return Group(header, Text(f"{status}: {entry.error or ''}", style="red"), Text(""))
    table = Table(min_width=60)
    table.add_column("metric", style="bold")
    for name in ("mean", "median", "p90", "stdev"):
        table.add_column(name, justify="right")
    agg = entry.aggregates
    for name, key, scale, digits in _TABLE_ROWS:
        stats = agg.statistic(key) if agg is not None else None
        if stats is None:
            table.add_row(name, "-", "-", "-", "-")
            continue
        values = (stats.mean, stats.median, stats.p90, stats.stdev)
        table.add_row(name, *(fmt(scaled(v, scale), digits) for v in values))
    lines = [Text(_summary_line(entry), style="dim")]
    hardware = hardware_line(entry.extra)
    if hardware:
        lines.append(Text(hardware, style="dim"))
    return Group(header, table, *lines, Text(""))


def hardware_line(extra: dict[str, Any]) -> str:
    """One line on what the hardware did: CPU memory before/after loading and the peak of the
    trials (GiB), and energy per phase from telemetry (or which sources were unavailable)."""
    parts = []
    memory = extra.get("memory")
    if isinstance(memory, dict) and is_number(memory.get("peak_rss_bytes")):
        loaded = memory.get("rss_after_load_bytes")
        text = f"RSS loaded {loaded / GiB:.3f} GB, " if is_number(loaded) else ""
        exact = "exact" if str(memory.get("peak_source")).startswith("VmHWM after") else "sampled"
        parts.append(f"{text}peak {memory['peak_rss_bytes'] / GiB:.3f} GB ({exact})")
    telemetry = extra.get("telemetry")
    if isinstance(telemetry, dict):
        for name, source in (telemetry.get("sources") or {}).items():
            prefill = source.get("prefill_energy_j")
            decode = source.get("decode_energy_j_per_token")
            parts.append(
                f"{name}: prefill {fmt(prefill, 2)} J, decode {fmt(decode, 3)} J/token"
                if is_number(prefill) or is_number(decode)
                else f"{name}: energy n/a"
            )
        missing = sorted((telemetry.get("unavailable") or {}).keys())
        if missing:
            parts.append(f"telemetry unavailable: {', '.join(missing)}")
    return "  ·  ".join(parts)


def _summary_line(entry: ConfigurationResult) -> str:
    parts = []
    agg = entry.aggregates
    peak = agg.peak_memory_bytes if agg is not None else None
    if is_number(peak) and agg is not None:
        memory = agg.memory_kind or ""
        label = {"rss": "RSS", "peak_allocated": "allocated"}.get(memory, memory or "memory")
        parts.append(f"peak {peak / GiB:.3f} GB {label}")
    if actual_tokens(entry):
        parts.append(f"actual in/out {actual_tokens(entry, '/')} tokens")
    if is_number(entry.model_loading_time_s):
        parts.append(f"load {entry.model_loading_time_s:.2f} s")
    per_step = agg.statistic("tokens_per_step") if agg is not None else None
    if per_step is not None and is_number(per_step.mean) and per_step.mean != 1:
        parts.append(f"{per_step.mean:.2f} tokens/step")
    parts += _compile_parts(entry.extra.get("compile"))
    return "  ·  ".join(parts)


def _compile_parts(compiled: Any) -> list[str]:
    """``--compile``: its time (never inside a trial), inductor's cache, recompiles."""
    if not isinstance(compiled, dict):
        return []
    parts = []
    if is_number(compiled.get("compile_time_s")):
        cache = compiled.get("inductor_cache")
        where = f", inductor cache {cache}" if cache else ""
        parts.append(f"compile {compiled['compile_time_s']:.1f} s in warm-up{where}")
    recompiled = compiled.get("recompiled_trials")
    if isinstance(recompiled, list) and recompiled:
        parts.append(f"RECOMPILED in {len(recompiled)} trial(s): not clean numbers")
    return parts


def compare_table(rows: list[CompareRow], threshold: float) -> Any:
    """A rich ``Table`` of :func:`~streambench.results.compare.compare_documents` rows (labels
    and reasons escaped: a file's text is never read as rich markup)."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(
        title=f"NEW / OLD (lower is faster; regression when > {1 + threshold:.3g}×)",
        title_justify="left",
    )
    table.add_column("configuration")
    metrics = [label for _, _, label, _, _ in COMPARE_METRICS] + ["peak memory"]
    units = {label: unit for _, _, label, _, unit in COMPARE_METRICS}
    units["peak memory"] = "GB"
    for m in metrics:
        table.add_column(f"{m}\nold → new ({units[m]})", justify="right")
        table.add_column("ratio", justify="right")
    table.add_column("verdict")
    for row in rows:
        cells = []
        for m in metrics:
            cells += _metric_cells(row, m)
        table.add_row(escape(row.label), *cells, _verdict(row, escape))
    return table


def _metric_cells(row: CompareRow, metric: str) -> list[str]:
    if metric not in row.values:
        return ["", ""]
    old, new = row.values[metric]
    digits = 3 if metric != "first token median" else 2
    r = row.ratio(metric)
    text = "" if r is None else f"{r:.3f}×"
    if metric in row.regressed:
        text = f"[bold red]{text or 'slower'}[/bold red]"
    return [f"{_cell_number(old, digits)} → {_cell_number(new, digits)}", text]


def _verdict(row: CompareRow, escape: Any) -> str:
    if row.problem:
        color = "bold red" if row.fails else "yellow"
        verdict = f"[{color}]{escape(row.problem)}[/{color}]"
        return f"[bold red]slower;[/bold red] {verdict}" if row.regressed else verdict
    return "[bold red]slower[/bold red]" if row.regressed else "[green]ok[/green]"


def _cell_number(value: float | None, digits: int) -> str:
    if value is None:
        return "?"
    if math.isnan(value):
        return "NaN"
    return fmt(value, digits)
