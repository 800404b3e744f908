"""``streambench endpoint`` with a workload (:mod:`streambench.workloads`): the requests of a
prompt file or of drawn lengths, built before anything is sent (a bad file is exit 2), and what
each request records about them."""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from typing import Any

from ..workloads import (
    build_requests,
    read_prompt_file,
    resolve_output_len,
    synthetic_requests,
    workload_summary,
)
from .records import RequestRecord
from .spec import EndpointError, EndpointSpec
from .tokens import load_tokenizer

__all__ = [
    "body_fields",
    "identity",
    "io_of",
    "mark_record",
    "request_of",
    "summary_of",
    "with_requests",
]


def with_requests(spec: EndpointSpec, requests_given: int | None) -> EndpointSpec:
    """``spec`` with its workload's requests built (and, for a prompt file, the number of
    measured requests: every selected prompt once unless ``--requests`` says otherwise)."""
    w = spec.workload
    tokenizer = load_tokenizer(spec.tokenizer)
    if not w.uses_file and not (w.length_spread or w.shared_prefix):
        return spec  # --save-outputs alone: the usual prompts (see mark_record)
    if not w.uses_file:
        reqs = synthetic_requests(
            w,
            spec.prompt_tokens,
            spec.output_tokens,
            spec.warmup + spec.requests,
            tokenizer=tokenizer,
            seed=spec.seed,
            for_run=False,
        )
        return dataclasses.replace(spec, workload_requests=tuple(reqs))
    if w.skip_invalid and tokenizer is None:
        raise EndpointError("--skip-invalid needs --tokenizer DIR to count each prompt's tokens")
    file = read_prompt_file(str(w.prompts))
    for line in file.notes:
        print(f"streambench: {line}", file=sys.stderr)
    w = dataclasses.replace(w, prompts=file.path, prompts_sha256=file.sha256)
    w.output_len = resolve_output_len(w, file)
    if w.output_len == "from-data" and tokenizer is None and file.format == "sharegpt":
        raise EndpointError(
            "--output-len from-data on a ShareGPT file counts the reference "
            "outputs in tokens: give --tokenizer DIR"
        )
    reqs, skipped = build_requests(
        w, file, tokenizer=tokenizer, seed=spec.seed, for_run=False, chat=spec.chat
    )
    w.counts = {spec.model: len(reqs), "skipped": len(skipped)}
    cap = max(r.output_tokens or w.max_output_len for r in reqs)
    return dataclasses.replace(
        spec,
        workload=w,
        workload_requests=tuple(reqs),
        requests=len(reqs) if requests_given is None else requests_given,
        output_tokens=cap,
    ).validate()


def request_of(spec: EndpointSpec, phase_index: int, warm: bool) -> Any:
    """The workload request sent as request ``phase_index`` of its phase: a prompt file's
    prompts in order (cycling; warm-ups too), drawn requests warm-ups first."""
    reqs = spec.workload_requests
    if spec.workload is None or spec.workload.uses_file:  # a file, a trace: in order
        return reqs[phase_index % len(reqs)]
    return reqs[(phase_index if warm else spec.warmup + phase_index) % len(reqs)]


def body_fields(spec: EndpointSpec, req: Any) -> tuple[str | None, Any, int, bool]:
    """``(prompt text, messages, max_tokens, natural)`` of one workload request."""
    natural = req.output_tokens is None
    max_tokens = spec.workload.max_output_len if natural else int(req.output_tokens)
    if spec.chat:
        messages = req.messages or ({"role": "user", "content": req.text or ""},)
        return None, [dict(m) for m in messages], max_tokens, natural
    return req.text, None, max_tokens, natural


def mark_record(rec: RequestRecord, req: Any, save: bool) -> RequestRecord:
    """``rec`` with the workload's facts: prompt index, real input tokens (local tokenizer), an
    MD5 of the generated text and, with ``save``, the text."""
    text = "".join(rec.texts)
    return dataclasses.replace(
        rec,
        prompt_index=req.index,
        input_tokens=req.input_tokens,
        output_md5=hashlib.md5(text.encode("utf-8")).hexdigest(),
        output_text=text if save else None,
    )


def summary_of(spec: EndpointSpec, records: Any) -> dict[str, Any]:
    """``aggregates.workload`` over the successful measured requests."""
    good = [r.to_dict(per_token=False) for r in records if r.ok and not r.warmup]
    skipped = spec.workload.counts.get("skipped", 0) if spec.workload.uses_file else 0
    return workload_summary(good, skipped)


def identity(spec: EndpointSpec) -> dict[str, Any]:
    """The workload's part of a configuration's identity (``settings.further``)."""
    out = spec.workload.identity() if spec.workload is not None else {}
    for replay in (spec.multi_turn, spec.trace):
        if replay is not None:
            out.update(replay.identity())
    return out


def io_of(spec: EndpointSpec) -> tuple[int | None, int | None]:
    """``(input_tokens, output_tokens)`` of the configuration's identity: as asked, or ``None``
    where the data decides (a prompt file's inputs; from-data and natural outputs)."""
    w = spec.workload
    if spec.trace is not None:
        return None, None  # each request its trace's lengths
    if w is None or not w.uses_file:
        return spec.prompt_tokens, spec.output_tokens
    return None, w.output_len if isinstance(w.output_len, int) else None
