"""Console output (rich): the sweep's progress bar, one configuration's table, and the table of
``streambench compare``. Text from a file (labels, errors) is never read as rich markup."""

from __future__ import annotations

import math
from typing import Any

from ...intervals import why_no_interval
from ...terminal import inert
from ..compare import COMPARE_METRICS, CompareRow, interval_text, verdict_text
from ..schema import ConfigurationResult
from ..trial_intervals import half_width
from ..values import GiB, fmt, is_number, scaled
from ..writers import actual_tokens

__all__ = [
    "compare_fits",
    "compare_table",
    "compare_text",
    "compare_title",
    "configuration_table",
    "progress_bar",
]


def progress_bar(console: Any) -> Any:
    """The sweep's progress bar (``run`` and ``endpoint``): description, bar, done/total, elapsed
    time; drawn on ``console`` only when it is a terminal, and cleared when finished."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}", markup=False),  # a label: a model's, a file's
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
    median with the distance to the far end of its 95 % interval, p90, stdev over trials, ms) and
    decode tokens/s, then a line with peak memory (GiB),
    the actual token counts and the model loading time (or the error of a failed one)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    trials = len(entry.trials)
    title = f"{inert(entry.name)}  ·  {trials} trial{'s' * (trials != 1)}"
    warmup = entry.config.warmup
    if warmup:
        title += f" after {warmup} warm-up{'s' * (warmup != 1)}"
    title += stopped_text(entry.extra)
    header = Text(title, style="bold")
    if entry.status != "ok":
        status = entry.status or "failed"
        return Group(header, Text(inert(f"{status}: {entry.error or ''}"), style="red"), Text(""))
    table = Table(min_width=60)
    table.add_column("metric", style="bold")
    for name in ("mean", "median", "±95%", "p90", "stdev"):
        table.add_column(name, justify="right")
    agg = entry.aggregates
    for name, key, scale, digits in _TABLE_ROWS:
        stats = agg.statistic(key) if agg is not None else None
        if stats is None:
            table.add_row(name, "-", "-", "-", "-", "-")
            continue
        h = half_width(stats)
        pm = "-" if h is None else "±" + fmt(h * scale, digits)
        mean, median, p90, stdev = (
            scaled(v, scale) for v in (stats.mean, stats.median, stats.p90, stats.stdev)
        )
        table.add_row(
            name, fmt(mean, digits), fmt(median, digits), pm, fmt(p90, digits), fmt(stdev, digits)
        )
    lines = [Text(_summary_line(entry), style="dim")]
    note = _interval_note(agg)
    if note:
        lines.append(Text(note, style="dim"))
    hardware = hardware_line(entry.extra)
    if hardware:
        lines.append(Text(hardware, style="dim"))
    return Group(header, table, *lines, Text(""))


def _interval_note(agg: Any) -> str:
    """What ``±95%`` is, or why it is missing (``"3 trials: no 95% interval ..."``)."""
    stats = agg.statistic("first_token_s") if agg is not None else None
    if stats is None:
        return ""
    if half_width(stats) is not None:
        return "±95%: to the far end of the 95% interval of the median over trials"
    n = stats.n if is_number(stats.n) else 0
    why = why_no_interval(int(n))
    return f"n<6: no interval ({why}; more --trials)" if why else ""


def hardware_line(extra: dict[str, Any]) -> str:
    """One line on what the hardware did: CPU memory before/after loading and the peak of the
    trials (GiB), and energy per phase from telemetry (or which sources were unavailable)."""
    parts = []
    memory = extra.get("memory")
    if isinstance(memory, dict) and is_number(memory.get("peak_rss_bytes")):
        loaded = memory.get("rss_after_load_bytes")
        text = f"RSS loaded {loaded / GiB:.3f} GiB, " if is_number(loaded) else ""
        exact = "exact" if str(memory.get("peak_source")).startswith("VmHWM after") else "sampled"
        parts.append(f"{text}peak {memory['peak_rss_bytes'] / GiB:.3f} GiB ({exact})")
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
        parts.append(f"peak {peak / GiB:.3f} GiB {label}")
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


def compare_table(rows: list[CompareRow], threshold: float, ignore: Any = ()) -> Any:
    """A rich ``Table`` of :func:`~streambench.results.compare.compare_documents` rows: per
    metric OLD → NEW, the ratio NEW/OLD of the medians with its interval, trials per side, the
    verdict; the settings ``ignore``d in the title and what differs under each label (labels and
    reasons escaped: a file's text is never read as rich markup)."""
    from rich.table import Table

    from ...terminal import inert_markup as escape  # control characters too

    table = Table(title=escape(compare_title(threshold, ignore)), title_justify="left")
    table.add_column("configuration")
    table.add_column("trials\nold/new", justify="right")
    metrics = [label for _, _, label, _, _ in COMPARE_METRICS] + ["peak memory"]
    units = {label: unit for _, _, label, _, unit in COMPARE_METRICS}
    units.update({"peak memory": "GiB", "perplexity": "ppl", "agreement": "share"})
    if any("perplexity" in row.values for row in rows):  # --quality on either side
        metrics += ["perplexity", "agreement"]
    for m in metrics:
        table.add_column(f"{m}\nold → new ({units[m]})", justify="right")
        table.add_column(
            "ratio [interval]" if m not in _NO_INTERVAL else "ratio",
            justify="right",
        )
    table.add_column("verdict")
    for row in rows:
        cells = []
        for m in metrics:
            cells += _metric_cells(row, m)
        label = escape(row.label)
        if row.differs:
            label += "\n[dim]" + escape("; ".join(row.differs)) + "[/dim]"
        trials = f"{row.n[0]}/{row.n[1]}" if row.n else ""
        table.add_row(label, trials, *cells, _verdict(row, escape))
    return table


def compare_title(threshold: float, ignore: Any = ()) -> str:
    """The title of the comparison (plain text)."""
    title = (
        f"NEW / OLD of the medians [95 % interval] (lower is faster; slower when the whole "
        f"interval is above {1 + threshold:.3g}×, same when within ±{threshold:.1%})"
    )
    return title + (f"; ignoring {', '.join(sorted(ignore))}" if ignore else "")


def compare_text(rows: list[CompareRow], threshold: float, ignore: Any, width: int) -> str:
    """The comparison as plain lines wrapped to ``width`` (for a console too narrow for
    :func:`compare_table`, or not a terminal): per configuration its label (and what differs),
    then ``trials``, each metric ``old → new`` with the ratio and its interval, and the verdict;
    nothing cut short. Plain text: print it with ``markup=False``."""
    import textwrap

    from .summary import wrap_pairs

    units = {label: unit for _, _, label, _, unit in COMPARE_METRICS}
    units.update({"peak memory": "GiB", "perplexity": "ppl", "agreement": "share"})
    lines = textwrap.wrap(compare_title(threshold, ignore), width=max(width, 40))
    for row in rows:
        lines.append(row.label + (f" ({'; '.join(row.differs)})" if row.differs else ""))
        pairs = [f"trials {row.n[0]}/{row.n[1]}"] if row.n else []
        for m, (old, new) in row.values.items():
            digits = 3 if m != "first token median" else 2
            ratio = interval_text(row, m)
            pairs.append(
                f"{m} {_cell_number(old, digits)} → {_cell_number(new, digits)} {units.get(m, '')}"
                + (f" {ratio}" if ratio else "")
            )
        lines += wrap_pairs(pairs, max(width, 40))
        lines += textwrap.wrap(
            f"verdict: {verdict_text(row)}", max(width, 40), initial_indent="  ",
            subsequent_indent="    ",
        )  # fmt: skip
    return "\n".join(lines)


def compare_fits(console: Any, table: Any) -> bool:
    """Whether ``table`` fits ``console`` (its width: the terminal's, else ``COLUMNS`` or 80)
    without wrapping a cell."""
    from rich.measure import Measurement

    wide = console.options.update(max_width=100_000)  # the table's natural width, unclamped
    return bool(Measurement.get(console, wide, table).maximum <= console.width)


#: metrics compared without an interval over trials (one number per side)
_NO_INTERVAL = ("peak memory", "perplexity", "agreement")
_STYLE = {"slower": "bold red", "faster": "green", "same": "", "unclear": "yellow"}


def _metric_cells(row: CompareRow, metric: str) -> list[str]:
    if metric not in row.values:
        return ["", ""]
    old, new = row.values[metric]
    digits = 3 if metric != "first token median" else 2
    from rich.markup import escape

    text = escape(interval_text(row, metric))  # "[no interval]" is not markup
    iv = row.intervals.get(metric)
    style = _STYLE.get(iv.verdict, "") if iv is not None else ""
    if style and text:
        text = f"[{style}]{text}[/{style}]"
    return [f"{_cell_number(old, digits)} → {_cell_number(new, digits)}", text]


def _verdict(row: CompareRow, escape: Any) -> str:
    verdict = row.verdict
    text = escape(verdict_text(row))
    if row.fails:
        return f"[bold red]{text}[/bold red]"
    style = _STYLE.get(verdict) or ("yellow" if row.problem else "green")
    return f"[{style}]{text}[/{style}]"


def _cell_number(value: float | None, digits: int) -> str:
    if value is None:
        return "?"
    if math.isnan(value):
        return "NaN"
    return fmt(value, digits)
