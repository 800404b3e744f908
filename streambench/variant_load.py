"""Loading a model as a generation variant needs it (:mod:`streambench.generation`): what its
ipex-llm ``test_api`` implies, its ``from_pretrained()`` keywords, ``torch.compile`` of the
forward and the assistant model of assisted decoding.
"""

from __future__ import annotations

from typing import Any

from .loading.load import LoadedModel
from .loading.spec import ModelSpec

__all__ = ["load_settings", "prepare_model"]


def load_settings(settings: Any, variant: dict[str, Any]) -> Any:
    """The settings a variant's model loads with: what its ``test_api`` implies (unless the
    command line set it) and its ``from_pretrained()`` keywords."""
    import dataclasses

    from .allinone import implied
    from .generation import load_kwargs
    from .ranks import launched_world_size

    changes: dict[str, Any] = {"model_kwargs": load_kwargs(variant)}
    api = variant.get("test_api")
    if api:
        given = implied(api, settings.low_bit, launched_world_size() > 1)
        for key in ("dtype", "low_bit", "tp"):
            if key in given and key not in settings.pinned:
                if key != "dtype" or given[key] is not None:
                    changes[key] = given[key]
        changes["optimize_model"] = given.get("optimize_model", False)
    return dataclasses.replace(settings, **changes)


def prepare_model(
    spec: ModelSpec, settings: Any, variant: dict[str, Any], device: Any
) -> LoadedModel:
    """Load ``spec`` as ``variant`` needs it (:func:`load_settings`), compile its forward
    (``--compile``) and load its assistant (``--assistant-model``, as ``loaded.assistant``)."""
    from .generation import compile_model
    from .loading import load_model
    from .loading.spec import EMBEDDED_MODEL, resolve_model_spec

    setup = load_settings(settings, variant)
    engine = variant.get("engine")
    if engine and engine != "transformers":
        from .engines import openvino_device
        from .engines.openvino import load_openvino

        return load_openvino(spec, setup, engine, openvino_device(settings.device))
    loaded = load_model(spec, setup, device)
    if variant.get("compile"):
        compile_model(loaded.model, variant.get("compile_mode"))
        loaded.notes.append(
            f"torch.compile (mode {variant.get('compile_mode') or 'default'}) of the forward; "
            "compiled during the warm-ups"
        )
    name = variant.get("assistant_model")
    if name:
        helper = resolve_model_spec(None if name == EMBEDDED_MODEL else name, False, None)
        plain = load_settings(settings, {})
        loaded.assistant = load_model(helper, plain, device).model
        loaded.notes.append(f"assistant model {name} loaded")
    return loaded
