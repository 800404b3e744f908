"""Loading one model split over the ranks of a launch (``torchrun``, ``deepspeed``).

``--tp transformers``: ``from_pretrained(..., tp_plan="auto")`` (transformers' tensor
parallelism); ``--tp deepspeed``: every rank loads the whole model on the CPU with
:func:`~streambench.engines.transformers.load.load_on_device`, then DeepSpeed AutoTP shards it.
This module
builds on :mod:`streambench.engines.transformers.load` and receives a resolved
:class:`~streambench.engines.transformers.placement.Placement`; nothing below calls back up here.

torch, transformers and deepspeed are imported inside the functions.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

from ...errors import UsageError
from ...ranks import get_world_size, init_distributed, launched_world_size, torch_distributed
from ...spec.models import ModelSpec
from .load import (
    LoadedModel,
    LoadOptions,
    dtype_kwargs,
    load_on_device,
    load_tokenizer,
    resolve_dtype,
)
from .placement import Placement

__all__ = [
    "TP_ENV",
    "TP_MODES",
    "load_model_tensor_parallel",
    "resolve_tp_mode",
    "tensor_parallel_kwargs",
]

#: ``--tp`` values
TP_MODES = ("auto", "none", "transformers", "deepspeed")
#: environment variable read when ``--tp`` is not given
TP_ENV = "STREAMBENCH_TP"


def resolve_tp_mode(mode: str | None = None) -> str:
    """``--tp`` (or ``$STREAMBENCH_TP``) -> ``"none"``, ``"transformers"`` or ``"deepspeed"``.

    ``auto`` (default): transformers' tensor parallelism (``tp_plan="auto"``) when launched
    with more than one rank, else none. ``none`` under a launcher: every rank runs a full
    replica (each on its own device)."""
    text = str(mode or os.environ.get(TP_ENV) or "auto").strip().lower()
    if text not in TP_MODES:
        raise ValueError(
            f"unknown tensor-parallel mode {text!r}: use one of {', '.join(TP_MODES)} "
            f"(--tp or ${TP_ENV})"
        )
    if text == "auto":
        return "transformers" if launched_world_size() > 1 else "none"
    return text


def tensor_parallel_kwargs(tp_plan: Any = "auto") -> dict[str, Any]:
    """``from_pretrained`` keyword arguments that load a model tensor-parallel across the ranks
    of the launch, in the spelling of the installed transformers: ``distributed_config=
    DistributedConfig(tp_plan=...)`` where it exists (5.x), else ``tp_plan=...`` (4.50+)."""
    try:
        from transformers.distributed import DistributedConfig
    except ImportError:
        DistributedConfig = None
    fields = getattr(DistributedConfig, "__dataclass_fields__", {})
    if DistributedConfig is not None and "tp_plan" in fields:
        return {"distributed_config": DistributedConfig(tp_plan=tp_plan)}
    return {"tp_plan": tp_plan}


def load_model_tensor_parallel(
    spec: ModelSpec, settings: LoadOptions, placement: Placement
) -> LoadedModel:
    """Load ``spec`` split over the ranks of the launch, as ``placement.tp`` says.

    ``"transformers"``: ``from_pretrained(..., distributed_config=DistributedConfig(
    tp_plan="auto"))`` (needs ``accelerate``; the embedded tiny model is written to a
    rank-local temporary folder first; random-weight presets need ``--tp deepspeed``).
    ``"deepspeed"``: every rank loads the model on the CPU, then ``deepspeed.init_inference(
    model, tensor_parallel={"tp_size": WORLD_SIZE}, dtype=..., replace_with_kernel_inject=False)``
    (AutoTP) shards it; the sharded module is timed.
    ``"none"``: one full replica on this rank's device.
    The process group is initialized first (:func:`~streambench.ranks.init_distributed`, 30 min
    timeout)."""
    if placement.tp == "none":
        init_distributed(placement.device)
        return load_on_device(spec, settings, placement)
    if placement.tp == "deepspeed":
        return _load_deepspeed(spec, settings, placement)
    if placement.tp == "transformers":
        return _load_transformers(spec, settings, placement)
    raise ValueError(f"unknown tensor-parallel mode {placement.tp!r}")


def _load_deepspeed(spec: ModelSpec, settings: LoadOptions, placement: Placement) -> LoadedModel:
    """DeepSpeed AutoTP: load on the CPU, shard, move this rank's shard to its device."""
    t0 = time.perf_counter()
    dtype = resolve_dtype(settings.dtype, placement.device)
    try:
        import deepspeed
    except ImportError:
        from ...extras import install_hint

        raise UsageError(f"--tp deepspeed needs DeepSpeed: {install_hint('distributed')}") from None
    init_distributed(placement.device)
    deepspeed.init_distributed(dist_backend=str(torch_distributed().get_backend()))  # type: ignore[union-attr]
    loaded = load_on_device(spec, settings, placement.on_cpu)
    engine = deepspeed.init_inference(
        loaded.model,
        tensor_parallel={"tp_size": get_world_size()},
        dtype=dtype,
        replace_with_kernel_inject=False,
    )
    model = engine.module.to(placement.device).eval()
    note = f"DeepSpeed AutoTP over {get_world_size()} ranks"
    return dataclasses.replace(
        loaded, model=model, device=placement.device, load_time_s=time.perf_counter() - t0,
        notes=[*loaded.notes, note],
    )  # fmt: skip


def _load_transformers(spec: ModelSpec, settings: LoadOptions, placement: Placement) -> LoadedModel:
    """transformers' tensor parallelism (``tp_plan="auto"``) from weights on disk."""
    import tempfile
    from pathlib import Path

    from transformers import AutoModelForCausalLM

    t0 = time.perf_counter()
    dtype = resolve_dtype(settings.dtype, placement.device)
    if settings.low_bit or settings.ipex:
        raise UsageError("--tp transformers cannot be combined with --low-bit or --ipex")
    kwargs = {**tensor_parallel_kwargs(), **dtype_kwargs(dtype)}
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="streambench-tp-") as tmp:
        tokenizer = None
        if spec.kind == "pretrained":
            source = spec.source or spec.name
        elif spec.kind == "embedded":
            plain = load_on_device(spec, settings, placement.on_cpu)
            tokenizer = plain.tokenizer
            _save_rank_local(plain.model, Path(tmp))
            source, plain = tmp, None
        else:
            raise UsageError(
                f"--tp transformers loads weights from disk; {spec.name} is a random-weight "
                "config: use --tp deepspeed, or pass a model directory"
            )
        init_distributed(placement.device)
        model = AutoModelForCausalLM.from_pretrained(
            source, trust_remote_code=settings.trust_remote_code, **kwargs
        ).eval()
    if tokenizer is None:
        tokenizer = load_tokenizer(source, settings.trust_remote_code)
        if tokenizer is None:
            notes.append("no tokenizer found: prompts are random token ids")
    notes.append(f"transformers tensor parallelism (tp_plan='auto') over {get_world_size()} ranks")
    device = _model_device(model, placement)
    return LoadedModel(
        spec, model, tokenizer, device, dtype, time.perf_counter() - t0, settings.low_bit, notes
    )


def _model_device(model: Any, placement: Placement) -> Any:
    """Where transformers put this rank's shard (its current device, selected by
    :func:`~streambench.ranks.init_distributed`); the placement's device when the model does
    not say."""
    import torch

    device = getattr(model, "device", None)
    return device if isinstance(device, torch.device) else placement.device


def _save_rank_local(model: Any, path: Any) -> None:
    """Write config + safetensors weights on *this* rank (``save_pretrained`` writes on rank 0
    only once a process group exists, and ranks on other nodes do not share its disk)."""
    from safetensors.torch import save_model

    model.config.save_pretrained(path)
    save_model(model, str(path / "model.safetensors"))
