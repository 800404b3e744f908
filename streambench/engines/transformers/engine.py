"""``--engine transformers`` (the default): the model's own ``generate()``, which takes the timing
streamer as it is. Loading (:mod:`streambench.engines.transformers`) adds what a generation variant
asks:
its ipex-llm ``test_api``'s implied settings, ``torch.compile`` of the forward and the assistant
model of assisted decoding (:mod:`streambench.engines.variant_load`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..base import Engine

if TYPE_CHECKING:
    from ...spec.models import ModelSpec
    from .load import LoadedModel

__all__ = ["TransformersEngine"]


class TransformersEngine(Engine):
    """transformers' ``generate()`` on a torch device: every setting, batch and beam search;
    ``--low-bit`` as :mod:`streambench.engines.transformers.quantization` knows it."""

    name = "transformers"
    description = "the model's own generate()"
    #: measured (tests/test_warm_start.py): torch + transformers imported and the model loaded
    #: on the CPU with one intra-op thread start no thread pool, so a fork is safe
    fork_safe = True

    def check(self, settings: Any, variants: list[dict[str, Any]]) -> None:
        """``--device`` present, ``--low-bit`` of every variant (a ``test_api`` may imply one)
        known and installed."""
        from ..variant_load import load_settings
        from .quantization import check_low_bit_available

        self.timing_device(settings)
        local = any(m.kind != "pretrained" for m in settings.models)
        for low_bit in sorted({load_settings(settings, v).low_bit or "" for v in variants}):
            if low_bit:
                self.check_low_bit(low_bit)
                check_low_bit_available(low_bit, local)

    def check_low_bit(self, low_bit: str | None) -> None:
        from .quantization import check_low_bit_kind

        if low_bit is not None:
            check_low_bit_kind(low_bit)

    def configuration_problem(self, variant: dict[str, Any], batch: int) -> str | None:
        """Assisted and prompt-lookup decoding: batch 1 only (transformers refuses more)."""
        from ...spec.generation import speculative

        if speculative(variant) and batch > 1:
            return (
                f"assisted and prompt-lookup decoding run with batch size 1 only (transformers "
                f"refuses batch {batch}): use --batch-size 1 for this variant"
            )
        return None

    def load(
        self, spec: ModelSpec, settings: Any, device: Any, variant: dict[str, Any]
    ) -> LoadedModel:
        """Load ``spec`` as ``variant`` needs it
        (:func:`~streambench.engines.variant_load.load_settings`),
        compile its forward (``--compile``) and load its assistant (``--assistant-model``, as
        ``loaded.assistant``)."""
        from ...spec.generation import compile_model
        from ...spec.models import EMBEDDED_MODEL, resolve_model_spec
        from ..variant_load import load_settings
        from . import load_model

        loaded = load_model(spec, load_settings(settings, variant), device)
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
