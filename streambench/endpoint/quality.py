"""``streambench endpoint --quality``: the quality of a *served* model beside its speed, in the
same results/2 ``quality`` object as ``streambench run --quality``
(:mod:`streambench.results.quality`), one per load point.

- **perplexity** of the workload's prompts (a prompt file's first :data:`MAX_TEXTS`, or the
  generated prompts of ``--in-out``), from the server's own log-probabilities: each prompt sent
  once to ``/completions`` with ``echo: true, logprobs: 1, max_tokens: 1, temperature: 0``
  (not streamed), its ``choices[0].logprobs.token_logprobs`` read for the prompt's tokens after
  the first (the first has none). Perplexity is ``exp`` of the mean negative log-probability
  over those tokens of every prompt, as ``run --quality`` pools them. These requests are sent
  once, after the first load point's timed requests, never inside a timed phase. Every number
  is checked (finite, ``<= 0``, as many prompt tokens as the ``--tokenizer`` makes, else as
  the server's ``usage.prompt_tokens`` says); a server that does not echo log-probabilities
  (the chat API cannot; an HTTP error; missing fields; a bad number) leaves ``perplexity``
  ``null`` with the reason, one inert line, and the benchmark goes on.
- **agreement** with ``--quality-reference FILE``'s saved outputs
  (:mod:`streambench.endpoint.quality_ref`): per load point, from its own greedy outputs.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from ..results.quality import Quality
from ..terminal import inert
from .quality_ref import (
    ReferenceOutputs,
    check_against,
    output_agreement,
    read_reference,
    served_outputs,
)
from .scrub import scrub_text
from .spec import EndpointError, EndpointSpec

__all__ = [
    "MAX_TEXTS",
    "QUALITY_OPTIONS",
    "QualityPlan",
    "ServedQuality",
    "add_quality_arguments",
    "point_quality",
    "prompt_perplexity",
    "quality_plan",
]

#: prompts scored at most (the first ones), as ``run --quality``
MAX_TEXTS = 64
#: bytes of one echo answer at most (a hostile server cannot make us hold more)
MAX_ANSWER_BYTES = 32 << 20
#: characters of a reason kept
MAX_REASON = 300
_FIELDS = ("perplexity", "tokens")

#: ``(flags, add_argument keywords)`` in ``--help`` order (see docs/endpoint.md)
QUALITY_OPTIONS: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = (
    (("--quality",), dict(action="store_true", help="also measure quality, outside the timed "
        "requests: perplexity of the prompts from the server's echoed log-probabilities "
        "(/completions echo+logprobs, as vLLM serves them); results: quality")),
    (("--quality-reference",), dict(default=None, metavar="FILE[#LABEL]", help="--quality: "
        "agreement of the server's greedy outputs with a results file's saved outputs of the "
        "same --prompts file (streambench run --prompts FILE --save-outputs); needs "
        "--save-outputs and --tokenizer")),
)  # fmt: skip


def add_quality_arguments(parser: Any) -> None:
    for flags, keywords in QUALITY_OPTIONS:
        parser.add_argument(*flags, **keywords)


@dataclass(frozen=True)
class QualityPlan:
    """What ``--quality`` measures: perplexity, and the reference's outputs (``None``: no
    agreement)."""

    reference: ReferenceOutputs | None = None


def quality_plan(args: Any, specs: list[EndpointSpec]) -> QualityPlan | None:
    """``--quality`` and ``--quality-reference`` checked against every spec before any request
    (a one-line :class:`EndpointError` naming the option: exit 2); ``None`` without
    ``--quality``."""
    given = getattr(args, "quality_reference", None)
    if not getattr(args, "quality", False):
        if given is not None:
            raise EndpointError("--quality-reference needs --quality: add it")
        return None
    if specs[0].backend != "openai":
        raise EndpointError(
            f"--quality asks /completions for echoed log-probabilities, which --backend "
            f"{specs[0].backend} does not build: use the default backend"
        )
    if given is None:
        return QualityPlan()
    if not str(given).strip():
        raise EndpointError("--quality-reference is empty: give a results file")
    ref = read_reference(str(given))
    for spec in specs:
        check_against(spec, ref)
    return QualityPlan(reference=ref)


def _reason(text: str, secrets: Any = ()) -> str:
    """One inert line of at most :data:`MAX_REASON` characters, secrets masked."""
    line = " ".join(scrub_text(str(text), secrets).split())
    return inert(line, newlines=False)[:MAX_REASON]


def scored_prompts(spec: EndpointSpec, tokenizer: Any) -> list[str]:
    """The prompts to score: the workload's (a prompt file's, drawn lengths'), ``--prompt``,
    or the generated ones of ``--in-out`` (the first :data:`MAX_TEXTS`)."""
    from .prompts import make_prompts

    if spec.workload_requests:
        texts = [r.text for r in spec.workload_requests[:MAX_TEXTS]]
        return [t for t in texts if isinstance(t, str) and t]
    if spec.prompt is not None:
        return [spec.prompt]
    count = min(MAX_TEXTS, spec.warmup + spec.requests)
    return make_prompts(count, spec.prompt_tokens, spec.seed, tokenizer)


def prompt_perplexity(spec: EndpointSpec, tokenizer: Any) -> Quality:
    """The ``quality`` object's perplexity part: every prompt of :func:`scored_prompts` scored
    by the server (the first failure stops and says why: ``perplexity`` ``null``)."""
    q = Quality()
    texts = scored_prompts(spec, tokenizer)
    q.texts = len(texts)
    if spec.chat:
        for name in _FIELDS:
            q.why(name, "the chat API cannot echo the prompt's log-probabilities (--chat): run "
                  "without --chat for perplexity")  # fmt: skip
        return q
    try:
        scored = _score_all(spec, texts, tokenizer)
    except _Refused as exc:
        for name in _FIELDS:
            q.why(name, _reason(str(exc), spec.secrets()))
        return q
    nll = [-x for lps, _ids in scored for x in lps]
    q.tokens = len(nll)
    q.context_length = max((len(lps) + 1 for lps, _ids in scored), default=None)
    if tokenizer is not None:
        ids = [i for _lps, i in scored]
        q.texts_md5 = hashlib.md5(json.dumps(ids).encode(), usedforsecurity=False).hexdigest()
    mean = sum(nll) / len(nll) if nll else math.nan
    if not nll:
        q.why("perplexity", "no prompt has 2 tokens or more: nothing to score")
    elif math.isfinite(mean) and mean < 700:  # exp() overflows beyond ~709
        q.perplexity = math.exp(mean)
    else:
        q.why("perplexity", "the log-likelihood is not finite (the server's numbers overflow)")
    return q


class _Refused(Exception):
    """The server did not score a prompt; the message says why (one line)."""


def _score_all(spec: EndpointSpec, texts: list[str], tokenizer: Any) -> list[Any]:
    """``(log-probabilities of tokens 2.., token ids or None)`` per prompt of 2+ tokens."""
    import httpx

    from .client import describe_error

    url = spec.served().request_url(spec)
    headers = dict(spec.served().headers(spec))
    headers["Accept"] = "application/json"
    timeout = httpx.Timeout(spec.timeout_s, connect=min(spec.timeout_s, 10.0))
    out = []
    with httpx.Client(
        timeout=timeout, trust_env=False, follow_redirects=False, verify=spec.transport.verify()
    ) as client:
        for i, text in enumerate(texts):
            body = {"model": spec.model, "prompt": text, "echo": True, "logprobs": 1}
            body |= {"max_tokens": 1, "temperature": 0}
            try:
                answer = _post(client, url, body, headers)
            except httpx.HTTPError as exc:
                raise _Refused(f"prompt {i}: {describe_error(exc)}") from None
            ids = None
            if tokenizer is not None:
                ids = [int(t) for t in tokenizer(text)["input_ids"]]
            lps = _prompt_logprobs(answer, None if ids is None else len(ids), i)
            if lps is not None:
                out.append((lps, ids))
    return out


def _post(client: Any, url: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
    """The decoded JSON answer (at most :data:`MAX_ANSWER_BYTES`); :class:`_Refused` for an
    HTTP error, a too large or non-JSON answer."""
    with client.stream("POST", url, json=body, headers=headers) as resp:
        got = b""
        for raw in resp.iter_bytes():
            got += raw
            if len(got) > MAX_ANSWER_BYTES:
                raise _Refused(f"the server's answer exceeds {MAX_ANSWER_BYTES} bytes")
        if resp.status_code >= 400:
            detail = got[:300].decode("utf-8", "replace")
            raise _Refused(
                f"the server refused echo+logprobs on /completions (HTTP {resp.status_code}: "
                f"{detail})"
            )
    try:
        return json.loads(got)
    except (ValueError, RecursionError):
        raise _Refused("the server's answer to echo+logprobs is not JSON") from None


def _prompt_logprobs(answer: Any, expected: int | None, i: int) -> list[float] | None:
    """The log-probabilities of prompt ``i``'s tokens after the first (``None``: fewer than 2
    tokens), every number checked; ``expected``: its token count by ``--tokenizer``."""
    choices = answer.get("choices") if isinstance(answer, dict) else None
    first = choices[0] if isinstance(choices, list) and choices else None
    logprobs = first.get("logprobs") if isinstance(first, dict) else None
    lps = logprobs.get("token_logprobs") if isinstance(logprobs, dict) else None
    if not isinstance(lps, list):
        raise _Refused(
            f"prompt {i}: the answer has no choices[0].logprobs.token_logprobs (the server "
            "does not echo log-probabilities)"
        )
    usage = answer.get("usage") if isinstance(answer, dict) else None
    said = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    said = said if isinstance(said, int) and not isinstance(said, bool) and said >= 0 else None
    n = expected if expected is not None else said
    if n is None:
        raise _Refused(
            f"prompt {i}: the server gave no usage.prompt_tokens and there is no --tokenizer: "
            "which log-probabilities are the prompt's is unknown"
        )
    if said is not None and expected is not None and said != expected:
        raise _Refused(
            f"prompt {i}: the server counts {said} prompt tokens, --tokenizer makes {expected}: "
            "another tokenizer?"
        )
    if not n <= len(lps) <= n + 1:  # the prompt's, and the one generated token (max_tokens 1)
        raise _Refused(
            f"prompt {i}: the server echoed {len(lps)} log-probabilities for a prompt of {n} tokens"
        )
    if n < 2:
        return None
    values = lps[1:n]
    for j, value in enumerate(values, 1):
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not math.isfinite(value) or value > 0:
            raise _Refused(
                f"prompt {i}: token {j}'s log-probability is {_reason(repr(value))[:40]}, "
                "expected a finite number <= 0"
            )
    return [float(v) for v in values]


class ServedQuality:
    """The ``quality`` objects of a sweep's load points: each set of prompts scored once (the
    first load point that sends them, after its timed requests), the agreement per point."""

    def __init__(self, plan: QualityPlan, tokenizer: Any) -> None:
        self.plan = plan
        self.tokenizer = tokenizer
        self._scored: dict[str, Quality] = {}  # md5 of the prompts -> their perplexity part

    def of_point(self, result: Any) -> dict[str, Any]:
        """The ``quality`` object of the load point ``result`` (an ``EndpointResult``)."""
        spec = result.spec
        key = hashlib.md5(
            json.dumps([spec.chat, scored_prompts(spec, self.tokenizer)]).encode(),
            usedforsecurity=False,
        ).hexdigest()
        if key not in self._scored:
            self._scored[key] = prompt_perplexity(spec, self.tokenizer)
        return point_quality(self.plan, self._scored[key], result, self.tokenizer)


def point_quality(plan: QualityPlan, base: Quality, result: Any, tokenizer: Any) -> dict[str, Any]:
    """One load point's ``quality`` object: the perplexity part ``base`` (shared by every
    point) and the agreement of this point's outputs with the reference."""
    q = Quality.from_dict(base.to_dict())
    ref = plan.reference
    if ref is None:
        why = "no --quality-reference FILE given"
        q.why("agreement", why)
        q.why("first_divergence_mean", why)
        return q.to_dict()
    q.reference = ref.id
    share, first, why = output_agreement(served_outputs(result.records), ref, tokenizer)
    if share is None:
        q.why("agreement", why)
        q.why("first_divergence_mean", why)
    else:
        q.agreement, q.first_divergence_mean = share, first
    return q.to_dict()
