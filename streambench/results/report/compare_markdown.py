"""``streambench compare -o FILE.md``: the comparison of :mod:`.compare` as Markdown, ready for a
pull-request comment."""

from __future__ import annotations

import math
from typing import Any

from ..compare import COMPARE_METRICS, CompareRow, interval_text, verdict_text
from ..values import fmt, is_number
from ..writers import md_text

__all__ = ["compare_markdown"]


def compare_markdown(
    rows: list[CompareRow],
    failed: bool,
    threshold: float,
    old_name: str,
    new_name: str,
    ignore: Any = (),
) -> str:
    """The comparison as Markdown for a pull-request comment: the gate's outcome, then one row
    per configuration with the trials per side, OLD, NEW and the ratio NEW/OLD of each metric
    with its interval (a slower one in bold), and the verdict (as in the terminal: slower,
    faster, same, unclear, or why the row could not be compared). Text from the files is
    escaped (:func:`~streambench.results.writers.md_text`)."""
    metrics: list[str] = []
    for row in rows:
        metrics += [m for m in row.values if m not in metrics]
    units = {label: unit for _n, _s, label, _scale, unit in COMPARE_METRICS}
    units["peak memory"] = "GiB"
    verdict = (
        f"**Regression, or not comparable** (threshold {threshold:.1%}; the gate fails closed)"
        if failed
        else f"**No regression** beyond {threshold:.1%}"
    )
    head = ["configuration", "trials OLD/NEW"]
    for m in metrics:
        head += [f"{m} OLD ({units.get(m, '')})", "NEW"]
        head.append("ratio" if m == "peak memory" else "ratio [interval]")
    head.append("verdict")
    ignored = f" Ignoring {md_text(', '.join(sorted(ignore)))}." if ignore else ""
    lines = [
        f"### streambench compare: {md_text(new_name)} against {md_text(old_name)}",
        "",
        verdict + ". Ratio = NEW / OLD of the medians, lower is better; the interval is 95 % "
        "over the trials (its coverage shown when less); slower = the whole interval above "
        f"{1 + threshold:.3g}, same = within ±{threshold:.3g}, unclear = it straddles." + ignored,
        "",
        "| " + " | ".join(head) + " |",
        "|"
        + "|".join("---" if i in (0, len(head) - 1) else "---:" for i in range(len(head)))
        + "|",
    ]
    for row in rows:
        label = md_text(row.label)
        if row.differs:
            label += "<br>" + md_text("; ".join(row.differs))
        cells = [label, f"{row.n[0]}/{row.n[1]}" if row.n else ""]
        for m in metrics:
            old, new = row.values.get(m, (None, None))
            text = md_text(interval_text(row, m)) if m in row.values else ""
            if m in row.regressed:
                text = f"**{text or 'n/a'} slower**"
            cells += [_cell(old), _cell(new), text]
        cells.append(md_text(verdict_text(row)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: float | None) -> str:
    if value is None or not is_number(value) or math.isnan(value):
        return ""
    return fmt(value, 3)
