"""Model loading for ``streambench run``, in one place.

Floors, lowest first (each imports only those below it):

- :mod:`.spec`: what ``MODEL`` means (:class:`ModelSpec`), hub reachability and cache checks,
  the directories a run reads;
- :mod:`.quantization`: the ``--low-bit`` kinds, their checks and configs;
- :mod:`.placement`: :class:`Placement`, the device resolved once (this rank's own under a
  launcher), the launch's rank facts and the tensor-parallel mode;
- :mod:`.load`: one whole model on one device (:func:`load_on_device`, :class:`LoadedModel`);
- :mod:`.tensor_parallel`: one model split over the ranks (builds on :mod:`.load`).

:func:`load_model` (here) is the entry point: it resolves the :class:`Placement` once and
hands it to the plain or the tensor-parallel loader. Nothing here imports torch at import time.
"""

from __future__ import annotations

from typing import Any

from ...spec.models import (
    EMBEDDED_MODEL,
    ModelSpec,
    check_hub_models,
    hub_cache_directory,
    protected_directories,
    resolve_model_spec,
)
from .load import (
    DTYPES,
    LoadedModel,
    LoadOptions,
    check_ipex_available,
    dtype_kwargs,
    load_on_device,
    load_tokenizer,
    resolve_dtype,
)
from .placement import Placement
from .quantization import (
    BNB_KINDS,
    IPEX_LLM_KINDS,
    TORCHAO_KINDS,
    check_low_bit_available,
    check_low_bit_kind,
    low_bit_backend,
)
from .tensor_parallel import (
    TP_ENV,
    TP_MODES,
    load_model_tensor_parallel,
    resolve_tp_mode,
    tensor_parallel_kwargs,
)

__all__ = [
    "BNB_KINDS",
    "DTYPES",
    "EMBEDDED_MODEL",
    "IPEX_LLM_KINDS",
    "TORCHAO_KINDS",
    "TP_ENV",
    "TP_MODES",
    "LoadOptions",
    "LoadedModel",
    "ModelSpec",
    "Placement",
    "check_hub_models",
    "check_ipex_available",
    "check_low_bit_available",
    "check_low_bit_kind",
    "dtype_kwargs",
    "hub_cache_directory",
    "load_model",
    "load_model_tensor_parallel",
    "load_on_device",
    "load_tokenizer",
    "low_bit_backend",
    "protected_directories",
    "resolve_dtype",
    "resolve_model_spec",
    "resolve_tp_mode",
    "tensor_parallel_kwargs",
]


def load_model(spec: ModelSpec, settings: LoadOptions, where: Any) -> LoadedModel:
    """Load (or build) the model of ``spec`` and time it; raises
    :class:`~streambench.errors.UsageError` when the model cannot be found or read.

    ``where``: a :class:`Placement`, or a device (``torch.device``, ``"cuda"`` ...) that is
    resolved here, once, into one (with ``settings.tp`` as its tensor-parallel mode). With
    ``tp="none"`` the whole model goes to this rank's device; otherwise it is split over the
    ranks (:func:`load_model_tensor_parallel`). A :class:`Placement` whose ``tp`` is not
    ``settings.tp`` is a ``ValueError``."""
    if isinstance(where, Placement):
        placement = where
        if placement.tp != settings.tp:
            raise ValueError(
                f"placement is for tp={placement.tp!r} but the settings ask for tp={settings.tp!r}"
            )
    else:
        placement = Placement.resolve(where, settings.tp)
    from ...peak_memory import rss_bytes

    before = rss_bytes()
    if placement.tp == "none":
        loaded = load_on_device(spec, settings, placement)
    else:
        loaded = load_model_tensor_parallel(spec, settings, placement)
    loaded.rss_before_load_bytes, loaded.rss_after_load_bytes = before, rss_bytes()
    return loaded
