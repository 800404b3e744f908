"""The local sweep behind ``streambench run``: what to benchmark (:class:`SweepSettings`, the
plan of configurations: model x generation variant x input/output pair x batch size), each
configuration's identity (:func:`configuration_id`, :func:`configuration_label`) and its empty
typed result (:func:`new_result`, a :class:`~streambench.results.schema.ConfigurationResult`
that :func:`streambench.runners.local.configuration.run_configuration` fills). Loading the model is
:mod:`streambench.engines.transformers`; the cross-rank step under a launcher is
:func:`streambench.cluster.gather_entry` (through :class:`RankContext`).

torch and transformers are imported inside the functions, so ``streambench --help`` stays fast.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...engines.transformers.placement import Placement
from ...errors import UsageError
from ...ranks import RankFacts, init_distributed
from ...spec.models import ModelSpec
from ...spec.run import SweepSettings
from ...workloads.synthetic import PROMPT_TEXT, build_prompt
from ...workloads.synthetic import _pad_token_id as _pad_token_id  # sweep.py re-exports it

if TYPE_CHECKING:
    from ...results.schema import ConfigurationResult

__all__ = [
    "PROMPT_TEXT",
    "ConfigurationError",
    "RankContext",
    "SweepSettings",
    "beam_wrapper_class",
    "build_prompt",
    "configuration_id",
    "configuration_label",
    "iter_configurations",
    "iter_plan",
    "new_entry",
    "new_result",
    "parse_in_out",
    "parse_int_list",
    "quiet_transformers",
]


class ConfigurationError(RuntimeError):
    """One configuration of the sweep cannot run (e.g. a prompt longer than the context)."""


# -- parsing ------------------------------------------------------------------------------------
def parse_in_out(text: str | list[Any], where: str = "--in-out") -> list[tuple[int, int]]:
    """``"32-32,1024-128"`` (or a list of ``"32-32"`` strings) -> ``[(32, 32), (1024, 128)]``;
    token counts bounded (:data:`streambench.spec.config.BOUNDS`)."""
    from ...spec.config import parse_in_out_text

    return parse_in_out_text(text, where)


def parse_int_list(text: Any, what: str, minimum: int = 1) -> list[int]:
    """``"1,4"`` / ``4`` / ``[1, 4]`` -> ``[1, 4]``; each value ``>= minimum``."""
    items = text if isinstance(text, (list, tuple)) else str(text).split(",")
    out: list[int] = []
    for raw in items:
        item = str(raw).strip()
        if not item:
            continue
        try:
            value = int(item)
        except ValueError:
            raise UsageError(f"{what}: {item!r} is not a whole number") from None
        if value < minimum:
            raise UsageError(f"{what}: {value} is below {minimum}")
        out.append(value)
    if not out:
        raise UsageError(f"{what}: no value given")
    return out


# -- what to benchmark: streambench.spec.run (built and checked there, frozen) ------------------
@dataclass
class RankContext:
    """Where this process stands in a distributed run (``torch.distributed``; rank 0 of 1 when
    not distributed). Only the *writer* (rank 0) prints tables and writes result files.

    Multi-rank support (torchrun / deepspeed) plugs in here: :meth:`gather` receives this rank's
    configuration result and returns what the writer records (by default the result itself).
    ``placement``: this rank's :class:`~streambench.engines.transformers.Placement` when
    :meth:`from_env` was
    given a device (resolved there, once).
    """

    rank: int = 0
    world_size: int = 1
    gather: Callable[[ConfigurationResult], ConfigurationResult] = field(
        default=lambda result: result
    )
    placement: Placement | None = None

    @property
    def is_writer(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(
        cls, device: Any = None, *, tp: str = "none", ranks: RankFacts | None = None
    ) -> RankContext:
        """Rank and world size from the launcher's environment (``RANK``/``WORLD_SIZE``, see
        :class:`~streambench.ranks.RankFacts`); ``device`` (a
        :class:`~streambench.engines.transformers.Placement`, taken as it is, or a device validated
        by
        :func:`~streambench.devices.resolve_device`) becomes :attr:`placement`. With several
        ranks, the process group is initialized on this rank's device and :meth:`gather`
        collects every rank's runs into the writer's entry
        (:func:`streambench.cluster.gather_entry`)."""
        if isinstance(device, Placement):
            placement: Placement | None = device
            ranks = device.ranks
        else:
            ranks = RankFacts.from_env() if ranks is None else ranks
            placement = None if device is None else Placement.resolve(device, tp, ranks)
        ctx = cls(ranks.rank, ranks.world_size, placement=placement)
        if ranks.launched:
            from ...cluster import gather_entry

            init_distributed(placement.device if placement is not None else None)
            ctx.gather = gather_entry
        return ctx


def beam_wrapper_class() -> Any:
    """``streambench.BenchmarkWrapper`` (times beam search through a logits processor), or a
    :class:`UsageError` saying that this install lacks it."""
    try:
        from ...wrapper import BenchmarkWrapper  # type: ignore[import-not-found]
    except ImportError:
        raise UsageError(
            "--num-beams > 1: transformers cannot stream beam search, and timing it needs "
            "streambench.BenchmarkWrapper, which this install of streambench does not have yet; "
            "use --num-beams 1"
        ) from None
    return BenchmarkWrapper


# -- prompts -------------------------------------------------------------------------------------
def configuration_id(
    model: str,
    n_in: Any,
    n_out: Any,
    batch: int,
    beams: int = 1,
    workload: Any = None,
    variant: Any = None,
) -> str:
    """Stable key of a configuration, e.g. ``"tiny-llama|32-32|bs1"`` (``|beams4`` when > 1;
    then ``|name=value`` of the workload's identity and of each setting of the generation
    variant, sorted, e.g. ``|prompts=p.jsonl#0a1b2c3d4e5f|attn_implementation=sdpa``)."""
    from ...spec.generation import identity

    key = f"{model}|{_io(n_in, n_out)}|bs{batch}"
    key += f"|beams{beams}" if beams > 1 else ""
    ident = dict(workload.identity()) if workload is not None else {}
    ident.update(identity(variant or {}))
    return key + "".join(f"|{k}={v}" for k, v in sorted(ident.items()))


def _io(n_in: Any, n_out: Any) -> str:
    """``"32-32"``; with a prompt file ``"data-128"`` / ``"data-from-data"``."""
    return f"{'data' if n_in is None else n_in}-{'from-data' if n_out is None else n_out}"


def configuration_label(
    settings: SweepSettings, model: str, n_in: Any, n_out: Any, batch: int, variant: Any = None
) -> str:
    """``"tiny-llama 32-32 bs1"``, then ``beams4``, the workload's tag and the variant's
    settings (e.g. ``attn=sdpa``)."""
    from ...spec.generation import variant_label

    w = settings.workload
    if w is not None and w.uses_file:
        head = f"{model} {w.tag()}"
    else:
        head = f"{model} {_io(n_in, n_out)}" + (f" {w.tag()}" if w is not None and w.tag() else "")
    beams = f" beams{settings.num_beams}" if settings.num_beams > 1 else ""
    extra = variant_label(variant or {})
    return f"{head} bs{batch}{beams}" + (f" {extra}" if extra else "")


def new_result(
    settings: SweepSettings, model_name: str, n_in: Any, n_out: Any, batch: int, variant: int = 0
) -> ConfigurationResult:
    """An empty configuration (status ``"pending"``, ``docs/results-schema.md``) that the
    runner fills; ``variant``: the index of its generation variant in ``settings.variants``."""
    from ...engines.variant_load import load_settings
    from ...results.schema import ConfigurationResult, ConfigurationSettings, RunSetup
    from ...spec.generation import identity

    w = settings.workload
    chosen = settings.variants[variant]
    setup = load_settings(settings, chosen)
    beams = settings.num_beams
    further = dict(w.identity()) if w is not None and w.identity() else {}
    further.update(identity(chosen) if chosen else {})
    return ConfigurationResult(
        settings=ConfigurationSettings(
            model=model_name,
            input_tokens=n_in,
            output_tokens=n_out,
            batch_size=batch,
            num_beams=beams,
            further=further,
        ),
        id=configuration_id(model_name, n_in, n_out, batch, beams, w, chosen),
        label=configuration_label(settings, model_name, n_in, n_out, batch, chosen),
        config=RunSetup(
            low_bit=setup.low_bit,
            dtype=setup.dtype,
            device=settings.device,
            warmup=settings.warmup,
            trials=settings.trials,
        ),
        status="pending",
    )


def new_entry(
    settings: SweepSettings, model_name: str, n_in: Any, n_out: Any, batch: int, variant: int = 0
) -> dict[str, Any]:
    """:func:`new_result` as a results/2 dict (for code that imported it from here)."""
    return new_result(settings, model_name, n_in, n_out, batch, variant).to_dict()


def _stats_dict(stats: Any) -> dict[str, Any] | None:
    return stats.to_dict() if stats is not None else None


def _check_variant(variant: dict[str, Any], batch: int) -> None:
    from ...engines import engine_of, get_engine

    problem = get_engine(engine_of(variant)).configuration_problem(variant, batch)
    if problem is not None:
        raise ConfigurationError(problem)


def iter_plan(settings: SweepSettings) -> Iterator[tuple[ModelSpec, int, int, int, int]]:
    """(model, variant index, input tokens, output tokens, batch size) in sweep order: model,
    variant, pair, batch size (so that variants sharing a load are neighbours)."""
    for spec in settings.models:
        for index in range(len(settings.variants)):
            for n_in, n_out in _pairs(settings):
                for batch in settings.batch_sizes:
                    yield spec, index, n_in, n_out, batch


def iter_configurations(settings: SweepSettings) -> Iterator[tuple[ModelSpec, int, int, int]]:
    """(model, input tokens, output tokens, batch size) in sweep order: model, then pair, then
    batch size."""
    for spec in settings.models:
        for n_in, n_out in _pairs(settings):
            for batch in settings.batch_sizes:
                yield spec, n_in, n_out, batch


def _pairs(settings: SweepSettings) -> list[tuple[Any, Any]]:
    """The input/output pairs; with a prompt file one: ``(None, N)`` (lengths from the data,
    N forced output tokens) or ``(None, None)`` (from-data / natural outputs)."""
    return settings.pairs()


@contextlib.contextmanager
def quiet_transformers(verbose: bool) -> Iterator[None]:
    """Silence transformers' generation warnings unless ``verbose``."""
    if verbose:
        yield
        return
    import warnings

    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # "Loading weights" bars would cut through the tables
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()
