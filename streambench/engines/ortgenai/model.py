"""``--engine onnxruntime-genai``: an ORT GenAI model behind a ``generate()`` that takes the timing
streamer.

ORT GenAI has no streamer: its caller runs the loop (``Generator.append_tokens`` with the
prompt, then ``generate_next_token()`` until ``is_done()``). :class:`OrtGenAIModel` runs that loop
and feeds the same timing core as transformers: ``TimingStreamer.on_prompt`` when the prompt is
handed over (just before the ``Generator`` is made: its KV-cache allocation and the prompt's
forward pass count towards the first token, as they do in transformers' ``generate()``), then
``on_step(1)`` once per ``generate_next_token()`` after its tokens reached the host
(``get_next_tokens()``, a copy that waits for the device), and ``end()``. Each step is one token
per sequence; the time between two ``on_step`` calls is one token's latency.

The output length is forced as transformers' ``min_new_tokens`` forces it: ORT GenAI's
``min_length`` (prompt + ``min_new_tokens``) keeps EOS from ending a measured run. Batch > 1 is
one ``[batch, n]`` prompt through ``GeneratorParams(batch_size=...)``; left padding (the
workloads' batches) is given to ORT GenAI as its pad token, from which it builds its own
attention mask. Greedy or multinomial sampling only: beam search and transformers-only
``generate()`` keywords raise :class:`OrtGenAIRefused`.

    >>> from streambench.engines.ortgenai.model import OrtGenAIModel       # doctest: +SKIP
    >>> model = OrtGenAIModel("tiny-onnx", "cpu")                        # doctest: +SKIP
    >>> model.generate(input_ids, max_new_tokens=32, streamer=streamer)  # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

__all__ = ["PROVIDERS", "OrtGenAIModel", "OrtGenAIRefused", "provider_of"]

#: ``--device`` kinds and ORT GenAI's execution provider for each
PROVIDERS = {"cpu": "cpu", "cuda": "cuda", "dml": "dml"}
#: generate() keywords OrtGenAIModel takes; others are transformers-only
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
#: transformers' defaults for sampling, used where the variant does not say (genai_config.json's
#: own ``search`` section would otherwise change what a sampled run draws)
_SAMPLING_DEFAULTS = {"temperature": 1.0, "top_p": 1.0, "top_k": 50}


class OrtGenAIRefused(ValueError):
    """A request ORT GenAI cannot time here (beam search, a transformers-only setting, a
    sequence longer than the model's context)."""


def provider_of(device: str, cuda_available: bool = False) -> tuple[str, int | None]:
    """``--device`` as ORT GenAI's execution provider and device index: ``cpu`` -> ``cpu``,
    ``cuda[:N]`` -> ``cuda``, ``dml[:N]`` -> ``dml`` (DirectML); ``auto`` is ``cuda`` where this
    ORT GenAI has CUDA, else ``cpu`` (as transformers' ``auto`` picks the accelerator). A
    :class:`ValueError` for anything else.

    >>> provider_of("cuda:1"), provider_of("auto"), provider_of("DML")
    (('cuda', 1), ('cpu', None), ('dml', None))
    """
    text = str(device).strip().lower()
    if text == "auto":
        return ("cuda", None) if cuda_available else ("cpu", None)
    kind, _, index = text.partition(":")
    if kind not in PROVIDERS or (index and not index.isdigit()) or (kind == "cpu" and index):
        raise ValueError(
            f"--device {device}: --engine onnxruntime-genai runs on cpu, cuda[:N] or dml[:N]"
        )
    return PROVIDERS[kind], int(index) if index else None


def _read_config(path: Path) -> tuple[Any, Any]:
    """``(config, generation_config)`` from ``genai_config.json``: what streambench reads of a
    model (vocabulary, context length, special tokens; no ``config.json`` is needed)."""
    data = json.loads((path / "genai_config.json").read_text())
    model = data.get("model", {})
    special = {key: model.get(key) for key in ("bos_token_id", "eos_token_id", "pad_token_id")}
    config = SimpleNamespace(
        model_type=model.get("type"),
        vocab_size=model.get("vocab_size"),
        max_position_embeddings=model.get("context_length"),
        is_encoder_decoder=False,
        **special,
    )
    return config, SimpleNamespace(**special)


def _configured_threads(path: Path) -> int | None:
    """``intra_op_num_threads`` of the decoder's session in ``genai_config.json``, if set."""
    data = json.loads((path / "genai_config.json").read_text())
    options = data.get("model", {}).get("decoder", {}).get("session_options", {})
    value = options.get("intra_op_num_threads") if isinstance(options, dict) else None
    return value if isinstance(value, int) and value > 0 else None


class OrtGenAIModel:
    """``onnxruntime_genai.Model`` on an ORT GenAI directory, on one execution provider, with
    transformers' ``generate()`` calling convention for what streambench passes.

    Attributes: ``path``, ``provider`` (``cpu``, ``cuda``, ``dml``), ``device_id`` (``None``: the
    provider's default), ``config`` and ``generation_config`` (read from ``genai_config.json``).
    """

    def __init__(
        self,
        path: str | Path,
        provider: str = "cpu",
        device_id: int | None = None,
        threads: int | None = None,
    ):
        import onnxruntime_genai as og

        self.path = Path(path)
        self.provider = provider
        self.device_id = device_id
        self.config, self.generation_config = _read_config(self.path)
        og_config = og.Config(str(self.path))
        if threads is not None:
            # the decoder session's intra-op pool (ORT's default: one thread per physical core)
            options = {"session_options": {"intra_op_num_threads": int(threads)}}
            og_config.overlay(json.dumps({"model": {"decoder": options}}))
        #: the decoder session's intra-op threads: as given, else genai_config.json's (``None``:
        #: ORT's default, which it does not report)
        self.threads = threads if threads is not None else _configured_threads(self.path)
        og_config.clear_providers()  # the directory's own provider list: --device decides
        if provider != "cpu":
            og_config.append_provider(provider)
            if device_id is not None:
                og_config.set_provider_option(provider, "device_id", str(device_id))
        self.model = og.Model(og_config)

    def generate(self, input_ids: Any, **kwargs: Any) -> Any:
        """Generate from ``input_ids`` (a ``[batch, n]`` tensor) and feed ``streamer`` per step;
        returns the token ids as a ``[batch, n + new]`` tensor, as transformers does."""
        import numpy as np
        import onnxruntime_genai as og
        import torch

        batch, prompt_len = int(input_ids.shape[0]), int(input_ids.shape[-1])
        options = self._search_options(kwargs, batch, prompt_len)
        ids = input_ids.detach().cpu().numpy().astype(np.int32)
        mask = kwargs.get("attention_mask")
        if mask is not None and not bool(mask.all()):
            # ORT GenAI derives its mask from the pad token: left padding becomes that token
            ids[mask.detach().cpu().numpy() == 0] = self._pad_token_id()
        params = og.GeneratorParams(self.model)
        params.set_search_options(**options)
        timer = kwargs.get("streamer")
        if timer is not None:
            timer.on_prompt(batch, prompt_len)
        generator = og.Generator(self.model, params)
        generator.append_tokens(ids)
        steps = []
        while not generator.is_done():
            generator.generate_next_token()
            steps.append(np.asarray(generator.get_next_tokens()).reshape(batch))
            if timer is not None:
                timer.on_step(1)
        if timer is not None:
            timer.end()
        new = np.stack(steps, axis=1) if steps else np.zeros((batch, 0), dtype=np.int64)
        return torch.cat([input_ids.cpu(), torch.from_numpy(new).to(input_ids.dtype)], dim=-1)

    def forced_scores(self, token_ids: list[int]) -> tuple[list[float], list[int]]:
        """``--quality``: ``token_ids`` teacher-forced: each later token's negative
        log-likelihood (nats) and the greedy token before it, from the decoder's ``logits``
        output of the prompt pass (``Generator.append_tokens``, then ``get_output("logits")``:
        ``[1, len, vocab]``, every position; scored by
        :func:`~streambench.engines.scoring.next_token_scores`)."""
        import numpy as np
        import onnxruntime_genai as og

        from ..scoring import next_token_scores

        n = len(token_ids)
        params = og.GeneratorParams(self.model)
        # max_length n: a text as long as the model's context is scored (ORT GenAI refuses a
        # max_length over genai_config.json's context_length)
        params.set_search_options(batch_size=1, max_length=n, do_sample=False, num_beams=1)
        generator = og.Generator(self.model, params)
        generator.append_tokens(np.asarray([token_ids], dtype=np.int32))
        logits = np.asarray(generator.get_output("logits"))
        if logits.ndim != 3 or logits.shape[:2] != (1, n):
            raise NotImplementedError(
                f"this ORT GenAI model gives logits of shape {list(logits.shape)} for a prompt of "
                f"{n} tokens, not one row per position: its texts are not scored"
            )
        return next_token_scores(logits[0, :-1], token_ids[1:])

    def _pad_token_id(self) -> int:
        pad = self.generation_config.pad_token_id
        if isinstance(pad, list):
            pad = pad[0] if pad else None
        return int(pad) if isinstance(pad, int) else 0

    def _search_options(
        self, kwargs: dict[str, Any], batch: int, prompt_len: int
    ) -> dict[str, Any]:
        """``GeneratorParams.set_search_options`` of one call (lengths count the prompt)."""
        unknown = sorted(set(kwargs) - _TAKEN)
        if unknown:
            raise OrtGenAIRefused(
                f"--engine onnxruntime-genai does not take {', '.join(unknown)} (transformers only)"
            )
        if int(kwargs.get("num_beams") or 1) > 1:
            raise OrtGenAIRefused(
                "--engine onnxruntime-genai times greedy or sampled decoding only, not beam "
                "search: use --num-beams 1"
            )
        max_new = int(kwargs.get("max_new_tokens") or 20)
        min_new = int(kwargs.get("min_new_tokens") or 0)
        context = self.config.max_position_embeddings
        if context and prompt_len + max_new > int(context):
            raise OrtGenAIRefused(
                f"{prompt_len} prompt + {max_new} new tokens exceed the model's context of "
                f"{context} tokens (genai_config.json): lower --in-out"
            )
        options: dict[str, Any] = {
            "batch_size": batch,
            "max_length": prompt_len + max_new,
            # EOS cannot end the run before min_new_tokens, as in transformers
            "min_length": prompt_len + min_new,
            "do_sample": bool(kwargs.get("do_sample")),
            "num_beams": 1,
        }
        if options["do_sample"]:
            import torch

            for key, default in _SAMPLING_DEFAULTS.items():
                value = kwargs.get(key)
                options[key] = default if value is None else value
            # --seed reseeds torch before each run: every run draws the same tokens
            options["random_seed"] = int(torch.initial_seed() % 2**31)
        return options
