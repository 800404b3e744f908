"""``--threads N`` and what each configuration records of how it computed (:class:`Execution`).

torch's intra-op threads are set in the process that loads the model, before it loads
(:func:`torch_threads`, called by :func:`~streambench.engines.variant_load.prepare_model`): in an
``--isolate`` worker that is the worker. The engines that are not torch pass ``--threads`` to
their own runtime at load (OpenVINO's ``INFERENCE_NUM_THREADS``, llama.cpp's ``n_threads`` and
``n_threads_batch``, ORT GenAI's ``intra_op_num_threads``); vLLM in process computes on this
process's torch/OpenMP pool (its ``VLLM_CPU_OMP_THREADS_BIND`` binds only the workers of its
multiprocess executor, which streambench does not start). Each engine then says what it used.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Execution", "execution_of", "torch_threads"]


def torch_threads(asked: int | None) -> int:
    """torch's intra-op threads set to ``asked`` (``None``: left as they are); returns the count
    torch reports afterwards (vLLM's CPU worker replaces ``torch.set_num_threads`` with a no-op
    once loaded: the count read back is the truth)."""
    import torch

    if asked is not None and torch.get_num_threads() != asked:
        torch.set_num_threads(asked)
    return int(torch.get_num_threads())


@dataclass(frozen=True)
class Execution:
    """How one configuration computed, the same keys for every engine (results: ``execution``;
    CSV: ``threads``, ``weight format``, ``compute precision``).

    ``threads``: the CPU threads the engine computed with, as it reports them (``None``: its
    runtime's default, which it does not report). ``threads_asked``: ``--threads`` (``None``: not
    given). ``weight_format``: the weights as stored for the engine (``float32``, ``int4_sym``,
    ``q4_0`` ...). ``compute_precision``: the type its activations are computed in (``float32``,
    ``bf16``, ``f32`` ...)."""

    engine: str
    threads: int | None
    threads_asked: int | None
    weight_format: str | None
    compute_precision: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def csv_cells(self) -> dict[str, Any]:
        """The CSV columns of a configuration (empty cells for ``None``)."""
        return {
            "threads": "" if self.threads is None else self.threads,
            "weight format": self.weight_format or "",
            "compute precision": self.compute_precision or "",
        }


def execution_of(loaded: Any, engine: str, asked: int | None) -> Execution:
    """The :class:`Execution` of a loaded model: what its engine said at load
    (``loaded.threads``, ``loaded.weight_format``, ``loaded.compute_precision``), else torch's
    (the transformers engine: torch's thread count, ``--low-bit`` or the torch dtype; another
    engine's unknowns stay ``None``)."""
    dtype = str(loaded.dtype).replace("torch.", "") if loaded.dtype is not None else None
    if loaded.engine is not None:  # not torch's: only what the engine itself said
        dtype = None
    return Execution(
        engine=engine,
        threads=loaded.threads,
        threads_asked=asked,
        weight_format=loaded.weight_format or loaded.low_bit or dtype,
        compute_precision=loaded.compute_precision or dtype,
    )
