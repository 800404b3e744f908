"""``streambench compare -o FILE.md``: the comparison of :mod:`.compare` as Markdown, ready for a
pull-request comment."""

from __future__ import annotations

import math

from .compare import COMPARE_METRICS, CompareRow
from .values import fmt, is_number
from .writers import md_text

__all__ = ["compare_markdown"]


def compare_markdown(
    rows: list[CompareRow], failed: bool, threshold: float, old_name: str, new_name: str
) -> str:
    """The comparison as Markdown for a pull-request comment: the verdict, then one row per
    configuration with OLD, NEW and the ratio NEW/OLD of each metric (a regression in bold,
    marked "slower"), and why a row could not be compared. Text from the files is escaped
    (:func:`~streambench.results.writers.md_text`)."""
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
    head = ["configuration"]
    for m in metrics:
        head += [f"{m} OLD ({units.get(m, '')})", "NEW", "ratio"]
    head.append("problem")
    lines = [
        f"### streambench compare: {md_text(new_name)} against {md_text(old_name)}",
        "",
        verdict + ". Ratio = NEW / OLD; lower is better.",
        "",
        "| " + " | ".join(head) + " |",
        "|"
        + "|".join("---" if i == 0 or i == len(head) - 1 else "---:" for i in range(len(head)))
        + "|",
    ]
    for row in rows:
        cells = [md_text(row.label)]
        for m in metrics:
            old, new = row.values.get(m, (None, None))
            ratio = row.ratio(m) if m in row.values else None
            text = "" if ratio is None else f"{ratio:.3f}"
            if m in row.regressed:
                text = f"**{text or 'n/a'} slower**"
            cells += [_cell(old), _cell(new), text]
        cells.append(md_text(row.problem or ""))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: float | None) -> str:
    if value is None or not is_number(value) or math.isnan(value):
        return ""
    return fmt(value, 3)
