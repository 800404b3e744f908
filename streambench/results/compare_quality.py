"""``streambench compare`` and quality: each pair's perplexity and agreement beside its speed
(:mod:`streambench.results.quality`), and ``--max-quality-drop PCT``: the gate fails when NEW's
perplexity rose, or its agreement with its reference fell, by more than PCT of OLD's. The gate
fails closed here too: with ``--max-quality-drop``, a pair where one side has quality and the
other not (or a number that one side has and the other not) fails, with the reason.
"""

from __future__ import annotations

from typing import Any

from .quality import Quality, quality_of

__all__ = ["compare_quality", "quality_drop_text"]


def _side_missing(qo: Quality | None, qn: Quality | None) -> str | None:
    if qo is None and qn is None:
        return "neither side has quality (run both with --quality)"
    if qo is None:
        return "OLD has no quality and NEW has (run OLD with --quality)"
    if qn is None:
        return "NEW has no quality and OLD has (run NEW with --quality)"
    return None


def _number(row: Any, name: str, old: Any, new: Any, qo: Quality, qn: Quality) -> bool:
    """Whether both sides have ``name``; else the row fails closed with the reason."""
    if old is None and new is None:
        if name == "agreement":  # e.g. both the reference of their sweep: nothing to gate
            return False
        row.fail(f"quality: {name} measured on neither side ({qo.reasons.get(name, '?')})")
        return False
    if old is None or new is None:
        side, q = ("OLD", qo) if old is None else ("NEW", qn)
        row.fail(f"quality: {side} has no {name} ({q.reasons.get(name, 'not measured')})")
        return False
    return True


def compare_quality(row: Any, o: Any, n: Any, max_drop: float | None) -> None:
    """Put the pair's perplexity and agreement beside its speed (``row.values``), and with
    ``max_drop`` (a fraction: 0.02 = 2 %) gate on them: ``row.worse`` names each one that
    worsened beyond it, and fails the row."""
    qo, qn = quality_of(o), quality_of(n)
    if qo is not None or qn is not None:
        row.values["perplexity"] = (qo and qo.perplexity, qn and qn.perplexity)
        row.values["agreement"] = (qo and qo.agreement, qn and qn.agreement)
    if max_drop is None:
        return
    missing = _side_missing(qo, qn)
    if missing:
        row.fail(f"--max-quality-drop: {missing}")
        return
    assert qo is not None and qn is not None
    if _number(row, "perplexity", qo.perplexity, qn.perplexity, qo, qn):
        rise = qn.perplexity / qo.perplexity - 1  # type: ignore[operator]
        if rise > max_drop:
            row.worse.append(f"perplexity rose {rise:.1%} (> {max_drop:.1%})")
    if _number(row, "agreement", qo.agreement, qn.agreement, qo, qn):
        old = qo.agreement or 0.0
        fall = (old - qn.agreement) / old if old > 0 else 0.0  # type: ignore[operator]
        if fall > max_drop:
            row.worse.append(
                f"agreement fell {fall:.1%} ({old:.1%} → {qn.agreement:.1%}; > {max_drop:.1%})"
            )
    if row.worse:
        row.fails = True


def quality_drop_text(row: Any) -> str:
    """What worsened beyond ``--max-quality-drop`` (``""``: nothing)."""
    return "; ".join(getattr(row, "worse", []))
