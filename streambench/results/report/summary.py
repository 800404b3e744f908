"""The summary at the end of ``streambench run`` and ``streambench endpoint``: one row per
configuration with the medians over trials and their 95 % intervals.

Each row: first token (ms) and later tokens (ms/token) as ``median ±h`` (``h``: the larger
distance from the median to an end of its 95 % interval, :func:`.trial_intervals.half_width`;
no ``±`` with fewer than 6 trials), decode tokens/s per sequence and for the whole batch (medians),
peak memory (GiB), trials (and why they stopped, where recorded) and a ``noisy`` flag (the
configuration has ``warnings``: a busy machine, …).

On a terminal wide enough it is a table; otherwise (a narrow terminal, or stdout piped to a file
or a CI log) each configuration is a block of lines wrapped to the width, so that nothing is cut
short.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any

from ..schema import ConfigurationResult
from ..trial_intervals import half_width, trial_values
from ..values import GiB, fmt, is_number
from ..verdicts import MAX_SPREAD, spread

__all__ = ["SUMMARY_COLUMNS", "print_summary", "summary_rows", "summary_text"]

#: column titles of the summary (the first is the configuration)
SUMMARY_COLUMNS = (
    "configuration",
    "first token (ms)",
    "ms/token",
    "tok/s/seq",
    "tok/s batch",
    "peak GiB",
    "trials",
    "noisy",
)


def _median_pm(entry: ConfigurationResult, name: str, scale: float, digits: int) -> str:
    stats = entry.aggregates.statistic(name) if entry.aggregates is not None else None
    if stats is None or not is_number(stats.median):
        return "-"
    text = fmt(stats.median * scale, digits)
    h = half_width(stats)
    return f"{text} ±{fmt(h * scale, digits)}" if h is not None else text


def _median(entry: ConfigurationResult, name: str, digits: int) -> str:
    stats = entry.aggregates.statistic(name) if entry.aggregates is not None else None
    if stats is None or not is_number(stats.median):
        return "-"
    return fmt(stats.median, digits)


def _trials(entry: ConfigurationResult) -> str:
    text = str(len(entry.trials))
    stopped = entry.extra.get("stopped")
    return f"{text} ({stopped})" if isinstance(stopped, str) and stopped else text


def _noisy(entry: ConfigurationResult) -> str:
    """``"noisy"`` when the configuration has warnings (a busy machine, …) or its first-token or
    later-token trials vary by more than :data:`~.verdicts.MAX_SPREAD` of their median."""
    warnings = entry.extra.get("warnings")
    if isinstance(warnings, list) and warnings:
        return "noisy"
    for key in ("first_token_s", "rest_token_mean_s"):
        values = [v for v in trial_values(entry.trials, key) if is_number(v) and v > 0]
        s = spread(values)
        if s is not None and s > MAX_SPREAD:
            return "noisy"
    return ""


def summary_rows(entries: Sequence[ConfigurationResult]) -> list[list[str]]:
    """One row of :data:`SUMMARY_COLUMNS` cells per configuration; a configuration that did
    not finish shows its status in place of the numbers."""
    rows = []
    for e in entries:
        if e.status != "ok" or e.aggregates is None:
            rows.append([e.name, e.status or "failed", "", "", "", "", _trials(e), ""])
            continue
        peak = e.aggregates.peak_memory_bytes
        rows.append(
            [
                e.name,
                _median_pm(e, "first_token_s", 1e3, 2),
                _median_pm(e, "rest_token_mean_s", 1e3, 3),
                _median(e, "decode_tokens_per_s", 1),
                _median(e, "decode_throughput_tokens_per_s", 1),
                fmt(peak / GiB, 3) if is_number(peak) else "-",
                _trials(e),
                _noisy(e),
            ]
        )
    return rows


_FOOTNOTE = (
    "median over trials; ±: to the far end of its 95 % interval (none with fewer than 6 "
    "trials); noisy: the configuration's warnings, or trials whose interquartile range is "
    "over 50 % of the median"
)


def _table_width(rows: list[list[str]]) -> int:
    widths = [max(len(r[i]) for r in [list(SUMMARY_COLUMNS), *rows]) for i in range(8)]
    return sum(widths) + 3 * len(widths) + 1  # rich's borders and padding


def wrap_pairs(pairs: list[str], width: int) -> list[str]:
    """``pairs`` joined by ``" · "`` on lines of at most ``width`` (indented by 2), a pair never
    split (a pair longer than a line gets a line of its own)."""
    lines: list[str] = []
    line = ""
    for pair in pairs:
        candidate = f"{line} · {pair}" if line else f"  {pair}"
        if line and len(candidate) > width:
            lines.append(line)
            candidate = f"  {pair}"
        line = candidate
    if line:
        lines.append(line)
    return lines


def summary_text(entries: Sequence[ConfigurationResult], width: int) -> str:
    """The plain layout: per configuration its name, then ``column: value`` pairs wrapped to
    ``width`` (nothing cut short), then the footnote."""
    lines = ["summary (one line per configuration, medians over trials)"]
    for row in summary_rows(entries):
        lines.append(row[0])
        pairs = [f"{c}: {v}" for c, v in zip(SUMMARY_COLUMNS[1:], row[1:]) if v]
        lines += wrap_pairs(pairs, max(width, 40))
    lines += textwrap.wrap(_FOOTNOTE, width=max(width, 40))
    return "\n".join(lines)


def print_summary(console: Any, entries: Sequence[ConfigurationResult]) -> None:
    """Print the summary on ``console`` (rich): a table on a terminal wide enough for it
    without cutting a cell, else :func:`summary_text` (text from files never read as markup);
    then what ``--quality`` measured."""
    rows = summary_rows(entries)
    if not rows:
        return
    _print_table(console, entries, rows)
    from .quality_text import quality_lines

    for line in quality_lines(entries):
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def _print_table(
    console: Any, entries: Sequence[ConfigurationResult], rows: list[list[str]]
) -> None:
    from rich.table import Table
    from rich.text import Text

    if not console.is_terminal or _table_width(rows) > console.width:
        console.print(summary_text(entries, console.width), markup=False, highlight=False)
        return
    table = Table(title="summary (medians over trials)", title_justify="left")
    for i, name in enumerate(SUMMARY_COLUMNS):
        table.add_column(name, justify="left" if i == 0 else "right", no_wrap=True)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row), style="yellow" if row[-1] else None)
    console.print(table, markup=False)
    console.print(_FOOTNOTE, style="dim", markup=False, highlight=False)
