"""Quality beside speed: a configuration's results/2 ``quality`` object (``streambench run
--quality``), its validation, and the agreement of configurations with their reference.

- ``perplexity``: ``exp`` of the mean negative log-likelihood of the workload's own texts,
  teacher-forced (every token of every text after its first, given the tokens before it); 1 is
  a model that is always sure and right; ``tokens``: how many tokens were scored; ``texts``: of
  how many texts; ``context_length``: the longest text, in tokens.
- ``agreement``: the share (0 to 1) of those positions where the configuration's greedy token
  (the argmax of its logits) is the reference's; ``first_divergence_mean``: the mean, over the
  texts, of the first position (from 0) where they differ (a text that never differs counts
  its length); ``reference``: the reference configuration's id.
- ``greedy``: the greedy tokens themselves (token ids, one list per text), so that a reference
  measured in another process (``--isolate config``) can be compared afterwards;
  ``texts_md5``: of the scored token ids (a reference that scored other texts is no reference).
- ``reasons``: why a field is ``null`` (``{"agreement": "..."}``); ``lm_eval``: each
  lm-evaluation-harness task's metrics (``--lm-eval``).

A file from elsewhere is checked field by field (:func:`check_quality`) before a reader sees it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError
from .values import is_int, is_number, kind

__all__ = [
    "MAX_TOKEN_ID",
    "Quality",
    "agreement",
    "check_quality",
    "link_references",
    "quality_columns",
    "quality_of",
]

#: the largest token id a file may hold (vocabularies are far smaller)
MAX_TOKEN_ID = 2**31 - 1
_DAMAGED = "the file is damaged or not a streambench results file (write a new one with -o)"


@dataclass
class Quality:
    """One configuration's ``quality`` object (see the module's docstring for each number)."""

    perplexity: float | None = None
    tokens: int | None = None
    texts: int | None = None
    context_length: int | None = None
    agreement: float | None = None
    first_divergence_mean: float | None = None
    reference: str | None = None
    texts_md5: str | None = None
    greedy: list[list[int]] | None = None
    reasons: dict[str, str] = field(default_factory=dict)
    lm_eval: dict[str, dict[str, float | None]] | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Quality:
        names = cls.__dataclass_fields__
        out = cls(**{k: data[k] for k in names if k in data and k != "reasons"})
        out.reasons = dict(data.get("reasons") or {})
        return out

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def why(self, name: str, reason: str) -> None:
        """``name`` is ``null`` because of ``reason`` (one line)."""
        setattr(self, name, None)
        self.reasons[name] = reason


def quality_of(entry: Any) -> Quality | None:
    """The ``quality`` object of a configuration (a :class:`ConfigurationResult`), or ``None``."""
    extra = getattr(entry, "extra", None)
    value = extra.get("quality") if isinstance(extra, Mapping) else None
    return Quality.from_dict(value) if isinstance(value, Mapping) else None


#: the CSV columns of ``--quality`` (appended after every other column where measured)
QUALITY_COLUMNS = [
    "perplexity",
    "quality tokens",
    "agreement",
    "first divergence mean",
    "quality reference",
    "lm-eval",
]


def quality_columns(entry: Any) -> dict[str, Any]:
    """The :data:`QUALITY_COLUMNS` of a configuration with ``quality`` (else none); ``lm-eval``:
    ``task.metric=value`` pairs separated by ``; ``."""
    q = quality_of(entry)
    if q is None:
        return {}
    evals = "; ".join(
        f"{task}.{name}={value:.6g}"
        for task, metrics in (q.lm_eval or {}).items()
        for name, value in metrics.items()
        if value is not None and not name.endswith("_stderr")
    )
    values = [q.perplexity, q.tokens, q.agreement, q.first_divergence_mean, q.reference, evals]
    return {k: "" if v is None else v for k, v in zip(QUALITY_COLUMNS, values)}


def agreement(
    greedy: Sequence[Sequence[int]], reference: Sequence[Sequence[int]]
) -> tuple[float, float]:
    """``(share of positions whose greedy tokens match, mean first divergence)`` of two
    configurations' greedy tokens over the same texts (one list per text, equal lengths).

    >>> agreement([[1, 2, 3], [4, 5]], [[1, 9, 3], [4, 5]])
    (0.8, 1.5)
    """
    same = total = 0
    firsts = []
    for mine, theirs in zip(greedy, reference):
        matches = [a == b for a, b in zip(mine, theirs)]
        same += sum(matches)
        total += len(matches)
        firsts.append(matches.index(False) if False in matches else len(matches))
    return (same / total if total else 1.0), (sum(firsts) / len(firsts) if firsts else 0.0)


def _comparable(mine: Quality, ref: Quality) -> str | None:
    """Why ``ref`` cannot be ``mine``'s reference (``None``: it can)."""
    if ref.greedy is None:
        return f"the reference {mine.reference} has no greedy tokens ({_reason(ref, 'greedy')})"
    if mine.texts_md5 != ref.texts_md5 or len(mine.greedy or []) != len(ref.greedy):
        return (
            f"the reference {mine.reference} scored other texts (another tokenizer or "
            "workload): no agreement"
        )
    if any(len(a) != len(b) for a, b in zip(mine.greedy or [], ref.greedy)):
        return f"the reference {mine.reference} scored texts of other lengths: no agreement"
    return None


def _reason(q: Quality, name: str) -> str:
    return q.reasons.get(name) or q.reasons.get("perplexity") or "not measured"


def link_references(entries: Sequence[Any]) -> None:
    """Fill ``agreement`` and ``first_divergence_mean`` of every configuration whose reference
    is among ``entries`` (:class:`ConfigurationResult` objects, in place): the driver calls it
    as each configuration finishes, so a reference measured in another worker process counts."""
    found = {str(e.id): e for e in entries if getattr(e, "id", None) is not None}
    for entry in entries:
        mine = quality_of(entry)
        if mine is None or mine.reference is None or mine.greedy is None:
            continue
        ref = quality_of(found.get(mine.reference))
        if ref is None:
            mine.why("agreement", f"the reference {mine.reference} has no quality (yet)")
        elif problem := _comparable(mine, ref):
            mine.why("agreement", problem)
        else:
            mine.agreement, mine.first_divergence_mean = agreement(mine.greedy, ref.greedy)
            mine.reasons.pop("agreement", None)
        if mine.agreement is None:
            mine.first_divergence_mean = None
            mine.reasons["first_divergence_mean"] = mine.reasons["agreement"]
        else:
            mine.reasons.pop("first_divergence_mean", None)
        entry.extra["quality"] = mine.to_dict()


# -- a file from elsewhere -----------------------------------------------------------------------
def _finite(value: Any) -> bool:
    """A JSON number that is neither NaN nor infinite (an integer too large for a float is
    not: ``math.isfinite`` would raise on it)."""
    try:
        return is_number(value) and math.isfinite(value)
    except OverflowError:
        return False


def _fail(source: str, where: str, value: Any, expected: str) -> None:
    raise UsageError(f"{source}: {where} is {kind(value)}, expected {expected}; {_DAMAGED}")


def _number(q: Mapping[str, Any], key: str, low: float, high: float, where: str, src: str) -> None:
    value = q.get(key)
    if value is None:
        return
    if not _finite(value) or not low <= value <= high:
        _fail(src, f"{where}.{key}", value, f"a finite number from {low:g} to {high:g} or null")


def _whole(q: Mapping[str, Any], key: str, low: int, where: str, src: str) -> None:
    value = q.get(key)
    if value is not None and (not is_int(value) or value < low):
        _fail(src, f"{where}.{key}", value, f"a whole number >= {low} or null")


def check_quality(q: Any, where: str, source: str) -> None:
    """A ``quality`` object read from ``source`` (hostile): every field of its type and within
    its bounds, else one :class:`UsageError` line naming the file and the place."""
    if q is None:
        return
    if not isinstance(q, Mapping):
        _fail(source, where, q, "an object or null")
    _number(q, "perplexity", 1.0, math.inf, where, source)
    _number(q, "agreement", 0.0, 1.0, where, source)
    _number(q, "first_divergence_mean", 0.0, math.inf, where, source)
    for key, low in (("tokens", 0), ("texts", 0), ("context_length", 1)):
        _whole(q, key, low, where, source)
    for key in ("reference", "texts_md5"):
        if q.get(key) is not None and not isinstance(q[key], str):
            _fail(source, f"{where}.{key}", q[key], "a string or null")
    _check_greedy(q.get("greedy"), f"{where}.greedy", source)
    reasons = q.get("reasons")
    if reasons is not None:
        if not isinstance(reasons, Mapping):
            _fail(source, f"{where}.reasons", reasons, "an object of texts")
        for key, text in reasons.items():
            if not isinstance(text, str):
                _fail(source, f"{where}.reasons.{key}", text, "a string")
    _check_lm_eval(q.get("lm_eval"), f"{where}.lm_eval", source)


def _check_greedy(greedy: Any, where: str, source: str) -> None:
    if greedy is None:
        return
    if not isinstance(greedy, list):
        _fail(source, where, greedy, "a list of token-id lists or null")
    for i, row in enumerate(greedy):
        if not isinstance(row, list):
            _fail(source, f"{where}[{i}]", row, "a list of token ids")
        for j, token in enumerate(row):
            if not is_int(token) or not 0 <= token <= MAX_TOKEN_ID:
                _fail(source, f"{where}[{i}][{j}]", token, "a token id (a whole number >= 0)")


def _check_lm_eval(tasks: Any, where: str, source: str) -> None:
    if tasks is None:
        return
    if not isinstance(tasks, Mapping):
        _fail(source, where, tasks, "an object of tasks or null")
    for task, metrics in tasks.items():
        if not isinstance(metrics, Mapping):
            _fail(source, f"{where}.{task}", metrics, "an object of metrics")
        for name, value in metrics.items():
            if value is not None and not _finite(value):
                _fail(source, f"{where}.{task}.{name}", value, "a finite number or null")
