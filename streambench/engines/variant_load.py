"""Loading a model as a generation variant needs it (:mod:`streambench.spec.generation`): the
settings
it loads with (what its ipex-llm ``test_api`` implies, its ``from_pretrained()`` keywords), by
its engine (:mod:`streambench.engines`: ``torch.compile``, the assistant model ...).
"""

from __future__ import annotations

from typing import Any

from ..spec.models import ModelSpec
from .transformers.load import LoadedModel

__all__ = ["load_settings", "prepare_model"]


def load_settings(settings: Any, variant: dict[str, Any]) -> Any:
    """The settings a variant's model loads with: what its ``test_api`` implies (unless the
    command line set it) and its ``from_pretrained()`` keywords."""
    import dataclasses

    from ..ranks import launched_world_size
    from ..spec.allinone import implied
    from ..spec.generation import load_kwargs

    changes: dict[str, Any] = {"model_kwargs": load_kwargs(variant)}
    api = variant.get("test_api")
    if api:
        given = implied(api, settings.low_bit, launched_world_size() > 1)
        for key in ("dtype", "low_bit", "tp"):
            if key in given and key not in settings.pinned:
                if key != "dtype" or given[key] is not None:
                    changes[key] = given[key]
        changes["optimize_model"] = given.get("optimize_model", False)
    if variant.get("dtype"):  # --dtype a,b: the variant's own (wins over a test_api's)
        changes["dtype"] = variant["dtype"]
    if variant.get("low_bit"):  # --low-bit a,b or a `variants:` item: the variant's own
        changes["low_bit"] = variant["low_bit"]
    return dataclasses.replace(settings, **changes)


def prepare_model(
    spec: ModelSpec, settings: Any, variant: dict[str, Any], device: Any
) -> LoadedModel:
    """Load ``spec`` as ``variant`` needs it, by its engine
    (:meth:`streambench.engines.Engine.load`)."""
    from . import engine_of, get_engine
    from .threads import torch_threads

    engine = get_engine(engine_of(variant))
    # before the load: torch sizes its pool once, and vLLM's CPU worker freezes it
    torch_threads(getattr(settings, "threads", None))
    loaded = engine.load(spec, settings, device, variant)
    if loaded.threads is None and not engine.timed_on_host:
        loaded.threads = torch_threads(None)  # torch computes: its pool is what ran
    return loaded
