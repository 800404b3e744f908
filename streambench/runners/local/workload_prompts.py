"""``streambench run`` with a workload (:mod:`streambench.workloads`): the user's prompts, drawn
lengths or a shared prefix, measured with the model's own ``generate()``.

- :func:`preflight` (before any model is loaded): reads the prompt file, builds every model's
  requests with its tokenizer and context (no weights), so a bad file, a prompt too long or a
  missing chat template is exit 2 before anything is loaded or written;
- :class:`WorkloadPrompts`: a configuration's prompt batches (model x batch size, or x
  ``--in-out`` pair for drawn lengths) for the one configuration runner
  (:func:`streambench.runners.local.configuration.configuration_steps`, see
  :mod:`streambench.runners.local.prompt_sources`): with a prompt file one trial runs every
  selected prompt
  once, in batches of the batch size, left-padded with an attention mask; warm-ups run the
  first batch. With drawn lengths each run is one batch of new draws. Each ``generate()`` is one
  run (one ``TimingStreamer`` run); its ``extra.workload`` keeps the padded length
  ``generate()`` saw and per request the prompt index, real input and output lengths and an MD5
  of the text.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from ...errors import UsageError
from ...workloads import (
    WorkloadSpec,
    build_requests,
    output_record,
    read_prompt_file,
    resolve_output_len,
    synthetic_requests,
    workload_summary,
)
from .generate_call import PromptBatch
from .plan import ConfigurationError, SweepSettings
from .prompt_sources import PromptSource

__all__ = ["WorkloadPrompts", "count_new_tokens", "preflight", "steps_of"]


def preflight(settings: SweepSettings, note: Callable[[str], None]) -> None:
    """Check the prompt file against every model (tokenizer and context only, no weights) and
    record its SHA-256 and the number of usable prompts per model (:class:`UsageError`: exit 2,
    before any model is loaded)."""
    from ...engines.transformers.load import tokenizer_and_context

    w = settings.workload
    if w is None or not w.uses_file:
        return
    file = read_prompt_file(str(w.prompts))
    for line in file.notes:  # once per sweep: workers read the file again, quietly
        note(line)
    w.prompts, w.prompts_sha256 = file.path, file.sha256
    w.output_len = resolve_output_len(w, file)
    for spec in settings.models:
        tokenizer, context, vocab = tokenizer_and_context(spec, settings)
        if tokenizer is None:
            raise UsageError(
                f"--prompts needs a tokenizer, and {spec.name} has none (a "
                "--random-weights preset): give a model directory with one"
            )
        requests, skipped = build_requests(
            w, file, tokenizer=tokenizer, seed=settings.seed, context=context, vocab=vocab
        )
        w.counts[spec.name] = len(requests)
        if skipped:
            note(
                f"{spec.name}: {len(skipped)} prompt(s) of {file.name} skipped (--skip-invalid), "
                f"first: {skipped[0]}"
            )


def steps_of(settings: SweepSettings, model_name: str, batch: int) -> int:
    """``generate()`` calls of one configuration (for the progress bar)."""
    w = settings.workload
    if w is None or not w.uses_file:
        return settings.warmup + settings.trials
    count = w.counts.get(model_name, 1)
    return settings.warmup + settings.trials * math.ceil(count / batch)


def _requests(
    loaded: Any, w: WorkloadSpec, settings: Any, n_in: Any, n_out: Any, batch: int
) -> Any:
    """``(requests, skipped, warmup batch, trial batches)``: the batches as lists of request
    indices; ``trial batches(t)`` gives trial ``t``'s."""
    vocab = int(getattr(loaded.config, "vocab_size", 0) or 32000)
    if w.uses_file:
        file = read_prompt_file(str(w.prompts))
        if w.prompts_sha256 and file.sha256 != w.prompts_sha256:
            raise ConfigurationError(f"--prompts {file.path} changed while the sweep ran")
        reqs, skipped = build_requests(
            w,
            file,
            tokenizer=loaded.tokenizer,
            seed=settings.seed,
            context=loaded.context_length,
            vocab=vocab,
        )
        batches = [list(range(i, min(i + batch, len(reqs)))) for i in range(0, len(reqs), batch)]
        return reqs, len(skipped), lambda i: batches[0], lambda t: batches
    if not (w.length_spread or w.shared_prefix):  # --save-outputs alone: the usual prompt
        from ...workloads import Request
        from ...workloads.synthetic import build_prompt

        row = tuple(build_prompt(loaded, n_in, 1, settings.seed)[0].tolist())
        one = Request(0, "prompt", None, None, row, len(row), n_out)
        return [one], 0, lambda i: [0] * batch, lambda t: [[0] * batch]
    # drawn lengths: every run one batch of new draws (--trials auto: up to --max-trials)
    n = settings.warmup + settings.trials
    reqs = synthetic_requests(
        w, n_in, n_out, n * batch, tokenizer=loaded.tokenizer, seed=settings.seed, vocab=vocab
    )
    limit = loaded.context_length
    longest = max(len(r.input_ids or ()) + (r.output_tokens or 0) for r in reqs)
    if limit is not None and longest > limit:
        raise ConfigurationError(
            f"a drawn prompt + output of {longest} tokens exceeds the "
            f"model's context of {limit} tokens"
        )

    def draws(i: int) -> list[int]:
        i %= n  # never past the draws (a rule that runs more than --trials + --warmup)
        return list(range(i * batch, (i + 1) * batch))

    return reqs, 0, draws, lambda t: [draws(settings.warmup + t)]


def _eos_ids(loaded: Any) -> set[int]:
    out: set[int] = set()
    for source in (loaded.model.generation_config, loaded.config):
        value = getattr(source, "eos_token_id", None)
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(v, int):
                out.add(v)
    return out


def count_new_tokens(row: list[int], eos: set[int], natural: bool) -> int:
    """Tokens one batch row generated: with a natural length, up to and including its own first
    EOS (``generate()`` pads finished rows until the longest is done), else all of them.

    >>> count_new_tokens([5, 6, 2, 0, 0], {2}, True), count_new_tokens([5, 6, 2], {2}, False)
    (3, 3)
    """
    if natural:
        for i, tok in enumerate(row):
            if tok in eos:
                return i + 1
    return len(row)


class WorkloadPrompts(PromptSource):
    """A workload's prompt batches (:mod:`streambench.workloads`): with a prompt file, a
    trial runs every selected prompt once, in batches of the batch size, left-padded with an
    attention mask, and a warm-up runs the first batch; with drawn lengths each run is one batch
    of new draws. Each run's ``extra.workload`` keeps the padded length ``generate()`` saw and
    per request the prompt index, real input and output lengths and an MD5 of the text."""

    def __init__(self, loaded: Any, settings: Any, n_in: Any, n_out: Any, batch: int) -> None:
        from ...workloads.synthetic import _pad_token_id

        if settings.num_beams > 1:
            raise ConfigurationError(
                "a workload (--prompts, --length-spread, --shared-prefix, "
                "--save-outputs) runs without beam search: use --num-beams 1"
            )
        w = settings.workload
        assert w is not None
        self.loaded, self.w = loaded, w
        try:
            self.reqs, self.skipped, self._warm, self._trial = _requests(
                loaded, w, settings, n_in, n_out, batch
            )
        except UsageError as exc:  # the prompt file, read again in this process
            raise ConfigurationError(str(exc)) from exc
        self.runs_per_trial = len(self._trial(0))
        self.natural = w.output_len == "natural" and w.uses_file
        self.pad = _pad_token_id(loaded)
        self.eos = _eos_ids(loaded)

    def _batch(self, indices: list[int]) -> PromptBatch:
        import torch

        reqs = [self.reqs[j] for j in indices]
        width = max(len(r.input_ids) for r in reqs)
        ids = [[self.pad] * (width - len(r.input_ids)) + list(r.input_ids) for r in reqs]
        mask = [[0] * (width - len(r.input_ids)) + [1] * len(r.input_ids) for r in reqs]
        device = self.loaded.device
        if self.natural:
            new = int(self.w.max_output_len)
        else:
            new = max(int(r.output_tokens) for r in reqs)
        return PromptBatch(
            torch.tensor(ids, device=device),
            torch.tensor(mask, device=device),
            new,
            natural=self.natural,
            requests=reqs,
        )

    def warmup(self, index: int) -> PromptBatch:
        return self._batch(self._warm(index))

    def trial(self, index: int) -> list[PromptBatch]:
        return [self._batch(b) for b in self._trial(index)]

    def after_run(self, run: Any, batch: PromptBatch, output: Any, warm: bool, trial: int) -> None:
        """``run.extra["workload"]``: what ``generate()`` saw and, per request, what it made."""
        start = 1 if self.loaded.is_encoder_decoder else batch.width
        rows = output[:, start:].tolist()
        records = []
        for req, row in zip(batch.requests or [], rows):
            n_new = count_new_tokens(row, self.eos, self.natural)
            text = None
            if self.loaded.tokenizer is not None:
                text = self.loaded.tokenizer.decode(row[:n_new], skip_special_tokens=True)
            records.append(
                output_record(req.index, req.input_tokens, n_new, text, self.w.save_outputs)
            )
        run.extra["workload"] = {
            "warmup": warm,
            "trial": -1 if warm and self.w.uses_file else trial,
            "padded_input_tokens": batch.width,
            "requests": records,
        }
        if not self.natural:  # a run with fewer tokens is incomplete (short_runs)
            run.extra["workload"]["forced_tokens"] = batch.forced

    def _summary(self, measured: list[Any]) -> dict[str, Any]:
        requests = [q for r in measured for q in r.extra["workload"]["requests"]]
        summary = workload_summary(requests, self.skipped)
        padded = [r.extra["workload"]["padded_input_tokens"] for r in measured]
        summary["padded_input_tokens"] = {"min": min(padded), "max": max(padded)}
        return summary

    def actual_tokens(self, measured: list[Any]) -> tuple[int | None, int | None]:
        summary = self._summary(measured)
        return round(summary["input_tokens"]["mean"]), round(summary["output_tokens"]["mean"])

    def aggregates_extra(self, measured: list[Any]) -> dict[str, Any]:
        return {"workload": self._summary(measured)}
