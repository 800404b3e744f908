"""vLLM in process behind a ``generate()`` that takes the timing streamer.

:class:`VllmModel` holds a ``vllm.LLMEngine`` built without its engine-core process
(``enable_multiprocessing=False``, ``VLLM_ENABLE_V1_MULTIPROCESSING=0``): the scheduler, the model
runner and the memory all live in this process, so the streamer's clock and this process's peak
RSS see every step. A batch of B sequences is B requests added together; the engine then steps
them in lockstep. A step is timed (``TimingStreamer.on_step``) when *every* sequence of the batch
has its next token, so the n-th timed step is the n-th token of the whole batch, as with
transformers. The prompt hand-over (``on_prompt``) is marked once the B requests are added:
scheduling and the prefill fall into the first token's time.

Forced output length: ``min_tokens = max_tokens`` and ``ignore_eos``, so an end-of-sequence token
never ends a measured run. Greedy unless ``do_sample``. vLLM's own per-request metrics (first
token latency, the time between the first and the last token, from its clock) are kept per call
in :attr:`VllmModel.perf` as a cross-check.

    >>> model = VllmModel("tiny-llama-dir", dtype="float32")            # doctest: +SKIP
    >>> model.generate(input_ids, max_new_tokens=32, streamer=streamer)  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

__all__ = ["VllmModel", "VllmRefused"]

#: generate() keywords VllmModel takes; the others are transformers-only
TAKEN = {
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


#: GiB of KV cache on the CPU unless ``VLLM_CPU_KVCACHE_SPACE`` says otherwise
CPU_KV_CACHE_GIB = 4


class VllmRefused(ValueError):
    """A request this engine cannot time (beam search, a transformers-only setting)."""


class VllmModel:
    """``vllm.LLMEngine`` on a model directory (or hub id already in the cache), with
    transformers' ``generate()`` calling convention for what streambench passes.

    ``dtype``: vLLM's ``dtype`` (``auto``, ``float32``, ``bfloat16`` ...); ``engine_kwargs`` go to
    ``vllm.EngineArgs`` (``max_model_len``, ``enforce_eager`` ...). Attributes: ``config`` and
    ``generation_config`` (transformers', read from the directory), ``perf`` (one dict per call).
    """

    def __init__(
        self,
        path: str | Path,
        dtype: str = "auto",
        seed: int = 0,
        trust_remote_code: bool = False,
        **engine_kwargs: Any,
    ):
        # the engine core in this process: one clock, one RSS (see the module doc)
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        # vLLM's CPU build otherwise reserves 92 % of the machine's memory for its KV cache
        # (--gpu-memory-utilization), and refuses to start beside anything else
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(CPU_KV_CACHE_GIB))
        from transformers import AutoConfig, GenerationConfig
        from vllm import EngineArgs, LLMEngine

        self.path = str(path)
        self.config = AutoConfig.from_pretrained(self.path, trust_remote_code=trust_remote_code)
        try:
            self.generation_config = GenerationConfig.from_pretrained(self.path)
        except OSError:  # no generation_config.json: transformers' defaults
            self.generation_config = GenerationConfig.from_model_config(self.config)
        args = EngineArgs(
            model=self.path,
            dtype=dtype,
            seed=seed,
            trust_remote_code=trust_remote_code is True,
            disable_log_stats=False,  # per-request metrics for the cross-check
            # every trial sends the same prompt: with vLLM's prefix cache (on by default) trial 2
            # on skips most of the prefill (measured: 384 of 512 prompt tokens cached, first
            # token 35 -> 6.5 ms), and "first token" would time a cache hit, not a prefill
            enable_prefix_caching=False,
            **engine_kwargs,
        )
        self.engine = LLMEngine.from_engine_args(args, enable_multiprocessing=False)
        self.perf: list[dict[str, float]] = []
        self._ids = itertools.count()

    def take_perf_metrics(self, last: int) -> dict[str, float] | None:
        """The medians of :attr:`perf` over the ``last`` calls (``None`` if none), then forget
        them all: the next configuration starts afresh."""
        import statistics

        measured = self.perf[-last:] if last > 0 else []
        self.perf.clear()
        if not measured:
            return None
        keys = set.intersection(*(set(p) for p in measured))
        return {key: statistics.median(p[key] for p in measured) for key in sorted(keys)} or None

    def generate(self, input_ids: Any, **kwargs: Any) -> Any:
        """Generate from ``input_ids`` (a ``[B, n]`` tensor) and feed ``streamer`` per step;
        returns the token ids as a ``[B, n + new]`` tensor, as transformers does."""
        import torch

        unknown = sorted(set(kwargs) - TAKEN)
        if unknown:
            raise VllmRefused(
                f"--engine vllm does not take {', '.join(unknown)} (transformers only)"
            )
        if int(kwargs.get("num_beams") or 1) > 1:
            raise VllmRefused("--engine vllm times greedy or sampled decoding: use --num-beams 1")
        params = _sampling_params(kwargs)
        rows = input_ids.detach().cpu().tolist()
        call = next(self._ids)
        ids = [f"streambench-{call}-{i}" for i in range(len(rows))]
        for rid, row in zip(ids, rows):
            self.engine.add_request(rid, {"prompt_token_ids": row}, params)
        timer = kwargs.get("streamer")
        if timer is not None:
            timer.on_prompt(len(rows), len(rows[0]))
        new = self._step_all(ids, timer)
        if timer is not None:
            timer.end()
        out = [row + new[rid] for rid, row in zip(ids, rows)]
        return torch.tensor(out, dtype=input_ids.dtype)

    def forced_scores(self, token_ids: list[int]) -> tuple[list[float], list[int]]:
        """``--quality``: ``token_ids`` teacher-forced through vLLM's prompt log-probabilities
        (``prompt_logprobs=1``, one greedy token generated and dropped): at each position after
        the first, the negative log-likelihood (nats) of the text's token and the greedy token
        (the entry of rank 1 among the actual token and the top-1 one; of equal ranks, the
        smallest id, as an argmax takes the first). vLLM's prompt log-probabilities are the
        raw logits' log-softmax (no temperature or penalty), and a request that asks for them
        skips the prefix cache: every position is computed."""
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        params = SamplingParams(
            max_tokens=1,
            temperature=0.0,
            prompt_logprobs=1,
            detokenize=False,
            output_kind=RequestOutputKind.FINAL_ONLY,
        )
        rid = f"streambench-score-{next(self._ids)}"
        self.engine.add_request(rid, {"prompt_token_ids": list(token_ids)}, params)
        final = None
        while self.engine.has_unfinished_requests():
            for output in self.engine.step():
                if output.request_id == rid and output.finished:
                    final = output
        entries = list(getattr(final, "prompt_logprobs", None) or [])
        if len(entries) != len(token_ids):
            raise RuntimeError(
                f"vLLM gave {len(entries)} prompt log-probabilities for {len(token_ids)} tokens"
            )
        return _prompt_scores(entries[1:], token_ids[1:])

    def _step_all(self, ids: list[str], timer: Any) -> dict[str, list[int]]:
        """Step the engine until the batch's requests finish; time each step at which the
        slowest sequence got a new token. Returns each request's new token ids."""
        new: dict[str, list[int]] = {rid: [] for rid in ids}
        timed = 0
        metrics, cached = [], []
        while self.engine.has_unfinished_requests():
            for output in self.engine.step():
                if output.request_id in new:
                    new[output.request_id].extend(output.outputs[0].token_ids)
                    if output.finished and output.metrics is not None:
                        metrics.append(output.metrics)
                    if output.finished:
                        cached.append(getattr(output, "num_cached_tokens", None))
            done = min(len(tokens) for tokens in new.values())
            if timer is not None and done > timed:
                timer.on_step(done - timed)
            timed = done
        perf = _perf(metrics)
        if cached and all(isinstance(n, int) for n in cached):
            # prompt tokens served from vLLM's prefix cache (off: 0, so the prefill is timed)
            perf["cached_prompt_tokens"] = sum(cached) / len(cached)
        self.perf.append(perf)
        return new


def _prompt_scores(entries: list[Any], targets: list[int]) -> tuple[list[float], list[int]]:
    """NLL and greedy token per position from vLLM's prompt log-probabilities (``entries``: a
    ``{token id: Logprob}`` per position, holding the actual token and the top-1 one).

    >>> from types import SimpleNamespace as L
    >>> _prompt_scores([{5: L(logprob=-0.5, rank=1)},
    ...                 {7: L(logprob=-2.0, rank=3), 2: L(logprob=-0.1, rank=1)}], [5, 7])
    ([0.5, 2.0], [5, 2])
    """
    nll, greedy = [], []
    for at, (entry, target) in enumerate(zip(entries, targets), start=1):
        mine = entry.get(target) if entry else None
        first = sorted(t for t, lp in (entry or {}).items() if lp.rank == 1)
        if mine is None or not first:
            raise RuntimeError(
                f"vLLM's prompt log-probabilities at position {at} lack the text's token or "
                "the top-1 token"
            )
        nll.append(-float(mine.logprob))
        greedy.append(int(first[0]))
    return nll, greedy


def _sampling_params(kwargs: dict[str, Any]) -> Any:
    """vLLM's ``SamplingParams`` for transformers' keywords: exactly ``max_new_tokens`` new
    tokens (``min_new_tokens`` given: EOS ignored), greedy unless ``do_sample``; only the new
    tokens of each step come back (``DELTA``), without detokenizing."""
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    n = int(kwargs.get("max_new_tokens") or 16)
    forced = kwargs.get("min_new_tokens") is not None
    sample = bool(kwargs.get("do_sample"))
    return SamplingParams(
        max_tokens=n,
        min_tokens=int(kwargs.get("min_new_tokens") or 0),
        ignore_eos=forced,
        temperature=float(kwargs.get("temperature") or 1.0) if sample else 0.0,
        top_p=float(kwargs.get("top_p") or 1.0) if sample else 1.0,
        top_k=int(kwargs.get("top_k") or 0) if sample else 0,
        output_kind=RequestOutputKind.DELTA,
        detokenize=False,
    )


def _perf(metrics: list[Any]) -> dict[str, float]:
    """vLLM's own view of one call (ms, its clock), the mean over the batch's requests: the
    first token latency (arrival to first token) and the mean time per output token after it."""
    if not metrics:
        return {}
    ttft = [m.first_token_latency * 1e3 for m in metrics]
    tpot = [
        (m.last_token_ts - m.first_token_ts) * 1e3 / (m.num_generation_tokens - 1)
        for m in metrics
        if m.num_generation_tokens > 1
    ]
    out = {"ttft_ms": sum(ttft) / len(ttft)}
    if tpot:
        out["tpot_ms"] = sum(tpot) / len(tpot)
    return out
