"""``streambench run``'s benchmark spec from the command line and ``--config``: typed settings
(:mod:`streambench.spec.keys`), the model specs, and every output path checked before any work,
built
in one place (:func:`build_run_settings`) into one frozen :class:`SweepSettings`.

The spec is what a run is *asked* to do; loading and measuring come after it.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError
from ..runners.local.trials import trial_settings
from ..workloads.spec import WorkloadSpec
from .keys import DEFAULT_BATCH, DEFAULT_IN_OUT, DEFAULT_TRIALS, DEFAULT_WARMUP, TABLE
from .models import ModelSpec

__all__ = [
    "DEFAULT_BATCH",
    "DEFAULT_IN_OUT",
    "DEFAULT_TRIALS",
    "DEFAULT_WARMUP",
    "IGNORED_CONFIG_KEYS",
    "SweepSettings",
    "build_run_settings",
    "load_yaml",
]

#: all-in-one config keys that make no sense here; reported, then ignored
IGNORED_CONFIG_KEYS = {
    "cpu_embedding",
    "streaming",
    "use_fp16_torch_dtype",
    "task",
    "exclude",
    "group_size",
    "n_gpu",
}
#: all-in-one keys read by :func:`streambench.spec.allinone.lookahead_settings`
LOOKAHEAD_KEYS = ("lookahead", "max_matching_ngram_size")


@dataclass(frozen=True)
class SweepSettings:
    """Everything that applies to every configuration of a sweep: built and checked once
    (:func:`build_run_settings`), then only read (a variant's load makes a changed copy with
    :func:`dataclasses.replace`). Its fields are :data:`streambench.spec.keys.TABLE`'s ``field``
    names, plus what the run derives."""

    models: list[ModelSpec]
    in_out: list[tuple[int, int]]
    batch_sizes: list[int]
    warmup: int = 1
    trials: int = 3
    device: str = "auto"
    dtype: str = "auto"
    num_beams: int = 1
    low_bit: str | None = None
    trust_remote_code: bool = False
    ipex: bool = False
    num_layers: int | None = None
    seed: int = 0
    verbose: bool = False
    tp: str = "none"  # tensor parallelism: none | transformers | deepspeed
    #: sample hardware telemetry (power, energy per phase) where a source exists
    telemetry: bool = True
    #: reset the kernel's peak-RSS mark before the trials (only streambench's own workers: the
    #: reset also resets the process's ru_maxrss)
    exact_peak: bool = False
    #: the user's prompts / drawn lengths / shared prefix (:mod:`streambench.workloads`)
    workload: WorkloadSpec | None = None
    #: ``--profile DIR``: one extra profiled run per configuration, kept out of the statistics
    profile: str | None = None
    #: generation variants (:mod:`streambench.spec.generation`): non-default settings each
    variants: list[dict[str, Any]] = field(default_factory=lambda: [{}])
    #: options given on the command line, which a ``test_api`` does not override
    pinned: list[str] = field(default_factory=list)
    #: of the load in progress (:func:`streambench.engines.variant_load.load_settings`): ipex-llm
    #: ``optimize_model`` and the ``from_pretrained()`` keywords of the variant
    optimize_model: bool = False
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    #: ``--export-dir``: the OpenVINO engines' export cache (None: ~/.cache/streambench/openvino)
    export_dir: str | None = None
    #: ``--threads``: the CPU threads every engine computes with (None: each engine's default)
    threads: int | None = None
    #: ``--isolate`` as asked (None: decided by the sweep, see ``cli._isolation``)
    isolate: str | None = None
    #: ``--trials auto`` (``trials`` is then ``--max-trials``): :class:`~.trial_loop.TrialRule`
    trials_auto: bool = False
    target_ci: float = 0.05
    max_time_s: float | None = None
    #: warn when other processes took this share of all CPUs during a trial
    busy_threshold: float = 0.20
    #: ``--interleave``: the configurations' trials in rotation (:class:`LocalRunner`)
    interleave: bool = False
    #: ``--quality``: perplexity and agreement after each configuration's trials
    #: (:mod:`streambench.runners.local.quality`); ``--quality-reference`` the configuration
    #: compared with (label or id; ``None``: the default rule); ``--lm-eval`` its tasks
    quality: bool = False
    quality_reference: str | None = None
    lm_eval: str | None = None

    def __post_init__(self) -> None:
        # rebuilt from JSON in an isolation worker (``dataclasses.asdict`` made it a dict);
        # frozen: the one assignment, before anyone reads it
        object.__setattr__(self, "workload", WorkloadSpec.from_value(self.workload))

    @property
    def uses_prompt_file(self) -> bool:
        return self.workload is not None and self.workload.uses_file

    def pairs(self) -> list[tuple[Any, Any]]:
        """The input/output pairs; with a prompt file one: ``(None, N)`` (lengths from the
        data, N forced output tokens) or ``(None, None)`` (from-data / natural outputs)."""
        if self.uses_prompt_file:
            out = self.workload.output_len if self.workload is not None else None
            return [(None, out if isinstance(out, int) else None)]
        return list(self.in_out)

    @property
    def configurations_per_model(self) -> int:
        """(variant x input/output pair x batch size) configurations run for each model."""
        return len(self.variants) * len(self.pairs()) * len(self.batch_sizes)

    def to_dict(self) -> dict[str, Any]:
        """results/2 ``settings``: the fields :data:`streambench.spec.keys.TABLE` marks ``written``
        (in their order), the variants, the trial rule and the workload."""
        shown = {
            "models": [m.name for m in self.models],
            "in_out": [f"{i}-{o}" for i, o in self.in_out],
            "batch_sizes": list(self.batch_sizes),
        }
        written = sorted((k for k in TABLE if k.written), key=lambda k: k.written)
        out = {k.field: shown.get(k.field, getattr(self, k.field)) for k in written if k.field}
        if self.variants != [{}]:
            out["variants"] = self.variants
        out.update(trial_settings(self))  # --trials auto, --interleave, --busy-threshold
        if self.workload is not None and self.workload.active:
            out["workload"] = self.workload.to_dict()
        if self.quality:  # --quality: what was asked (each row's ``quality`` says what came)
            out["quality"] = {"reference": self.quality_reference, "lm_eval": self.lm_eval}
        return out


def load_yaml(path: str) -> dict[str, Any]:
    try:
        import yaml
    except ImportError:
        raise UsageError("--config needs PyYAML: pip install pyyaml") from None
    from ..reading import read_bounded

    raw = read_bounded(path, "config", "config")  # a regular file, at most 16 MiB
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise UsageError(f"config {path} is not UTF-8 text: write it as a YAML file") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" (line {where.line + 1})" if where is not None else ""
        raise UsageError(f"config {path} is not valid YAML{at}") from None
    except ValueError as exc:  # a number over int()'s 4,300 digits, a date like 2024-13-45
        reason = str(exc).split(";")[0][:120]
        raise UsageError(f"config {path}: a value YAML cannot read ({reason}); fix it") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UsageError(f"config {path} must be a mapping of keys to values")
    return data


def _config_values(raw: dict[str, Any], path: str, note: Any) -> dict[str, Any]:
    """The config file's settings, typed (:data:`streambench.spec.keys.YAML_KEYS`): ``{dest:
    value}``; all-in-one keys not used here are noted and skipped, unknown keys refused."""
    from .keys import YAML_KEYS

    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key in LOOKAHEAD_KEYS:
            continue
        if key in IGNORED_CONFIG_KEYS:
            (note or (lambda _m: None))(
                f"config key {key!r} is an ipex-llm all-in-one option not used here (ignored)"
            )
            continue
        spec = YAML_KEYS.get(key) if isinstance(key, str) else None
        if spec is None:
            raise UsageError(
                f"unknown key {key!r} in config {path} (known: {', '.join(sorted(YAML_KEYS))})"
            )
        out[spec.dest] = spec.coerce(value, f"config {path}: key {key!r}")
    return out


def _merge_config(args: argparse.Namespace, note: Any = None) -> dict[str, Any]:
    """Typed settings: command-line values win over the config file, which wins over the
    defaults. Every value goes through :data:`streambench.spec.keys.TABLE` (types and bounds); an
    error names the option or the config file and key."""
    merged: dict[str, Any] = {"config_raw": {}, "cli_given": set()}
    if args.config:
        merged["config_raw"] = raw = load_yaml(args.config)
        merged.update(_config_values(raw, args.config, note))
    for k in TABLE:
        value = getattr(args, k.arg_dest, None) if k.flags and k.parse is not None else None
        if value is not None:
            merged[k.dest] = k.coerce(value, k.option)
            if k.dest != "models":  # MODEL is no setting a test_api could override
                merged["cli_given"].add(k.dest)
    merged["verbose"] = bool(getattr(args, "verbose", False))
    return merged


def build_run_settings(
    args: argparse.Namespace, note: Any = None
) -> tuple[SweepSettings, list[str], str | None]:
    """The one place where ``run``'s settings are built: everything that can be checked
    without loading a model is checked here, and the result is frozen. Returns the settings,
    the ``-o`` files and the ``--plot`` file."""
    from ..engines.transformers.load import DTYPES
    from ..runners.local.trials import settings_from
    from ..workloads.options import workload_from
    from .config import parse_in_out_text, parse_int_axis
    from .models import resolve_model_specs

    m = _merge_config(args, note)
    workload = workload_from(m, in_out_given="in_out" in m)
    random_weights = m.get("random_weights", False)
    specs = resolve_model_specs(m.get("models", [None]), random_weights, m.get("local_model_hub"))
    dtype = _dtype_axis(m, DTYPES)
    low_bit = _low_bit_axis(m)
    num_layers = m.get("num_layers")
    if num_layers is not None and any(s.kind == "pretrained" for s in specs):
        raise UsageError("--num-layers works with the embedded model and --random-weights only")
    outputs, plot = m.get("output", []), m.get("plot")
    variants = _variants(m, args.config)
    inputs = run_inputs(specs, m, args.config, workload, variants)
    _check_targets(outputs, plot, inputs)
    _check_low_bit(low_bit, variants)
    _check_model_files(specs, variants, workload)
    fields = {
        "models": specs,
        "in_out": m.get("in_out") or parse_in_out_text(DEFAULT_IN_OUT),
        "batch_sizes": m.get("batch_size") or parse_int_axis(DEFAULT_BATCH, "--batch-size", 1, 1),
        "warmup": m.get("warmup", DEFAULT_WARMUP),
        "trials": m.get("trials", DEFAULT_TRIALS),
        "device": _test_api_device(m, variants),
        "dtype": dtype,
        "num_beams": m.get("num_beams", 1),
        "low_bit": low_bit,
        "trust_remote_code": m.get("trust_remote_code", False),
        "ipex": m.get("ipex", False),
        "num_layers": num_layers,
        "seed": m.get("seed", 0),
        "verbose": m["verbose"],
        "tp": _tp_mode(m.get("tp")),
        "workload": workload,
        "profile": _profile_dir(m.get("profile"), m.get("num_beams", 1), inputs),
        "variants": variants,
        "pinned": sorted(m["cli_given"] & {"dtype", "low_bit", "device", "tp"}),
        "telemetry": m.get("telemetry", True),
        "export_dir": m.get("export_dir"),
        "threads": m.get("threads"),
        "isolate": m.get("isolate"),  # None: decided by the sweep (see cli._isolation)
        **_quality_fields(m),
    }
    fields.update(settings_from(m, workload))  # --trials auto, --interleave, --busy-threshold
    settings = SweepSettings(**fields)
    return settings, outputs, plot


def _dtype_axis(m: dict[str, Any], known: tuple[str, ...]) -> str:
    """``--dtype``: one value is the sweep's dtype (returned); several are a sweep axis (each
    variant loads with its own, :func:`streambench.engines.variant_load.load_settings`; the
    sweep's is then ``auto``)."""
    dtypes = m.pop("dtype", None) or ["auto"]
    for dtype in dtypes:
        if dtype not in known:
            raise UsageError(f"unknown --dtype {dtype!r}: use one of {', '.join(known)}")
    if len(dtypes) > 1:
        m["dtype"] = list(dict.fromkeys(dtypes))  # an axis of the variants (_variants)
        return "auto"
    return str(dtypes[0])


def _low_bit_axis(m: dict[str, Any]) -> str | None:
    """``--low-bit``: one kind is the sweep's (returned; ``None``: none); several (``none`` among
    them for the unquantized model) are a sweep axis, each variant loading with its own
    (:func:`streambench.engines.variant_load.load_settings`; the sweep's is then ``None``)."""
    kinds = list(dict.fromkeys(m.pop("low_bit", None) or [None]))
    if len(kinds) > 1:
        m["low_bit"] = kinds  # an axis of the variants (_variants)
        return None
    return kinds[0]


def _quality_fields(m: dict[str, Any]) -> dict[str, Any]:
    """``--quality``, ``--quality-reference``, ``--lm-eval``: the last two need the first."""
    quality = bool(m.get("quality", False))
    for dest, option in (("quality_reference", "--quality-reference"), ("lm_eval", "--lm-eval")):
        if m.get(dest) is not None and not quality:
            raise UsageError(f"{option} needs --quality: add it")
    if m.get("lm_eval") is not None:
        from ..runners.local.lm_eval import parse_tasks

        parse_tasks(m["lm_eval"])  # the task names and directory checked before any load
    return {
        "quality": quality,
        "quality_reference": m.get("quality_reference"),
        "lm_eval": m.get("lm_eval"),
    }


def _variants(m: dict[str, Any], config: str | None) -> list[dict[str, Any]]:
    """The generation variants: the product of the axes, or the config's ``variants:`` list;
    all-in-one's ``lookahead`` as prompt lookup; checked against the installed transformers."""
    from .allinone import lookahead_settings
    from .generation import SETTINGS, check_against_transformers, expand_variants, parse_variants

    where = f"config {config}"
    config_axes = lookahead_settings(m["config_raw"], where)
    cli_axes = {}
    for name in SETTINGS:
        if name in m:
            (cli_axes if name in m["cli_given"] else config_axes)[name] = m[name]
    listed = parse_variants(m["variants"], f"{where}: key 'variants'") if "variants" in m else None
    variants = expand_variants(config_axes, listed, cli_axes, m.get("trust_remote_code", False))
    if any(v.get("compile") for v in variants) and m.get("warmup", DEFAULT_WARMUP) < 1:
        raise UsageError("--compile compiles during the warm-up runs: use --warmup 1 or more")
    check_against_transformers(variants)
    return variants


def _check_low_bit(low_bit: str | None, variants: list[dict[str, Any]]) -> None:
    """``--low-bit`` checked for the engine of every variant (its own kind, when ``--low-bit``
    is an axis or the config's ``variants:`` give one), before anything loads."""
    from ..engines import engine_of, get_engine

    for variant in variants:
        kind = variant.get("low_bit", low_bit)
        if kind is None:
            continue
        try:
            get_engine(engine_of(variant)).check_low_bit(kind)
        except UsageError as exc:
            if "low_bit" not in variant and len(variants) == 1:
                raise
            raise UsageError(
                f"--engine {engine_of(variant)} with --low-bit {kind}: {exc}; for kinds that "
                "differ by engine, list the combinations in the config's `variants:` list, e.g. "
                "[{engine: transformers}, {engine: openvino, low_bit: int8}]"
            ) from None


def _check_model_files(specs: list[Any], variants: list[dict[str, Any]], workload: Any) -> None:
    """A model file only some engines read (a ``.gguf``: their ``model_kinds``) runs on those
    engines only, and has no tokenizer for ``--prompts``."""
    from ..engines import engine_names, engines_of, get_engine

    def reads(engine: str, kind: str) -> bool:
        return kind in getattr(get_engine(engine), "model_kinds", ())

    for spec in specs:
        if spec.kind != "gguf":
            continue
        others = [name for name in engines_of(variants) if not reads(name, spec.kind)]
        if others:
            readers = [name for name in engine_names() if reads(name, spec.kind)]
            raise UsageError(
                f"model {spec.source} is a GGUF file, which --engine {others[0]} does not read: "
                f"use --engine {' or '.join(readers)}, or give the transformers directory"
            )
        if workload is not None and workload.uses_file:
            raise UsageError(
                f"--prompts needs a tokenizer, and {spec.name}.gguf has none: give the "
                "transformers directory instead"
            )


def _test_api_device(m: dict[str, Any], variants: list[dict[str, Any]]) -> str:
    """The device: the option or config key, else the one every ``test_api`` implies."""
    from ..ranks import launched_world_size
    from .allinone import implied

    apis = sorted({v["test_api"] for v in variants if "test_api" in v})
    launched = launched_world_size() > 1
    devices = {}
    for api in apis:
        found = implied(api, None, launched).get("device")
        if found is not None:
            devices[api] = found
    if "device" in m or not devices:
        return m.get("device", "auto")
    if len(set(devices.values())) > 1:
        listed = ", ".join(f"{api} ({dev})" for api, dev in devices.items())
        raise UsageError(
            f"config key 'test_api': {listed} need different devices; run them separately or "
            "pass --device"
        )
    return next(iter(devices.values()))


def run_inputs(
    specs: list[Any],
    m: dict[str, Any],
    config: str | None,
    workload: Any,
    variants: list[dict[str, Any]],
) -> Any:
    """The one registry of what ``run`` reads (:class:`streambench.results.outputs.RunInputs`): the
    models (directories, configs, the hub cache, ``local_model_hub``), the config file, the
    prompts file, local assistant models and the engines' export caches
    (:func:`streambench.engines.export_caches`). No output may be one of
    them or inside one; ``--resume`` reads only the ``-o`` file it rewrites."""
    from ..engines import export_caches
    from ..results.outputs import RunInputs
    from .models import protected_directories

    inputs = RunInputs(protected_directories(specs, m.get("local_model_hub")))
    inputs.add("config file", config)
    if workload is not None:
        inputs.add("prompts file", workload.prompts)
    for variant in variants:
        assistant = variant.get("assistant_model")
        if isinstance(assistant, str):
            inputs.add("assistant model", assistant)
    for cache in export_caches(variants, m.get("export_dir")):
        inputs.add("export cache", cache)
    return inputs


def _check_targets(outputs: list[str], plot: str | None, protected: Any) -> None:
    """Every output path checked before any work: format, writable, not an input of the run
    (``protected``: :func:`run_inputs`) nor inside one; ``--plot`` needs matplotlib
    (:func:`streambench.runners.run_io.check_result_targets`, shared with ``endpoint``)."""
    from ..runners.run_io import check_result_targets

    check_result_targets(outputs, plot, protected, plot_library=True)


def _profile_dir(path: str | None, num_beams: int, inputs: Any) -> Any:
    """``--profile DIR``: created now, a writable directory outside what the run reads
    (``inputs``: :func:`run_inputs`); torch's profiler needs streamed tokens (not beam search).
    Returned as given (traces are named relative to it)."""
    if path is None:
        return None
    if num_beams > 1:
        raise UsageError("--profile marks streamed tokens: it works with --num-beams 1 only")
    inputs.check(path, "--profile")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            f"--profile {path}: cannot create the directory ({exc.strerror})"
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"--profile {path}: the directory is not writable")
    return path


def _tp_mode(value: Any) -> str:
    from ..engines.transformers.tensor_parallel import resolve_tp_mode

    try:
        return resolve_tp_mode(None if value is None else str(value))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
