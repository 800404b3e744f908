"""``streambench run --quality``: after a configuration's trials, on the same loaded model and
outside the timed trials, the workload's own texts teacher-forced — perplexity, and each
position's greedy token for the agreement with a reference configuration
(:mod:`streambench.results.quality`, which also computes the agreement once the reference is
known: the reference may run in another worker process).

The texts: a prompt file's prompts (each as the tokenizer made it, at most :data:`MAX_TEXTS`,
each cut to the model's context), or the built-in synthetic text at the configuration's full
length (input + output tokens). The scores come from the engine
(:meth:`streambench.engines.Engine.forced_scores`); an engine that cannot score leaves the
fields ``null`` with its reason.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from typing import Any

from ...errors import UsageError, describe_exception
from ...results.quality import Quality
from ...results.schema import ConfigurationResult

__all__ = ["MAX_TEXTS", "measure_quality", "reference_of", "scored_texts"]

#: texts scored at most (the first ones of the workload): a bound on time and on the greedy
#: tokens kept in the results
MAX_TEXTS = 64
#: tokens of one text at most when the model says no context length
MAX_TEXT_TOKENS = 4096


def scored_texts(loaded: Any, source: Any, n_in: Any, n_out: Any) -> list[list[int]]:
    """The token ids of the texts to score (each at least 2 tokens)."""
    limit = min(int(loaded.context_length or MAX_TEXT_TOKENS), MAX_TEXT_TOKENS)
    reqs = getattr(source, "reqs", None)
    if reqs is not None:  # a workload (a prompt file or drawn lengths): its own prompts
        texts = [list(r.input_ids)[:limit] for r in reqs[:MAX_TEXTS]]
    else:
        from ...workloads.synthetic import build_prompt

        length = min(int(n_in or 0) + int(n_out or 0), limit)
        texts = [build_prompt(loaded, max(length, 2), 1).tolist()[0]]
    return [[int(t) for t in text] for text in texts if len(text) >= 2]


def reference_of(settings: Any, result: ConfigurationResult) -> tuple[str | None, str]:
    """The id of ``result``'s reference configuration, and why there is none (``""``): the one
    ``--quality-reference`` names (a label or an id), else the first configuration of the sweep,
    before this one, of the same model, lengths and batch size whose generation settings differ
    from this one's in exactly one setting (dtype, engine, attention, compile ...), else the
    first configuration of those (an OpenVINO int8 row, which differs in engine and low-bit,
    against the transformers baseline)."""
    from .plan import configuration_id, configuration_label, iter_plan

    s, me = settings, result.settings
    plan = []
    for spec, vi, n_in, n_out, batch in iter_plan(s):
        variant = s.variants[vi]
        key = configuration_id(spec.name, n_in, n_out, batch, s.num_beams, s.workload, variant)
        label = configuration_label(s, spec.name, n_in, n_out, batch, variant)
        plan.append((key, label, (spec.name, n_in, n_out, batch), variant))
    if s.quality_reference is not None:
        for key, label, _where, _variant in plan:
            if s.quality_reference in (key, label):
                if key == result.id:
                    return None, "this is the reference (--quality-reference)"
                return key, ""
        return None, f"--quality-reference {s.quality_reference!r} is no configuration of the sweep"
    mine = next((p for p in plan if p[0] == result.id), None)
    if mine is None:
        return None, "this configuration is not in the sweep's plan"
    where = (me.model, me.input_tokens, me.output_tokens, me.batch_size)
    before = []
    for key, _label, at, variant in plan:
        if key == result.id:
            break
        if at == where:
            before.append((key, variant))
    for key, variant in before:
        if _differ_in_one(variant, mine[3]):
            return key, ""
    if before:  # several settings differ (engine and low-bit): the baseline of these lengths
        return before[0][0], ""
    return None, "this is the sweep's first configuration of this model, lengths and batch size"


def _differ_in_one(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return sum(1 for k in {*a, *b} if a.get(k) != b.get(k)) == 1


def check_reference(settings: Any, labels: list[tuple[str, str]]) -> None:
    """``--quality-reference`` names a configuration of the sweep (``labels``: ``(id, label)``
    of each planned one), checked before any model loads."""
    ref = getattr(settings, "quality_reference", None)
    if ref is not None and not any(ref in pair for pair in labels):
        shown = ", ".join(label for _id, label in labels[:6])
        raise UsageError(
            f"--quality-reference {ref!r} is no configuration of this sweep: use one of its "
            f"labels ({shown}) or ids"
        )


def measure_quality(
    loaded: Any,
    settings: Any,
    source: Any,
    result: ConfigurationResult,
    variant: dict[str, Any],
    print_fn: Callable[[str], None] = print,
) -> None:
    """``result.extra["quality"]``: perplexity and greedy tokens of the workload's texts, the
    reference's id (the agreement is filled by the driver), ``--lm-eval``'s tasks."""
    from ...engines import engine_of, get_engine

    q = Quality()
    q.reference, why = reference_of(settings, result)
    if q.reference is None:
        q.why("agreement", why)
        q.why("first_divergence_mean", why)
    me = result.settings
    texts = scored_texts(loaded, source, me.input_tokens, me.output_tokens)
    q.texts = len(texts)
    q.context_length = max((len(t) for t in texts), default=None)
    q.texts_md5 = hashlib.md5(json.dumps(texts).encode(), usedforsecurity=False).hexdigest()
    engine = get_engine(engine_of(variant))
    try:
        scores = [engine.forced_scores(loaded, text) for text in texts]
    except Exception as exc:  # noqa: BLE001 - the trials stand; quality is null with the reason
        reason = str(exc) if isinstance(exc, NotImplementedError) else describe_exception(exc)
        for name in ("perplexity", "tokens", "greedy", "agreement", "first_divergence_mean"):
            q.why(name, reason.splitlines()[0] if reason else "not scored")
        print_fn(f"{result.label}: --quality: {q.reasons['perplexity']}")
    else:
        nll = [x for losses, _greedy in scores for x in losses]
        q.tokens = len(nll)
        q.greedy = [greedy for _losses, greedy in scores]
        mean = sum(nll) / len(nll) if nll else math.nan
        if math.isfinite(mean) and mean < 700:  # exp() overflows beyond ~709
            q.perplexity = math.exp(mean)
        else:
            q.why("perplexity", "the log-likelihood is not finite (overflow in this dtype?)")
    if settings.lm_eval:
        from .lm_eval import run_tasks

        try:
            q.lm_eval = run_tasks(loaded, settings.lm_eval, settings.seed)
        except Exception as exc:  # noqa: BLE001 - recorded with its reason
            q.why("lm_eval", describe_exception(exc).splitlines()[0])
            print_fn(f"{result.label}: --lm-eval failed: {q.reasons['lm_eval']}")
    result.extra["quality"] = q.to_dict()
