"""``--quality`` in words: one line per configuration for the terminal summary, and the cells
``compare`` shows beside speed (:mod:`streambench.results.quality` holds the numbers)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...terminal import inert
from ..quality import Quality, quality_of

__all__ = ["quality_cell", "quality_lines"]


def quality_cell(q: Quality | None) -> str:
    """``ppl 264.05 · agree 98.4 %`` (``-`` for what was not measured)."""
    if q is None:
        return "-"
    ppl = f"ppl {q.perplexity:.4g}" if q.perplexity is not None else "ppl -"
    agree = f"agree {q.agreement * 100:.1f} %" if q.agreement is not None else "agree -"
    return f"{ppl} · {agree}"


def _line(name: str, q: Quality) -> str:
    parts = []
    if q.perplexity is not None:
        parts.append(
            f"perplexity {q.perplexity:.4g} ({q.tokens} tokens of {q.texts} text(s), context "
            f"{q.context_length})"
        )
    else:
        parts.append(f"perplexity - ({q.reasons.get('perplexity', 'not measured')})")
    if q.agreement is not None:
        parts.append(
            f"agreement {q.agreement * 100:.1f} % with {q.reference}, first divergence at "
            f"{q.first_divergence_mean:.3g} on average"
        )
    else:
        parts.append(f"agreement - ({q.reasons.get('agreement', 'not measured')})")
    for task, metrics in (q.lm_eval or {}).items():
        shown = ", ".join(
            f"{k} {v:.4g}" for k, v in metrics.items() if v is not None and "stderr" not in k
        )
        parts.append(f"lm-eval {task}: {shown or '-'}")
    if q.lm_eval is None and "lm_eval" in q.reasons:
        parts.append(f"lm-eval - ({q.reasons['lm_eval']})")
    return inert(f"{name}: " + " · ".join(parts))


def quality_lines(entries: Sequence[Any]) -> list[str]:
    """The ``quality`` block of the summary (empty when no configuration has one)."""
    found = [(e.name, quality_of(e)) for e in entries]
    lines = [_line(name, q) for name, q in found if q is not None]
    if lines:
        lines.insert(0, "quality (outside the timed trials; --quality)")
    return lines
