"""The one configuration runner of ``streambench run``: the warm-ups and trials of one
configuration (:func:`configuration_steps`, one trial at a time for ``--interleave``;
:func:`run_configuration` whole), for synthetic prompts and workloads alike — the only difference
is where the prompt batches come from (:mod:`streambench.runners.local.prompt_sources`). Every
``generate()``
goes through :class:`~streambench.runners.local.generate_call.TimedGenerate`; around the trials run
the
observers (telemetry, memory), the ``--trials auto`` rule, the compile watch, and after them the
``--profile`` run.

The runner fills a typed :class:`~streambench.results.schema.ConfigurationResult` (from
:func:`streambench.runners.local.plan.new_result`) in place: what a results/2 file holds, nothing to
convert afterwards.

Timing reference: every run is marked with :meth:`TimingStreamer.mark_start` right before
``generate()``, so ``first_token_s`` counts from the ``generate()`` call (input preparation and,
for encoder-decoder models, the encoder included; that part alone is ``pre_prompt_s``).

torch and transformers are imported inside the functions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from ...errors import describe_exception
from ...results.schema import Aggregates, ConfigurationResult, RunRecord
from ...spec.generation import compile_watch, short_runs
from .generate_call import TimedGenerate
from .observers import Observers
from .plan import ConfigurationError, SweepSettings, _check_variant, _stats_dict
from .profiling import profile_configuration
from .prompt_sources import PromptSource, SyntheticPrompts
from .trials import TrialLog, record_load, run_trials

__all__ = ["configuration_steps", "prompt_source", "put", "run_configuration"]


def put(result: ConfigurationResult, key: str, value: Any) -> None:
    """``result.extra[key] = value`` as a results file would give it back (results/1 statistics
    objects in the results/2 form): the document written is the one read."""
    from ...results.percentiles import statistics_tree

    result.extra[key] = statistics_tree(value)


def _aggregates(runs: list[Any], warmup: int) -> dict[str, Any]:
    """The ``aggregates`` object: statistics over the measured runs (seconds, tokens/s,
    bytes)."""
    from ...stats import aggregate, describe

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
    result: ConfigurationResult,
    loaded: Any,
    source: PromptSource,
    runs: list[Any],
    forced: list[int],
    warmup: int,
) -> None:
    """Fill ``result`` from the runs (``ConfigurationError`` when a trial timed no token, or a
    run stopped before its ``forced`` new tokens)."""
    from ...results.trial_intervals import fill_intervals

    warm, measured = runs[:warmup], runs[warmup:]
    bad = [r for r in measured if not r.complete or not r.has_tokens]
    if bad:
        raise ConfigurationError(
            f"{len(bad)} of {len(measured)} trials produced no timed token (beam search or a "
            "generate() that skipped the streamer)"
        )
    # a synthetic prompt forces the same count in every run: the message names it
    same = isinstance(source, SyntheticPrompts) and bool(forced)
    if problem := short_runs(runs, forced[0] if same else forced):
        raise ConfigurationError(problem)
    result.actual_input_tokens, result.actual_output_tokens = source.actual_tokens(measured)
    result.encoder_decoder = loaded.is_encoder_decoder
    aggregates = _aggregates(runs, warmup)
    aggregates.update(source.aggregates_extra(measured))
    result.aggregates = Aggregates.from_dict(aggregates)
    result.warmup_runs = [RunRecord.from_dict(r.to_dict(per_token=False)) for r in warm]
    result.trials = [RunRecord.from_dict(r.to_dict()) for r in measured]
    fill_intervals(result.aggregates, result.trials)  # each median's 95 % interval
    if loaded.engine is not None:
        from ...engines import get_engine

        put(result, "engine", get_engine(loaded.engine.get("name")).record(loaded, len(measured)))
    result.status = "ok"


def _record_execution(
    result: ConfigurationResult, loaded: Any, variant: dict[str, Any], asked: int | None
) -> None:
    """``execution`` (:class:`~streambench.engines.threads.Execution`: threads, weight format,
    compute precision, the same keys for every engine) and its CSV columns."""
    from ...engines import engine_of
    from ...engines.threads import execution_of

    execution = execution_of(loaded, engine_of(variant), asked)
    result.extra["execution"] = execution.to_dict()
    result.csv_extra.update(execution.csv_cells())


def _record_compile(result: ConfigurationResult, watch: Any) -> None:
    """``compile`` (:class:`~streambench.spec.generation.CompileWatch`), and each measured run that
    recompiled marked ``recompiled`` (not a clean number: a warning says so)."""
    put(result, "compile", watch.to_dict())
    for i in watch.recompiled_trials:
        if 0 <= i < len(result.trials):
            result.trials[i].other["recompiled"] = True
    if watch.recompiled_trials:
        trials = ", ".join(str(i + 1) for i in watch.recompiled_trials)
        result.extra.setdefault("warnings", []).append(
            f"trial(s) {trials} recompiled (torch._dynamo): not clean numbers; add warm-ups"
        )


def prompt_source(loaded: Any, settings: Any, n_in: Any, n_out: Any, batch: int) -> PromptSource:
    """The configuration's prompt batches: the workload's
    (:class:`~streambench.runners.local.workload_prompts.WorkloadPrompts`) when the sweep has one,
    else
    :class:`~streambench.runners.local.prompt_sources.SyntheticPrompts`. Raises
    :class:`~streambench.runners.local.plan.ConfigurationError` when the prompts cannot run (too
    long
    for the context, a prompt file that changed)."""
    w = settings.workload
    if w is not None and w.active:
        from .workload_prompts import WorkloadPrompts

        return WorkloadPrompts(loaded, settings, n_in, n_out, batch)
    return SyntheticPrompts(loaded, settings, n_in, n_out, batch)


def run_configuration(
    loaded: Any,
    result: ConfigurationResult,
    settings: SweepSettings,
    on_run: Callable[[int, bool], None] | None = None,
    print_fn: Callable[[str], None] = print,
    variant: dict[str, Any] | None = None,
) -> ConfigurationResult:
    """Run the warm-ups and trials of one configuration and fill ``result`` in place: synthetic
    prompts and workloads alike (:func:`prompt_source`).

    ``on_run(i, is_warmup)`` is called after each ``generate()``; ``variant``: the generation
    settings (:mod:`streambench.spec.generation`; ``loaded`` was loaded for them). Raises
    :class:`~streambench.runners.local.plan.ConfigurationError` when the configuration cannot run
    (the
    result then says why); any exception of ``generate()`` propagates after the result was
    marked ``"failed"``.
    """
    for _ in configuration_steps(loaded, result, settings, on_run, print_fn, variant):
        pass
    return result


class _Passes:
    """Runs a warm-up or a trial (:func:`~streambench.runners.local.trials.run_trials`'
    ``run_pass``):
    each of its batches through the one timed ``generate()``, the compile watch around each
    call, ``on_run`` after each; ``forced`` keeps every run's forced new tokens."""

    def __init__(
        self,
        source: PromptSource,
        call: TimedGenerate,
        settings: SweepSettings,
        on_run: Callable[[int, bool], None] | None,
        watch: Any,
    ) -> None:
        self.source, self.call, self.settings = source, call, settings
        self.on_run, self.watch = on_run, watch
        self.forced: list[int] = []

    def __call__(self, warm: bool, index: int) -> list[Any]:
        batches = [self.source.warmup(index)] if warm else self.source.trial(index)
        trial = index - self.settings.warmup if warm else index
        runs = []
        for batch in batches:
            done = len(self.forced)  # runs so far, warm-ups included
            if self.watch is not None:
                self.watch.before()
            output = self.call(batch)
            run = self.call.timer.runs[-1]
            self.source.after_run(run, batch, output, warm, trial)
            self.forced.append(batch.forced)
            runs.append(run)
            if self.watch is not None:  # index: among the measured runs (< 0: a warm-up)
                self.watch.after(warm, done - self.settings.warmup)
            if self.on_run is not None:
                self.on_run(done, warm)
        return runs


def configuration_steps(
    loaded: Any,
    result: ConfigurationResult,
    settings: SweepSettings,
    on_run: Callable[[int, bool], None] | None = None,
    print_fn: Callable[[str], None] = print,
    variant: dict[str, Any] | None = None,
) -> Iterator[None]:
    """:func:`run_configuration` one trial at a time: yields after each trial (the warm-ups run
    before the first), fills ``result`` when exhausted (``--interleave`` advances several of
    these in rotation)."""
    import datetime

    cfg = result.settings
    now = datetime.datetime.now(datetime.timezone.utc)
    result.started_at = now.isoformat(timespec="seconds")
    result.model_loading_time_s = loaded.load_time_s
    result.config.dtype = str(loaded.dtype).replace("torch.", "")
    result.config.device = str(loaded.device)
    variant = variant or {}
    t0 = time.perf_counter()
    try:
        _check_variant(variant, int(cfg.batch_size or 1))
        source = prompt_source(
            loaded, settings, cfg.input_tokens, cfg.output_tokens, int(cfg.batch_size or 1)
        )
        call = TimedGenerate(loaded, settings, variant, print_fn)
        watch = compile_watch(variant)
        passes = _Passes(source, call, settings, on_run, watch)
        log = TrialLog()
        with Observers(settings, loaded) as observers:
            yield from run_trials(passes, result, settings, print_fn, observers.before_trials, log)
        runs = call.runs
        _record(result, loaded, source, runs, passes.forced, settings.warmup)
        _record_execution(result, loaded, variant, getattr(settings, "threads", None))
        result.config.trials = len(log.loads)
        observers.record(result, runs[settings.warmup :])
        record_load(result, settings, log)
        if watch is not None:
            _record_compile(result, watch)
        if settings.profile:
            _profile(result, loaded, settings, variant, source, print_fn)
        if getattr(settings, "quality", False):  # after the trials: never inside a timed one
            from .quality import measure_quality

            measure_quality(loaded, settings, source, result, variant, print_fn)
    except KeyboardInterrupt as exc:
        result.status = "interrupted"
        result.error = f"interrupted ({exc or 'SIGINT'}) before this configuration finished"
        raise
    except ConfigurationError as exc:
        result.status, result.error = "failed", str(exc)
        raise
    except Exception as exc:
        from ...spec.generation import explain_generate_error

        result.status = "failed"
        known = explain_generate_error(exc, variant)
        result.error = known or describe_exception(exc).splitlines()[0]
        raise
    finally:
        result.duration_s = time.perf_counter() - t0


def _profile(
    result: ConfigurationResult,
    loaded: Any,
    settings: SweepSettings,
    variant: dict[str, Any],
    source: PromptSource,
    print_fn: Callable[[str], None],
) -> None:
    """``profile``: one extra profiled run after the trials, or why it failed (the trials
    stand either way)."""
    try:
        profile = profile_configuration(
            loaded, settings, str(result.id), source.profile_batch(), variant
        )
    except Exception as exc:  # noqa: BLE001 - the trials stand; the trace is extra
        profile = {"trace": None, "error": describe_exception(exc)}
        print_fn(f"{result.label}: --profile failed: {describe_exception(exc)}")
    put(result, "profile", profile)
