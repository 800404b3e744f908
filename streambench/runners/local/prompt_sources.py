"""Where a configuration's prompt batches come from: the only thing that differs between a
synthetic sweep (``--in-out``: a prompt of exactly N tokens, :class:`SyntheticPrompts`) and a
workload (``--prompts``, ``--length-spread``, ``--shared-prefix``, ``--save-outputs``:
:class:`streambench.runners.local.workload_prompts.WorkloadPrompts`). The one configuration runner
(:func:`streambench.runners.local.configuration.configuration_steps`) asks a source for the batch
of each
warm-up and the batches of each trial, hands every run to :meth:`PromptSource.after_run` and
lets the source record what only it knows (the real input/output lengths, the workload
summary).

A *trial* is one pass: one ``generate()`` for a synthetic prompt or drawn lengths, every batch
of the prompt file once for a prompt file (:attr:`PromptSource.runs_per_trial`).
"""

from __future__ import annotations

from typing import Any

from .generate_call import PromptBatch

__all__ = ["PromptSource", "SyntheticPrompts"]


class PromptSource:
    """The prompt batches of one configuration (the base class is what every source shares)."""

    #: ``generate()`` calls per trial
    runs_per_trial: int = 1

    def warmup(self, index: int) -> PromptBatch:
        """The batch of warm-up ``index`` (from 0)."""
        raise NotImplementedError

    def trial(self, index: int) -> list[PromptBatch]:
        """The batches of trial ``index`` (from 0), one ``generate()`` each."""
        raise NotImplementedError

    def profile_batch(self) -> PromptBatch:
        """What the ``--profile`` run generates: the first trial's first batch."""
        return self.trial(0)[0]

    def after_run(self, run: Any, batch: PromptBatch, output: Any, warm: bool, trial: int) -> None:
        """Called after each ``generate()`` with its :class:`~streambench.timing.RunResult`
        and output ids (``trial``: the trial's index; a warm-up's index counts from
        ``-warmup``)."""

    def actual_tokens(self, measured: list[Any]) -> tuple[int | None, int | None]:
        """``(actual_input_tokens, actual_output_tokens)`` per sequence of the measured runs."""
        raise NotImplementedError

    def aggregates_extra(self, measured: list[Any]) -> dict[str, Any]:
        """What the source adds to ``aggregates`` (a workload: its ``workload`` summary)."""
        return {}


class SyntheticPrompts(PromptSource):
    """``--in-out N-M``: the same prompt of exactly ``N`` tokens in every row and every run
    (:func:`streambench.workloads.synthetic.build_prompt`), ``M`` forced new tokens."""

    def __init__(self, loaded: Any, settings: Any, n_in: int, n_out: int, batch: int) -> None:
        import torch

        from ...workloads.synthetic import build_prompt

        limit = loaded.context_length
        if limit is not None and n_in + n_out > limit:
            from .plan import ConfigurationError

            raise ConfigurationError(
                f"prompt of {n_in} tokens + {n_out} new tokens = {n_in + n_out} exceeds the "
                f"model's context of {limit} tokens (max_position_embeddings)"
            )
        ids = build_prompt(loaded, n_in, batch, seed=settings.seed).to(loaded.device)
        self.batch = PromptBatch(ids, torch.ones_like(ids), n_out)
        self.encoder_decoder = bool(loaded.is_encoder_decoder)

    def warmup(self, index: int) -> PromptBatch:
        return self.batch

    def trial(self, index: int) -> list[PromptBatch]:
        return [self.batch]

    def actual_tokens(self, measured: list[Any]) -> tuple[int | None, int | None]:
        # an encoder-decoder's streamer sees the decoder's start token as its prompt
        n_in = self.batch.width if self.encoder_decoder else measured[-1].prompt_tokens
        return n_in, measured[-1].new_tokens
