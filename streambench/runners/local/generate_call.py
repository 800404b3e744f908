"""The one timed ``generate()`` call of ``streambench run``: :func:`generate_keywords` is the one
place that builds ``generate()``'s keywords (lengths, padding, beams, the generation variant's
settings), for the trials, the warm-ups and the ``--profile`` run alike; :class:`TimedGenerate`
runs one :class:`PromptBatch` with a :class:`~streambench.streamer.TimingStreamer` (or
``BenchmarkWrapper`` for beam search) and reseeds under ``--seed`` when the variant samples.

Where the prompt batches come from (synthetic prompts of exactly N tokens, the user's prompt
file, drawn lengths) is :mod:`streambench.runners.local.prompt_sources`; what runs the warm-ups and
trials is
:func:`streambench.runners.local.configuration.configuration_steps`.

torch is imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PromptBatch", "TimedGenerate", "generate_keywords"]


@dataclass
class PromptBatch:
    """One ``generate()`` call's input: ``input_ids`` and ``attention_mask`` (``[batch, width]``
    tensors on the model's device; rows left-padded where prompts differ in length),
    ``new_tokens``: the tokens each row generates (forced: ``min_new_tokens`` =
    ``max_new_tokens``), or with ``natural`` the most it may generate (it stops at EOS);
    ``requests``: the workload's requests of the rows (``None`` for a synthetic prompt)."""

    input_ids: Any
    attention_mask: Any
    new_tokens: int
    natural: bool = False
    requests: list[Any] | None = None
    #: per row, the real prompt length (without the padding); ``None``: all ``width``
    lengths: list[int] | None = field(default=None)

    @property
    def width(self) -> int:
        """Tokens per row as ``generate()`` sees them (the padded prompt length)."""
        return int(self.input_ids.shape[-1])

    @property
    def forced(self) -> int:
        """New tokens every run must reach (0: a natural length, no minimum)."""
        return 0 if self.natural else self.new_tokens


def generate_keywords(
    loaded: Any, settings: Any, variant: dict[str, Any], batch: PromptBatch
) -> dict[str, Any]:
    """THE ``generate()`` keywords of one call besides the prompt and the streamer: the mask,
    the lengths (forced, or a maximum with a natural length), greedy unless the variant
    samples, ``num_beams``, the pad token, then the variant's own settings
    (:func:`streambench.spec.generation.generate_kwargs`)."""
    from ...spec.generation import generate_kwargs
    from ...workloads.synthetic import _pad_token_id

    kwargs: dict[str, Any] = dict(
        attention_mask=batch.attention_mask,
        max_new_tokens=batch.new_tokens,
        do_sample=False,
        num_beams=settings.num_beams,
        pad_token_id=_pad_token_id(loaded),
    )
    if not batch.natural:
        kwargs["min_new_tokens"] = batch.new_tokens
    kwargs.update(generate_kwargs(variant, getattr(loaded, "assistant", None)))
    return kwargs


class TimedGenerate:
    """Calls ``generate()`` on prompt batches, timed: ``timer.runs`` collects one
    :class:`~streambench.timing.RunResult` per call. Beam search cannot be streamed: then
    ``BenchmarkWrapper`` times it through a logits processor feeding the same timing core."""

    def __init__(
        self,
        loaded: Any,
        settings: Any,
        variant: dict[str, Any] | None,
        print_fn: Callable[[str], None] = print,
    ) -> None:
        from ...streamer import TimingStreamer

        self.loaded, self.settings = loaded, settings
        self.variant = dict(variant or {})
        # sampling: every run draws the same tokens under --seed
        self.seed = settings.seed if self.variant.get("do_sample") else None
        self.wrapper: Any = None
        if settings.num_beams > 1:
            from .plan import beam_wrapper_class

            self.wrapper = beam_wrapper_class()(
                loaded.model,
                device=loaded.device,
                do_print=settings.verbose,
                verbose=settings.verbose,
                print_fn=print_fn,
            )
            self.timer: Any = self.wrapper
        else:
            verbose = settings.verbose
            self.timer = TimingStreamer(
                loaded.device, verbose=verbose, do_print=verbose, print_fn=print_fn
            )

    def keywords(self, batch: PromptBatch) -> dict[str, Any]:
        return generate_keywords(self.loaded, self.settings, self.variant, batch)

    def reseed(self) -> None:
        if self.seed is not None:
            import torch

            torch.manual_seed(self.seed)

    def __call__(self, batch: PromptBatch) -> Any:
        """One timed call; returns ``generate()``'s output (prompt + new token ids)."""
        kwargs = self.keywords(batch)
        self.reseed()
        if self.wrapper is not None:
            return self.wrapper.generate(batch.input_ids, **kwargs)
        self.timer.mark_start()
        return self.loaded.model.generate(batch.input_ids, streamer=self.timer, **kwargs)

    @property
    def runs(self) -> list[Any]:
        return list(self.timer.runs)
