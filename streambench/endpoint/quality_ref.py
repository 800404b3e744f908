"""``streambench endpoint --quality-reference FILE``: the reference's saved outputs, read and
checked before any request, and the agreement of the server's greedy outputs with them.

The reference is a results file with saved outputs (``streambench run --prompts FILE
--save-outputs``, or an earlier ``streambench endpoint --prompts FILE --save-outputs``) of the
same prompt file. Prompts are matched by their index in the file, and the file by its SHA-256
(``settings.further.prompts``: ``NAME#sha256[:12]``): the same file content puts the same prompt
(the same MD5) at every index, so different prompts are never compared. Both sides' texts are
tokenized with the endpoint's ``--tokenizer`` and compared token by token
(:func:`streambench.results.quality.agreement`): a position one side has and the other not (one
stopped earlier) counts as a difference.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError
from ..results.quality import agreement
from ..terminal import inert
from .spec import EndpointError

__all__ = [
    "ReferenceOutputs",
    "check_greedy",
    "output_agreement",
    "read_reference",
    "served_outputs",
]

#: characters of one saved output at most (a bound on what a hostile file can make us tokenize)
MAX_OUTPUT_CHARS = 1 << 22
#: the largest prompt index a file may hold
MAX_PROMPT_INDEX = 10**9
#: request fields that make a served answer other than greedy (several samples, beam search)
_NOT_GREEDY = ("n", "best_of", "use_beam_search")
_WRITE = "write one with: streambench run MODEL --prompts FILE --save-outputs -o FILE"


@dataclass(frozen=True)
class ReferenceOutputs:
    """One configuration's saved outputs: ``id`` (its configuration id, the quality object's
    ``reference``), ``label``, ``prompts`` (``NAME#sha256[:12]`` of its prompt file), ``chat``
    (its prompts went through a chat template), ``outputs``: prompt index -> generated text
    (the first measured request of that prompt)."""

    path: str
    id: str
    label: str
    prompts: str
    chat: bool
    outputs: Mapping[int, str] = field(default_factory=dict)


def _split_selector(given: str) -> tuple[str, str | None]:
    """``FILE`` or ``FILE#LABEL`` (``#`` is a selector only when ``given`` is not a file)."""
    if os.path.exists(given) or "#" not in given:
        return given, None
    path, _, sel = given.rpartition("#")
    return path, sel or None


def _outputs_of(entry: Mapping[str, Any], command: str, where: str) -> dict[int, str]:
    """Prompt index -> saved text of one configuration (``run``: each trial's
    ``extra.workload.requests``; ``endpoint``: its measured, successful ``requests``)."""
    rows: list[Any] = []
    if command == "endpoint":
        rows = [r for r in _list(entry.get("requests")) if isinstance(r, Mapping)]
        rows = [r for r in rows if r.get("ok") is True and r.get("warmup") is not True]
    else:
        for trial in _list(entry.get("trials")):
            extra = trial.get("extra") if isinstance(trial, Mapping) else None
            work = extra.get("workload") if isinstance(extra, Mapping) else None
            if isinstance(work, Mapping):
                rows += [r for r in _list(work.get("requests")) if isinstance(r, Mapping)]
    out: dict[int, str] = {}
    for row in rows:
        index, text = row.get("prompt_index"), row.get("output_text")
        if text is None:
            continue
        ok_index = isinstance(index, int) and not isinstance(index, bool)
        if not ok_index or not 0 <= index <= MAX_PROMPT_INDEX:
            raise UsageError(f"{where}: a prompt_index is {index!r}, expected a whole number >= 0")
        if not isinstance(text, str) or len(text) > MAX_OUTPUT_CHARS:
            raise UsageError(
                f"{where}: the output_text of prompt {index} is not a text of at most "
                f"{MAX_OUTPUT_CHARS} characters"
            )
        out.setdefault(index, text)
    return out


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _further(entry: Mapping[str, Any]) -> Mapping[str, Any]:
    settings = entry.get("settings")
    further = settings.get("further") if isinstance(settings, Mapping) else None
    return further if isinstance(further, Mapping) else {}


def read_reference(given: str) -> ReferenceOutputs:
    """The saved outputs of ``--quality-reference FILE[#LABEL]`` (a one-line
    :class:`UsageError` naming the file for anything wrong: not a results file, no saved
    outputs, several configurations with outputs and no label, sampled outputs, no prompt
    file)."""
    from ..results.validate import load_document

    path, selector = _split_selector(given)
    option = f"--quality-reference {path}"
    try:
        doc = load_document(path)
    except UsageError as exc:
        raise UsageError(f"{option}: {exc}") from None
    except OSError as exc:
        raise UsageError(f"{option}: cannot read it ({exc.strerror or exc})") from None
    command = doc.get("command") if doc.get("command") == "endpoint" else "run"
    found = []
    for i, entry in enumerate(_list(doc.get("configurations"))):
        if not isinstance(entry, Mapping) or entry.get("status") != "ok":
            continue
        where = f"{option}: configuration {i + 1}"
        if selector is not None and selector not in (entry.get("id"), entry.get("label")):
            continue
        outputs = _outputs_of(entry, command, where)
        if outputs:
            found.append((entry, outputs))
    shown = inert(selector or "")
    if not found:
        what = f"no configuration {shown!r} with" if selector else "no"
        raise UsageError(f"{option}: {what} saved outputs (output_text); {_WRITE}")
    if len(found) > 1:
        labels = ", ".join(inert(str(e.get("label"))) for e, _ in found[:6])
        raise UsageError(
            f"{option}: {len(found)} configurations have saved outputs ({labels}): name one "
            "as FILE#LABEL (or #ID)"
        )
    entry, outputs = found[0]
    return _reference(option, path, command, entry, outputs)


def _reference(
    option: str, path: str, command: str, entry: Mapping[str, Any], outputs: dict[int, str]
) -> ReferenceOutputs:
    further = _further(entry)
    prompts = further.get("prompts")
    if not isinstance(prompts, str) or "#" not in prompts:
        raise UsageError(f"{option}: its outputs are not of a prompt file (--prompts); {_WRITE}")
    settings = entry.get("settings") if isinstance(entry.get("settings"), Mapping) else {}
    config = entry.get("config") if isinstance(entry.get("config"), Mapping) else {}
    if command == "endpoint":
        problem = check_greedy(config.get("extra_body"), 0.0)
        chat = settings.get("chat") is True
    else:
        beams = settings.get("num_beams", 1)
        problem = "it sampled (do_sample)" if further.get("do_sample") is True else None
        if beams not in (None, 1):
            problem = f"it used beam search ({inert(str(beams))} beams)"
        chat = further.get("chat_template") is True
    if problem:
        raise UsageError(f"{option}: its outputs are not greedy: {problem}; run it greedy")
    if further.get("shared_prefix"):
        raise UsageError(f"{option}: its prompts had a --shared-prefix: no reference for these")
    return ReferenceOutputs(
        path=path,
        id=str(entry.get("id")),
        label=str(entry.get("label")),
        prompts=prompts,
        chat=chat,
        outputs=dict(outputs),
    )


def check_greedy(extra_body: Any, temperature: float | None) -> str | None:
    """Why requests with ``extra_body`` at ``temperature`` are not greedy (``None``: they
    are: temperature 0, one answer, no beam search)."""
    body = dict(extra_body) if isinstance(extra_body, Mapping) else {}
    temp = body.get("temperature", temperature)
    if not isinstance(temp, (int, float)) or isinstance(temp, bool) or temp != 0:
        return f"temperature {inert(str(temp))} (greedy is temperature 0)"
    for key in _NOT_GREEDY:
        value = body.get(key)
        if value not in (None, False, 1):
            return f"{key}={inert(str(value))} in --extra-body"
    return None


def check_against(spec: Any, ref: ReferenceOutputs) -> None:
    """Refuse (exit 2, before any request) an endpoint run whose outputs cannot be compared
    with ``ref``: not greedy, outputs not saved, no prompt file or another one, no tokenizer,
    a chat template on one side only."""
    option = f"--quality-reference {ref.path}"
    w = spec.workload
    if spec.tokenizer is None:
        raise EndpointError(f"{option} tokenizes both sides' outputs: give --tokenizer DIR")
    if w is None or not w.uses_file or spec.multi_turn is not None or spec.trace is not None:
        raise EndpointError(f"{option} compares the outputs of a prompt file: give --prompts FILE")
    if not w.save_outputs:
        raise EndpointError(f"{option} compares the server's saved outputs: add --save-outputs")
    if w.shared_prefix:
        raise EndpointError(f"{option}: --shared-prefix changes the prompts: drop it")
    problem = check_greedy(spec.extra_body, spec.temperature)
    if problem:
        raise EndpointError(f"{option} needs greedy outputs, and the requests have {problem}")
    mine = (w.identity().get("prompts") or "").rpartition("#")[2]
    theirs = ref.prompts.rpartition("#")[2]
    if not mine or mine != theirs:
        raise EndpointError(
            f"{option}: its outputs are of other prompts ({inert(ref.prompts)}, not "
            f"{inert(os.path.basename(str(w.prompts)))}#{mine}): give the same --prompts file"
        )
    if ref.chat != bool(spec.chat):
        side = "its prompts went" if ref.chat else "--chat sends the prompts"
        raise EndpointError(
            f"{option}: {side} through a chat template and the other side's did not: run "
            "both with or both without one"
        )


def served_outputs(records: Any) -> dict[int, str]:
    """Prompt index -> the server's text (the first successful measured request of it)."""
    out: dict[int, str] = {}
    for rec in records:
        if rec.ok and not rec.warmup and rec.prompt_index is not None:
            if rec.output_text is not None:
                out.setdefault(int(rec.prompt_index), rec.output_text)
    return out


def output_agreement(
    mine: Mapping[int, str], ref: ReferenceOutputs, tokenizer: Any
) -> tuple[float | None, float | None, str]:
    """``(agreement, first divergence mean, why None)`` of the server's outputs ``mine``
    against ``ref``'s, over the prompts both have, tokenized with ``tokenizer``."""
    common = sorted(set(mine) & set(ref.outputs))
    if not common:
        return None, None, f"no prompt of the reference {ref.id} was answered here"

    def ids(text: str) -> list[int]:
        return [int(t) for t in tokenizer(text, add_special_tokens=False)["input_ids"]]

    a, b = [], []
    for index in common:
        x, y = ids(mine[index]), ids(ref.outputs[index])
        n = max(len(x), len(y))  # a missing position (one side stopped earlier) differs
        a.append(x + [-1] * (n - len(x)))
        b.append(y + [-2] * (n - len(y)))
    share, first = agreement(a, b)
    if not (math.isfinite(share) and math.isfinite(first)):
        return None, None, "the agreement is not a finite number"
    return share, first, ""
