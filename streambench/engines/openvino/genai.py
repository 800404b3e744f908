"""``--engine openvino-genai``: OpenVINO GenAI's ``LLMPipeline`` behind a ``generate()`` that
takes the timing streamer.

GenAI generates in C++ and calls a ``StreamerBase.write(token)`` per step (one token id, or a
list of them — all are counted). :class:`GenAIModel` marks the prompt hand-over at the call
(``TimingStreamer.on_prompt``; GenAI does not say when the prompt reaches the model, so the
first token's time includes GenAI's own input preparation), turns each ``write`` into
``TimingStreamer.on_step(n)`` and ``end`` into ``end()``: the same timing core as transformers,
no timing code of its own. GenAI's ``PerfMetrics`` of each call (its TTFT and TPOT, from its own
clock) are kept beside, as a cross-check (:attr:`GenAIModel.perf`).

GenAI streams batch 1 with greedy or multinomial sampling only: batch > 1, beam search and the
transformers-only settings (assisted decoding, ``--generate-kwargs`` ...) raise
:class:`~streambench.runners.local.plan.ConfigurationError` before anything runs.

    >>> from streambench.engines.openvino.genai import GenAIModel                  # doctest: +SKIP
    >>> model = GenAIModel("tiny-ir", "CPU")                             # doctest: +SKIP
    >>> streamer = TimingStreamer("cpu")                                 # doctest: +SKIP
    >>> model.generate(input_ids, max_new_tokens=32, streamer=streamer)  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["GenAIModel", "GenAIRefused"]

#: generate() keywords GenAIModel takes; others are transformers-only
_TAKEN = {
    "attention_mask",
    "max_new_tokens",
    "min_new_tokens",
    "do_sample",
    "num_beams",
    "pad_token_id",
    "temperature",
    "top_p",
    "top_k",
    "streamer",
    "disable_compile",  # transformers' own compile switch: nothing to disable here
}


class GenAIRefused(ValueError):
    """A request GenAI cannot stream (batch > 1, beam search, a transformers-only setting)."""


class GenAIModel:
    """``openvino_genai.LLMPipeline`` on an IR directory, with transformers' ``generate()``
    calling convention for what streambench passes.

    Attributes: ``config`` and ``generation_config`` (transformers', of the IR directory),
    ``perf`` (one dict per call of GenAI's
    own ``ttft_ms``, ``tpot_ms``, ``generate_ms``, ``new_tokens``, ``input_tokens``).
    """

    def __init__(
        self,
        path: str | Path,
        device: str = "CPU",
        config: dict | None = None,
        trust_remote_code: bool = False,
    ):
        import openvino_genai
        from transformers import AutoConfig, GenerationConfig

        self.path = Path(path)
        self.device = device
        self.config = AutoConfig.from_pretrained(
            self.path, trust_remote_code=trust_remote_code is True
        )
        try:
            self.generation_config = GenerationConfig.from_pretrained(self.path)
        except OSError:  # no generation_config.json: transformers' defaults
            self.generation_config = GenerationConfig.from_model_config(self.config)
        self.pipeline = openvino_genai.LLMPipeline(str(self.path), device, **(config or {}))
        self.perf: list[dict[str, float]] = []

    def take_perf_metrics(self, last: int) -> dict[str, float] | None:
        """The medians of :attr:`perf` over the ``last`` calls (``None`` if none), then forget
        them all: the next configuration starts afresh."""
        import statistics

        measured = self.perf[-last:] if last > 0 else []
        self.perf.clear()
        if not measured:
            return None
        return {key: statistics.median(p[key] for p in measured) for key in measured[0]}

    def generate(self, input_ids: Any, **kwargs: Any) -> Any:
        """Generate from ``input_ids`` (a ``[1, n]`` tensor) and feed ``streamer`` per token;
        returns the token ids as a ``[1, n + new]`` tensor, as transformers does."""
        import numpy as np
        import openvino
        import openvino_genai
        import torch

        unknown = sorted(set(kwargs) - _TAKEN)
        if unknown:
            raise GenAIRefused(
                f"--engine openvino-genai does not take {', '.join(unknown)} (transformers only)"
            )
        batch, prompt_len = int(input_ids.shape[0]), int(input_ids.shape[-1])
        if batch != 1:
            raise GenAIRefused(
                f"OpenVINO GenAI streams batch 1 only (batch {batch} asked): use --batch-size 1 "
                "with --engine openvino-genai"
            )
        if int(kwargs.get("num_beams") or 1) > 1:
            raise GenAIRefused(
                "OpenVINO GenAI streams greedy or sampled decoding only, not beam search: "
                "use --num-beams 1 with --engine openvino-genai"
            )
        cfg = _generation_config(openvino_genai, kwargs)
        ids = input_ids.detach().cpu().numpy().astype(np.int64)
        mask = kwargs.get("attention_mask")
        mask = np.ones_like(ids) if mask is None else mask.detach().cpu().numpy().astype(np.int64)
        inputs = openvino_genai.TokenizedInputs(openvino.Tensor(ids), openvino.Tensor(mask))
        timer = kwargs.get("streamer")
        feed = _feed_class(openvino_genai)(timer) if timer is not None else None
        if timer is not None:
            timer.on_prompt(batch, prompt_len)
        result = self.pipeline.generate(inputs, cfg, feed)
        self.perf.append(_perf(result.perf_metrics))
        new = torch.tensor([list(result.tokens[0])], dtype=input_ids.dtype)
        return torch.cat([input_ids.cpu(), new], dim=-1)


def _generation_config(genai: Any, kwargs: dict[str, Any]) -> Any:
    cfg = genai.GenerationConfig()
    cfg.max_new_tokens = int(kwargs.get("max_new_tokens") or 20)
    if kwargs.get("min_new_tokens"):
        cfg.min_new_tokens = int(kwargs["min_new_tokens"])
        cfg.ignore_eos = True  # exactly the asked length, as min_new_tokens does in transformers
    if kwargs.get("do_sample"):
        cfg.do_sample = True
        for key in ("temperature", "top_p", "top_k"):
            if kwargs.get(key) is not None:
                setattr(cfg, key, kwargs[key])
        import torch

        cfg.rng_seed = int(torch.initial_seed() % 2**31)  # --seed reseeds torch before each run
    return cfg


def _feed_class(genai: Any) -> type:
    """A ``StreamerBase`` that feeds a TimingStreamer (defined once openvino_genai is imported)."""

    class Feed(genai.StreamerBase):
        def __init__(self, timer: Any) -> None:
            super().__init__()
            self.timer = timer
            self.running = genai.StreamingStatus.RUNNING

        def write(self, token: Any) -> Any:
            self.timer.on_step(len(token) if isinstance(token, (list, tuple)) else 1)
            return self.running

        def end(self) -> None:
            self.timer.end()

    return Feed


def _perf(metrics: Any) -> dict[str, float]:
    """GenAI's own numbers of one call (milliseconds, from its clock)."""
    return {
        "ttft_ms": float(metrics.get_ttft().mean),
        "tpot_ms": float(metrics.get_tpot().mean),
        "generate_ms": float(metrics.get_generate_duration().mean),
        "new_tokens": float(metrics.get_num_generated_tokens()),
        "input_tokens": float(metrics.get_num_input_tokens()),
    }
