"""The local sweep behind ``streambench run``: for every (input/output length x batch size)
configuration, build a prompt of exactly N tokens, run warm-ups and trials of
``model.generate(streamer=TimingStreamer)`` and turn them into a result entry. Loading the model
is :mod:`streambench.loading`; the cross-rank step under a launcher is
:func:`streambench.cluster.gather_entry` (through :class:`RankContext`).

Everything here works on plain data that :mod:`streambench.report` writes (see
``docs/results-schema.md``): a *configuration entry* is a dict with ``config``, ``status``,
``aggregates``, ``trials`` (one :meth:`RunResult.to_dict` per measured run) and friends.

Timing reference: every run is marked with :meth:`TimingStreamer.mark_start` right before
``generate()``, so ``first_token_s`` counts from the ``generate()`` call (input preparation and,
for encoder-decoder models, the encoder included; that part alone is ``pre_prompt_s``).

torch and transformers are imported inside the functions, so ``streambench --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .errors import UsageError, describe_exception
from .generation import compile_watch, record_compile, short_runs
from .loading.load import LoadedModel
from .loading.placement import Placement
from .loading.spec import ModelSpec
from .observers import Observers
from .profiling import profile_configuration
from .prompts import PROMPT_TEXT, _pad_token_id, build_prompt
from .ranks import RankFacts, init_distributed
from .run_spec import SweepSettings
from .trial_loop import TrialLog, record_load, run_trials

__all__ = [
    "PROMPT_TEXT",
    "ConfigurationError",
    "RankContext",
    "SweepSettings",
    "beam_wrapper_class",
    "build_prompt",
    "configuration_id",
    "configuration_label",
    "configuration_steps",
    "iter_configurations",
    "iter_plan",
    "new_entry",
    "parse_in_out",
    "parse_int_list",
    "quiet_transformers",
    "run_configuration",
]


class ConfigurationError(RuntimeError):
    """One configuration of the sweep cannot run (e.g. a prompt longer than the context)."""


# -- parsing ------------------------------------------------------------------------------------
def parse_in_out(text: str | list[Any], where: str = "--in-out") -> list[tuple[int, int]]:
    """``"32-32,1024-128"`` (or a list of ``"32-32"`` strings) -> ``[(32, 32), (1024, 128)]``;
    token counts bounded (:data:`streambench.config.BOUNDS`)."""
    from .config import parse_in_out_text

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


# -- what to benchmark: streambench.run_spec (built and checked there, frozen) ------------------
@dataclass
class RankContext:
    """Where this process stands in a distributed run (``torch.distributed``; rank 0 of 1 when
    not distributed). Only the *writer* (rank 0) prints tables and writes result files.

    Multi-rank support (torchrun / deepspeed) plugs in here: :meth:`gather` receives this rank's
    configuration entry and returns what the writer records (by default the entry itself).
    ``placement``: this rank's :class:`~streambench.loading.Placement` when :meth:`from_env` was
    given a device (resolved there, once).
    """

    rank: int = 0
    world_size: int = 1
    gather: Callable[[dict[str, Any]], dict[str, Any]] = field(default=lambda entry: entry)
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
        :class:`~streambench.loading.Placement`, taken as it is, or a device validated by
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
            from .cluster import gather_entry

            init_distributed(placement.device if placement is not None else None)
            ctx.gather = gather_entry
        return ctx


def beam_wrapper_class() -> Any:
    """``streambench.BenchmarkWrapper`` (times beam search through a logits processor), or a
    :class:`UsageError` saying that this install lacks it."""
    try:
        from .wrapper import BenchmarkWrapper  # type: ignore[import-not-found]
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
    from .generation import identity

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
    from .generation import variant_label

    w = settings.workload
    if w is not None and w.uses_file:
        head = f"{model} {w.tag()}"
    else:
        head = f"{model} {_io(n_in, n_out)}" + (f" {w.tag()}" if w is not None and w.tag() else "")
    beams = f" beams{settings.num_beams}" if settings.num_beams > 1 else ""
    extra = variant_label(variant or {})
    return f"{head} bs{batch}{beams}" + (f" {extra}" if extra else "")


def new_entry(
    settings: SweepSettings, model_name: str, n_in: int, n_out: int, batch: int, variant: int = 0
) -> dict[str, Any]:
    """An empty configuration entry (status ``"pending"``) for ``docs/results-schema.md``;
    ``variant``: the index of its generation variant in ``settings.variants``."""
    from .generation import identity
    from .variant_load import load_settings

    w = settings.workload
    chosen = settings.variants[variant]
    setup = load_settings(settings, chosen)
    beams = settings.num_beams
    entry = {
        "id": configuration_id(model_name, n_in, n_out, batch, beams, w, chosen),
        "label": configuration_label(settings, model_name, n_in, n_out, batch, chosen),
        "config": {
            "model": model_name,
            "input_tokens": n_in,
            "output_tokens": n_out,
            "batch_size": batch,
            "num_beams": settings.num_beams,
            "low_bit": setup.low_bit,
            "dtype": setup.dtype,
            "device": settings.device,
            "warmup": settings.warmup,
            "trials": settings.trials,
        },
        "status": "pending",
        "error": None,
        "actual_input_tokens": None,
        "actual_output_tokens": None,
        "model_loading_time_s": None,
        "started_at": None,
        "duration_s": None,
        "aggregates": None,
        "warmup_runs": [],
        "trials": [],
    }
    further = dict(w.identity()) if w is not None and w.identity() else {}
    further.update(identity(chosen) if chosen else {})
    if further:
        entry["config"]["further"] = further
    return entry


def _check_context(loaded: LoadedModel, n_in: int, n_out: int) -> None:
    """:class:`ConfigurationError` when prompt + new tokens exceed the model's context."""
    limit = loaded.context_length
    if limit is not None and n_in + n_out > limit:
        raise ConfigurationError(
            f"prompt of {n_in} tokens + {n_out} new tokens = {n_in + n_out} exceeds the "
            f"model's context of {limit} tokens (max_position_embeddings)"
        )


def _timed_generate(
    loaded: LoadedModel,
    settings: SweepSettings,
    input_ids: Any,
    n_out: int,
    print_fn: Callable[[str], None],
    variant: dict[str, Any] | None = None,
) -> tuple[Callable[[], Any], Any]:
    """``(run, timer)``: ``run()`` makes one timed ``generate()`` of exactly ``n_out`` new
    tokens (greedy, beam search, or as the variant says); ``timer.runs`` collects the timings."""
    import torch

    from .generation import generate_kwargs
    from .streamer import TimingStreamer

    variant = variant or {}
    gen_kwargs: dict[str, Any] = dict(
        attention_mask=torch.ones_like(input_ids),
        max_new_tokens=n_out,
        min_new_tokens=n_out,
        do_sample=False,
        num_beams=settings.num_beams,
        pad_token_id=_pad_token_id(loaded),
    )
    gen_kwargs.update(generate_kwargs(variant, getattr(loaded, "assistant", None)))
    seed = settings.seed if variant.get("do_sample") else None

    def reseed() -> None:  # sampling: every run draws the same tokens under --seed
        if seed is not None:
            torch.manual_seed(seed)

    if settings.num_beams > 1:
        # Beam search cannot be streamed: BenchmarkWrapper times it through a logits
        # processor feeding the same timing core (and marks the start of each call).
        wrapper = beam_wrapper_class()(
            loaded.model,
            device=loaded.device,
            do_print=settings.verbose,
            verbose=settings.verbose,
            print_fn=print_fn,
        )

        def run_beams() -> Any:
            reseed()
            return wrapper.generate(input_ids, **gen_kwargs)

        return run_beams, wrapper
    streamer = TimingStreamer(
        loaded.device, verbose=settings.verbose, do_print=settings.verbose, print_fn=print_fn
    )
    gen_kwargs["streamer"] = streamer

    def run() -> Any:
        reseed()
        streamer.mark_start()
        return loaded.model.generate(input_ids, **gen_kwargs)

    return run, streamer


def _aggregates(runs: list[Any], warmup: int) -> dict[str, Any]:
    """``entry["aggregates"]``: statistics over the measured runs (seconds, tokens/s, bytes)."""
    from .stats import aggregate, describe

    measured = runs[warmup:]
    aggregates = aggregate(runs, warmup=warmup).to_dict()
    pre = describe(r.pre_prompt_s for r in measured if r.pre_prompt_s is not None)
    aggregates["pre_prompt_s"] = pre.to_dict() if pre else None
    aggregates["memory_kind"] = measured[0].memory_kind
    aggregates["prefill_tokens_per_s"] = _stats_dict(
        describe(r.prefill_tokens_per_s for r in measured if r.prefill_tokens_per_s)
    )
    aggregates["tokens_per_step"] = _stats_dict(
        describe(r.new_tokens / len(r.step_tokens) for r in measured if r.step_tokens)
    )
    aggregates["decode_throughput_tokens_per_s"] = _stats_dict(
        describe(
            r.decode_throughput_tokens_per_s for r in measured if r.decode_throughput_tokens_per_s
        )
    )
    return aggregates


def _record(
    entry: dict[str, Any], loaded: LoadedModel, runs: list[Any], warmup: int, input_ids: Any
) -> None:
    """Fill ``entry`` from the runs (``ConfigurationError`` when a trial timed no token)."""
    warm, measured = runs[:warmup], runs[warmup:]
    bad = [r for r in measured if not r.complete or not r.has_tokens]
    if bad:
        raise ConfigurationError(
            f"{len(bad)} of {len(measured)} trials produced no timed token (beam search or a "
            "generate() that skipped the streamer)"
        )
    if problem := short_runs(runs, entry["config"]["output_tokens"]):
        raise ConfigurationError(problem)
    entry["actual_input_tokens"] = (
        int(input_ids.shape[-1]) if loaded.is_encoder_decoder else measured[-1].prompt_tokens
    )
    entry["actual_output_tokens"] = measured[-1].new_tokens
    entry["encoder_decoder"] = loaded.is_encoder_decoder
    entry["aggregates"] = _aggregates(runs, warmup)
    entry["warmup_runs"] = [r.to_dict(per_token=False) for r in warm]
    entry["trials"] = [r.to_dict() for r in measured]
    if loaded.engine is not None:
        from .engines import get_engine

        entry["engine"] = get_engine(loaded.engine.get("name")).record(loaded, len(measured))
    entry["status"] = "ok"


def run_configuration(
    loaded: LoadedModel,
    entry: dict[str, Any],
    settings: SweepSettings,
    on_run: Callable[[int, bool], None] | None = None,
    print_fn: Callable[[str], None] = print,
    variant: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the warm-ups and trials of one configuration and fill ``entry`` in place.

    ``on_run(i, is_warmup)`` is called after each ``generate()``; ``variant``: the generation
    settings (:mod:`streambench.generation`; ``loaded`` was loaded for them). Raises
    :class:`ConfigurationError` when the configuration cannot run (the entry then says why);
    any exception of ``generate()`` propagates after the entry was marked ``"failed"``.
    """
    for _ in configuration_steps(loaded, entry, settings, on_run, print_fn, variant):
        pass
    return entry


def configuration_steps(
    loaded: LoadedModel,
    entry: dict[str, Any],
    settings: SweepSettings,
    on_run: Callable[[int, bool], None] | None = None,
    print_fn: Callable[[str], None] = print,
    variant: dict[str, Any] | None = None,
) -> Iterator[None]:
    """:func:`run_configuration` one trial at a time: yields after each trial (the warm-ups run
    before the first), fills ``entry`` when exhausted (``--interleave`` advances several of
    these in rotation)."""
    import datetime

    cfg = entry["config"]
    n_in, n_out, batch = cfg["input_tokens"], cfg["output_tokens"], cfg["batch_size"]
    entry["started_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    entry["model_loading_time_s"] = loaded.load_time_s
    entry["config"]["dtype"] = str(loaded.dtype).replace("torch.", "")
    entry["config"]["device"] = str(loaded.device)
    t0 = time.perf_counter()
    try:
        _check_context(loaded, n_in, n_out)
        _check_variant(variant or {}, batch)
        input_ids = build_prompt(loaded, n_in, batch, seed=settings.seed).to(loaded.device)
        run, timer = _timed_generate(loaded, settings, input_ids, n_out, print_fn, variant)
        watch = compile_watch(variant or {})
        log = TrialLog()
        with Observers(settings, loaded) as observers:
            yield from run_trials(
                run, timer, entry, settings, on_run, print_fn, observers.before_trials, watch, log
            )
        _record(entry, loaded, timer.runs, settings.warmup, input_ids)
        entry["config"]["trials"] = len(timer.runs) - settings.warmup
        observers.record(entry, timer.runs[settings.warmup :])
        record_load(entry, settings, log)
        if watch is not None:
            record_compile(entry, watch)
        if settings.profile:
            try:
                entry["profile"] = profile_configuration(loaded, settings, entry, input_ids)
            except Exception as exc:  # noqa: BLE001 - the trials stand; the trace is extra
                entry["profile"] = {"trace": None, "error": describe_exception(exc)}
                print_fn(f"{entry['label']}: --profile failed: {describe_exception(exc)}")
    except KeyboardInterrupt as exc:
        entry["status"] = "interrupted"
        entry["error"] = f"interrupted ({exc or 'SIGINT'}) before this configuration finished"
        raise
    except ConfigurationError as exc:
        entry["status"] = "failed"
        entry["error"] = str(exc)
        raise
    except Exception as exc:
        from .generation import explain_generate_error

        entry["status"] = "failed"
        known = explain_generate_error(exc, variant or {})
        entry["error"] = known or describe_exception(exc).splitlines()[0]
        raise
    finally:
        entry["duration_s"] = time.perf_counter() - t0


def _stats_dict(stats: Any) -> dict[str, Any] | None:
    return stats.to_dict() if stats is not None else None


def _check_variant(variant: dict[str, Any], batch: int) -> None:
    from .engines import engine_of, get_engine

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
