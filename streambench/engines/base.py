"""The engine contract: what ``streambench run --engine NAME`` needs from an inference engine.

An :class:`Engine` says what it can do (class attributes, checked before any model loads) and
loads a model whose ``generate(input_ids, streamer=..., **kwargs)`` follows transformers'
convention: it calls ``streamer.put()`` per token as transformers does, or, for generation that
is not transformers', ``streamer.on_prompt(batch, prompt_tokens)`` when the prompt is handed
over, ``streamer.on_step(n)`` per decoding step and ``streamer.end()``. The timing core
(:class:`~streambench.TimingStreamer`) is the same for every engine.

    >>> from streambench.engines import Engine, get_engine, register
    >>> class Greedy(Engine):
    ...     name = "greedy-doc"
    ...     description = "a greedy loop (batch 1)"
    ...     batch = False
    >>> _ = register(Greedy)
    >>> get_engine("greedy-doc").configuration_problem({}, 2)
    'batch 2 asked: --engine greedy-doc runs batch 1 only; use --batch-size 1'
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import UsageError

if TYPE_CHECKING:
    from ..spec.models import ModelSpec
    from .transformers.load import LoadedModel

__all__ = ["Engine"]


class Engine:
    """An inference engine. Subclass it, set the class attributes, write :meth:`load`."""

    #: the ``--engine`` value
    name: ClassVar[str] = ""
    #: one line for ``--help``
    description: ClassVar[str] = ""
    #: batch > 1 (``--batch-size``); ``False``: batch 1 only
    batch: ClassVar[bool] = True
    #: beam search (``--num-beams`` > 1, timed through :class:`~streambench.BenchmarkWrapper`)
    beams: ClassVar[bool] = True
    #: the ``--low-bit`` weight formats it takes (empty: none)
    low_bit_formats: ClassVar[tuple[str, ...]] = ()
    #: what its weight formats are, for the message that refuses another one
    low_bit_note: ClassVar[str] = ""
    #: generation settings it does not have (names of :data:`streambench.spec.generation.SETTINGS`:
    #: ``compile``, ``assistant_model``, ``generate_kwargs`` ...), refused as the sweep is read
    refuses: ClassVar[tuple[str, ...]] = ()
    #: the modules it imports, and the pip extra of streambench that installs them (if any)
    requires: ClassVar[tuple[str, ...]] = ()
    extra: ClassVar[str | None] = None
    #: where its tokens are timed: ``False``: on the ``--device`` torch device, after a sync;
    #: ``True``: on the host (its ``generate()`` hands each token to the host: nothing to sync)
    timed_on_host: ClassVar[bool] = False
    #: the default directory of its export cache (models it converts once and reuses), which
    #: ``--export-dir`` replaces; no output of a run may be written into it (``None``: none)
    export_cache: ClassVar[str | None] = None
    #: ``--isolate`` may fork its workers from a warm process that imported it and loaded the
    #: model on the CPU (:mod:`streambench.runners.local.warm`); ``False`` (the default): a fresh
    #: process per worker, until forking was shown safe for it (threads, native runtimes)
    fork_safe: ClassVar[bool] = False

    def check(self, settings: Any, variants: list[dict[str, Any]]) -> None:
        """Before any model loads (``variants``: those of the sweep that run on this engine):
        installed, device, beams, ``--low-bit``; a one-line :class:`UsageError` naming the
        option."""
        self.check_installed()
        self.timing_device(settings)
        sizes = list(getattr(settings, "batch_sizes", None) or [1])
        if not self.batch and min(sizes) > 1:  # nothing could run; a mix fails per configuration
            raise UsageError(
                f"--batch-size {','.join(map(str, sizes))}: --engine {self.name} runs batch 1 "
                "only; use --batch-size 1"
            )
        if settings.num_beams > 1 and not self.beams:
            raise UsageError(
                f"--engine {self.name} streams greedy or sampled decoding only: use --num-beams 1"
            )
        for variant in variants or [{}]:  # a variant may have its own (--low-bit a,b)
            self.check_low_bit(variant.get("low_bit") or settings.low_bit)

    def timing_device(self, settings: Any) -> Any:
        """The torch device its streamer times on: the host's CPU when :attr:`timed_on_host`,
        else ``--device`` (:class:`UsageError` when this machine has none)."""
        import torch

        from ..devices import DeviceNotAvailableError, resolve_device

        if self.timed_on_host:
            return torch.device("cpu")
        try:
            return resolve_device(settings.device)
        except (ValueError, DeviceNotAvailableError) as exc:
            raise UsageError(str(exc).replace("pass device='cpu'", "use --device cpu")) from None

    def check_installed(self, note: str = "") -> None:
        """Every module of :attr:`requires` importable, else the pip command (and ``note``)."""
        missing = [m for m in self.requires if not _importable(m)]
        if missing:
            from ..extras import install_hint

            how = install_hint(self.extra) if self.extra else f"pip install {missing[0]}"
            raise UsageError(
                f"--engine {self.name} needs {', '.join(missing)}, which is not installed: "
                f"{how}{note}"
            )

    def check_low_bit(self, low_bit: str | None) -> None:
        """``--low-bit`` (``None``: not given) is one of :attr:`low_bit_formats`."""
        if low_bit is None or low_bit in self.low_bit_formats:
            return
        if not self.low_bit_formats:
            raise UsageError(f"--engine {self.name} takes no --low-bit: leave it out")
        note = f" ({self.low_bit_note})" if self.low_bit_note else ""
        raise UsageError(
            f"--low-bit {low_bit} is not a weight format of --engine {self.name}: use one of "
            f"{', '.join(self.low_bit_formats)}{note}"
        )

    def configuration_problem(self, variant: dict[str, Any], batch: int) -> str | None:
        """Why one configuration cannot run (the run records it as failed and goes on), or
        ``None``: checked before its prompt is built."""
        if batch > 1 and not self.batch:
            return (
                f"batch {batch} asked: --engine {self.name} runs batch 1 only; use --batch-size 1"
            )
        return None

    def load(
        self, spec: ModelSpec, settings: Any, device: Any, variant: dict[str, Any]
    ) -> LoadedModel:
        """``spec`` loaded as ``variant`` says, on ``device`` (the torch device the streamer
        times on; the host's CPU when :attr:`timed_on_host`)."""
        raise NotImplementedError(f"--engine {self.name} does not load models")

    def forced_scores(self, loaded: LoadedModel, ids: list[int]) -> tuple[list[float], list[int]]:
        """``--quality``: one text teacher-forced (``ids``: its token ids, at least 2): for each
        position after the first, the negative log-likelihood (nats) of the text's token, and
        the model's greedy token at that position (the argmax of the logits before it).

        By default a transformers-like model: ``loaded.model(input_ids=...)`` returning
        ``.logits`` (transformers, optimum-intel's OpenVINO models). An engine that cannot
        overrides it to raise :class:`NotImplementedError` with the reason (the results then
        hold ``null`` and that reason)."""
        import torch

        model = loaded.model
        if loaded.is_encoder_decoder:
            raise NotImplementedError("an encoder-decoder model: its texts are not scored")
        if not callable(model):
            raise NotImplementedError(f"--engine {self.name} gives no logits to score a text")
        device = getattr(loaded, "device", None) or "cpu"
        tensor = torch.tensor([ids], dtype=torch.long, device=device)
        with torch.inference_mode():
            out = model(input_ids=tensor, attention_mask=torch.ones_like(tensor))
        logits = getattr(out, "logits", None)
        if logits is None:
            raise NotImplementedError(f"--engine {self.name}'s model returns no logits")
        logits = torch.as_tensor(logits)[0, :-1].float()  # the positions that predict ids[1:]
        target = torch.tensor(ids[1:], dtype=torch.long, device=logits.device)
        nll = -torch.log_softmax(logits, dim=-1).gather(1, target[:, None])[:, 0]
        return nll.cpu().tolist(), logits.argmax(dim=-1).cpu().tolist()

    def record(self, loaded: LoadedModel, trials: int) -> dict[str, Any] | None:
        """The configuration's ``engine`` object of the results (``None``: none), after its
        ``trials`` measured runs: by default what the load said (``loaded.engine``). Called when
        :meth:`load` set ``loaded.engine`` (a dict naming the engine: ``{"name": ...}``)."""
        return dict(loaded.engine) if loaded.engine is not None else None


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
