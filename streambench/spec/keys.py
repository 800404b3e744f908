"""The one table of ``streambench run``'s settings (and of the workload options it shares with
``streambench endpoint``): every setting is one :class:`Key` in :data:`TABLE`, and everything
else is derived from it:

- the command line (:func:`add_arguments`: flags, metavar, help, action, argument group, in
  table order, which is the order of ``--help``);
- the ``--config`` YAML keys and how each value is typed and bounded (:data:`YAML_KEYS`, also
  :data:`streambench.spec.config.KEYS`; the coercions are :mod:`streambench.spec.config`'s);
- the generation settings, each a variant axis (:data:`streambench.spec.generation.SETTINGS`);
- the workload options (:mod:`streambench.workloads.options`);
- what :meth:`streambench.spec.run.SweepSettings.to_dict` writes into results/2 ``settings``.

A new setting is one entry here (plus, for a run setting, its field on ``SweepSettings`` and
where it is used).

>>> YAML_KEYS["warm_up"].dest, YAML_KEYS["warm_up"].option
('warmup', '--warmup')
>>> YAML_KEYS["seed"].coerce("7", "--seed")
7
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..runners.local.interference import DEFAULT_BUSY_THRESHOLD
from ..runners.local.trials import DEFAULT_MAX_TRIALS, DEFAULT_TARGET_CI
from ..workloads.spec import (
    DEFAULT_MAX_OUTPUT_LEN,
    MAX_PROMPTS,
    MAX_TOKENS,
    parse_output_len,
    parse_spread,
)
from . import config as c

__all__ = [
    "DEFAULT_BATCH",
    "DEFAULT_IN_OUT",
    "DEFAULT_TRIALS",
    "DEFAULT_WARMUP",
    "GROUPS",
    "TABLE",
    "YAML_KEYS",
    "GenAxis",
    "Key",
    "add_arguments",
    "generation_keys",
    "keys_of",
]

DEFAULT_IN_OUT = "32-32"
DEFAULT_BATCH = "1"
DEFAULT_WARMUP = 1
DEFAULT_TRIALS = 6

Parse = Callable[[Any, str], Any]

#: argument group -> its title in ``--help`` (a key without a group is in the command's options)
GROUPS = {
    "generation": "generation settings (a comma-separated value is a sweep axis, like "
    "--batch-size 1,4)",
    "trials": "trials: how many, in which order",
    "workload": "workload (your own prompts and traffic)",
    "quality": "quality beside speed (outside the timed trials)",
    "cluster": "beyond one machine (each configuration a Ray task or a Slurm job; README, "
    "'Beyond one machine')",
}


@dataclass(frozen=True)
class GenAxis:
    """What makes a key a generation setting (:mod:`streambench.spec.generation`), one axis of the
    variants: its value when not given (left out of a variant), whether it changes the loaded
    model (``load``) or only the ``generate()`` call, and its short name in labels."""

    default: Any = None
    load: bool = False
    short: str = ""


@dataclass(frozen=True)
class Key:
    """One setting.

    ``dest``: its name in the merged settings and argparse's destination. ``flags``: its
    command-line spellings (``()``: a config key only; a positional is its name). ``parse``:
    raw value and where it came from -> typed value (``None``: not a typed setting, e.g.
    ``--config`` itself). ``yaml``: its ``--config`` keys (``None``: ``dest``; ``()``: none; the
    ipex-llm all-in-one names included). ``help``/``metavar``/``action``/``choices``/``nargs``/
    ``default``: argparse's (``default`` ``None`` means "not given", so that config values and
    the checks can tell). ``group``: its argument group (:data:`GROUPS`). ``commands``: the
    subcommands that have it. ``axis``: a sweep axis (several values, one configuration each).
    ``gen``: a generation setting (an axis of the variants). ``identity``: part of a
    configuration's identity (its id, and what ``compare`` and ``--resume`` match on).
    ``field``: its attribute on :class:`~streambench.spec.run.SweepSettings` (``None``: none
    of its own); ``written``: its place among the settings that
    :meth:`~streambench.spec.run.SweepSettings.to_dict` writes into results/2 ``settings`` (1
    first, the order files have always had; 0: not written).
    """

    dest: str
    flags: tuple[str, ...] = ()
    parse: Parse | None = None
    help: str | Callable[[], str] | None = None
    metavar: str | None = None
    yaml: tuple[str, ...] | None = None
    action: Any = None
    choices: tuple[str, ...] | None = None
    nargs: str | None = None
    default: Any = None
    group: str | None = None
    commands: tuple[str, ...] = ("run",)
    axis: bool = False
    gen: GenAxis | None = None
    identity: bool = False
    field: str | None = None
    written: int = 0

    @property
    def yaml_keys(self) -> tuple[str, ...]:
        """The ``--config`` keys of this setting."""
        if self.parse is None:
            return ()
        return (self.dest,) if self.yaml is None else self.yaml

    @property
    def arg_dest(self) -> str:
        """argparse's destination: ``dest``, but a positional's own name (``model``)."""
        return self.flags[0] if self.flags and not self.flags[0].startswith("-") else self.dest

    @property
    def option(self) -> str:
        """How errors name it: ``--seed``, ``MODEL``, or ``config key 'test_api'``."""
        if not self.flags:
            return f"config key {self.dest!r}"
        long = [f for f in self.flags if f.startswith("--")]
        return long[0] if long else self.flags[0].upper()

    def coerce(self, value: Any, where: str) -> Any:
        """``value`` typed and checked; a :class:`~streambench.errors.UsageError` naming
        ``where`` otherwise."""
        assert self.parse is not None, f"{self.dest} is not a typed setting"
        return self.parse(value, where)


def _gen(
    dest: str,
    parse: Parse,
    commas: bool,
    short: str,
    *,
    load: bool,
    default: Any = None,
    **arg: Any,
) -> Key:
    """A generation setting: a list of values (``commas``: comma-separated on the command line
    too), one variant axis."""
    return Key(
        dest,
        (f"--{dest.replace('_', '-')}",) if "help" in arg else (),
        c.values(parse, commas),
        group="generation",
        axis=True,
        gen=GenAxis(default, load, short),
        identity=True,
        **arg,
    )


def _wl(dest: str, parse: Parse, help: str, **arg: Any) -> Key:
    """A workload option (:mod:`streambench.workloads`), shared with ``endpoint``."""
    arg.setdefault("commands", ("run", "endpoint"))
    return Key(
        dest,
        (f"--{dest.replace('_', '-')}",),
        parse,
        help,
        group="workload",
        identity=True,
        **arg,
    )


_TRUE = {"action": "store_true", "default": None}  # a flag; None: not given (config may set it)
_REAL_T, _REAL_P = c.real_in("temperature"), c.real_in("top_p")
_ISOLATE = ("config", "fresh", "model", "none")
_path, _flag, _wint = c.workload_path, c.workload_flag, c.workload_whole  # endpoint's messages


def _engine_help() -> str:
    """``--engine``'s help: the registry's engines and what they are."""
    from ..engines import engine_help

    return engine_help()


#: every setting, in the order of ``streambench run --help``
TABLE: tuple[Key, ...] = (
    Key("models", ("model",), c.text_or_list, "local directory or hub id", "MODEL",
        yaml=("repo_id", "model"), nargs="?", axis=True, identity=True, field="models",
        written=1),
    Key("random_weights", ("--random-weights",), c.boolean, "build MODEL from its config alone "
        "(local config.json / directory, or a bundled preset) with random weights", **_TRUE),
    Key("in_out", ("--in-out",), c.parse_in_out_text, "prompt tokens-new tokens pairs, e.g. "
        f"32-32,1024-128 (default {DEFAULT_IN_OUT})", "IN-OUT[,...]", yaml=("in_out_pairs",
        "in_out"), axis=True, identity=True, field="in_out", written=2),
    Key("batch_size", ("--batch-size",), c.axis("batch_size"), "batch sizes, e.g. 1,4 (default "
        f"{DEFAULT_BATCH})", "N[,...]", axis=True, identity=True, field="batch_sizes",
        written=3),
    Key("warmup", ("--warmup",), c.bounded("warmup"), "warm-up runs per configuration (default "
        f"{DEFAULT_WARMUP})", "N", yaml=("warm_up", "warmup"), field="warmup", written=4),
    Key("trials", ("--trials",), c.trials, f"measured runs per configuration (default "
        f"{DEFAULT_TRIALS}); auto: until the 95%% intervals are narrow (--target-ci), at most "
        "--max-trials / --max-time", "N|auto", yaml=("num_trials", "trials"), field="trials",
        written=5),
    Key("device", ("--device",), c.text, "auto|cpu|cuda|cuda:N|xpu|mps (default auto)", "DEV",
        field="device", written=6),
    Key("dtype", ("--dtype",), c.values(c.lower_text, True), "auto|float32|float16|bfloat16 "
        "(default auto: float32 on CPU, bfloat16/float16 on accelerators); several, e.g. "
        "float32,bfloat16: a sweep axis, one load each", "DTYPE[,...]", axis=True, identity=True,
        gen=GenAxis(None, True, "dtype"), field="dtype", written=7),
    Key("num_beams", ("--num-beams",), c.bounded("num_beams"), "beam search width (default 1)",
        "N", identity=True, field="num_beams", written=8),
    Key("low_bit", ("--low-bit",), c.values(c.optional_text, True), "low-bit weights: "
        "ipex-llm kinds (sym_int4, sym_int8, nf4 ...), torchao (int8_weight_only, int8_dynamic, "
        "int4_weight_only), bitsandbytes (bnb_nf4, bnb_fp4, bnb_int8), or the engine's own "
        "formats (OpenVINO int8, int4_sym ...); several, e.g. none,int8_weight_only: a sweep "
        "axis, one load each (none: the unquantized model)", "KIND[,...]", axis=True,
        identity=True, gen=GenAxis(None, True, "low-bit"), field="low_bit", written=9),
    Key("trust_remote_code", ("--trust-remote-code",), c.boolean, "allow the model's own code "
        "from its repository (off by default)", field="trust_remote_code", written=10,
        **_TRUE),
    Key("ipex", ("--ipex",), c.boolean, "apply intel-extension-for-pytorch's ipex.llm.optimize "
        "before timing", field="ipex", written=11, **_TRUE),
    Key("num_layers", ("--num-layers",), c.bounded("num_layers"), "override num_hidden_layers "
        "(embedded model and --random-weights only)", "N", field="num_layers", written=12),
    Key("tp", ("--tp",), c.text, "tensor parallelism under torchrun / deepspeed: transformers "
        "(tp_plan='auto'), deepspeed (AutoTP), none (a full replica per rank); default auto: "
        "transformers when launched with several ranks", choices=("auto", "none",
        "transformers", "deepspeed"), field="tp", written=14),
    _gen("attn_implementation", c.text, True, "attn", load=True, metavar="NAME[,...]",
         help="eager, sdpa, flex_attention ..."),
    _gen("cache_implementation", c.text, True, "cache", load=False, metavar="NAME[,...]",
         help="static, dynamic, offloaded ..."),
    _gen("compile", c.boolean, False, "compile", load=True, default=False, action="store_true",
         help="torch.compile the model's forward (with a static cache unless "
         "--cache-implementation says otherwise); compiled during the warm-ups"),
    _gen("compile_mode", c.compile_mode, True, "mode", load=True, metavar="MODE[,...]",
         help="default, reduce-overhead, max-autotune ..."),
    _gen("do_sample", c.boolean, False, "sample", load=False, default=False,
         action="store_true", help="sample (seeded with --seed)"),
    _gen("temperature", _REAL_T, True, "t", load=False, metavar="T[,...]",
         help="sampling temperature (needs --do-sample)"),
    _gen("top_p", _REAL_P, True, "top_p", load=False, metavar="P[,...]",
         help="nucleus sampling (needs --do-sample)"),
    _gen("top_k", c.bounded("top_k"), True, "top_k", load=False, metavar="K[,...]",
         help="top-k sampling (needs --do-sample)"),
    _gen("assistant_model", c.text, True, "assistant", load=True, metavar="PATH[,...]",
         help="assisted generation with this draft model"),
    _gen("prompt_lookup", c.bounded("prompt_lookup"), True, "lookup", load=False,
         metavar="N[,...]", help="prompt-lookup decoding: N candidate tokens"),
    _gen("generate_kwargs", c.json_object, False, "generate", load=False, metavar="JSON",
         help="more generate() keywords, a JSON object"),
    _gen("model_kwargs", c.json_object, False, "model", load=True, metavar="JSON",
         help="more from_pretrained() keywords, a JSON object"),
    _gen("test_api", c.text, True, "test_api", load=True),  # all-in-one's; a config key only
    _gen("engine", c._engine, True, "engine", load=True, default="transformers",
         metavar="NAME[,...]", help=_engine_help),
    Key("export_dir", ("--export-dir",), c.text, "where the OpenVINO engines cache models "
        "exported to OpenVINO IR (default ~/.cache/streambench/openvino), --engine llama.cpp "
        "its GGUF conversions (default ~/.cache/streambench/llama.cpp) and --engine "
        "onnxruntime-genai its ONNX builds (default ~/.cache/streambench/onnxruntime-genai); "
        "delete it to clear the cache", "DIR", group="generation", field="export_dir"),
    Key("threads", ("--threads",), c.threads, "CPU threads of every engine: torch's intra-op "
        "threads, OpenVINO's INFERENCE_NUM_THREADS, llama.cpp's n_threads, ORT GenAI's "
        "intra_op_num_threads, vLLM's OpenMP threads (default: each engine's own); recorded per "
        "configuration", "N", group="generation", field="threads", written=16),
    Key("target_ci", ("--target-ci",), c.percent(0, 1000), "--trials auto: stop once the 95%% "
        "intervals of the median first token and ms/token are within ±PCT of the median "
        f"(default {DEFAULT_TARGET_CI * 100:g}%%)", "PCT", group="trials", field="target_ci"),
    Key("max_trials", ("--max-trials",), c.bounded("trials"), "--trials auto: at most N trials "
        f"per configuration (default {DEFAULT_MAX_TRIALS})", "N", group="trials"),
    Key("max_time", ("--max-time",), c.seconds, "--trials auto: stop a configuration once its "
        "trials took S seconds", "S", group="trials", field="max_time_s"),
    Key("interleave", ("--interleave",), c.boolean, "run the trials of all configurations in "
        "rotation (A1 B1 A2 B2 ...) in this process, every model loaded at once: drift and "
        "neighbours hit all alike (the way to A/B settings)", group="trials",
        field="interleave", **_TRUE),
    Key("busy_threshold", ("--busy-threshold",), c.percent(0, 100), "warn when other processes "
        "took PCT of the CPUs or more during a trial (default "
        f"{DEFAULT_BUSY_THRESHOLD * 100:g}%%)", "PCT", group="trials", field="busy_threshold"),
    Key("config", ("--config",), None, "sweep settings (all-in-one keys)", "FILE.yaml"),
    Key("output", ("-o", "--output"), c.text_or_list, "write results; format by extension: .csv "
        ".json .jsonl .md (repeatable)", "FILE", action="append"),
    Key("plot", ("--plot",), c.text, "plot per-token latency and memory", "FILE.png"),
    Key("telemetry", ("--telemetry",), c.boolean, "sample power, energy and utilization per "
        "phase where a source exists (NVML on NVIDIA GPUs, RAPL on CPUs where readable; default "
        "on)", action=argparse.BooleanOptionalAction, field="telemetry", written=15),
    Key("profile", ("--profile",), c.optional_text, "after the trials, one extra generate() per "
        "configuration under torch.profiler, written to DIR as a Chrome/Perfetto trace with the "
        "token boundaries marked (not in the statistics)", "DIR", field="profile"),
    Key("quality", ("--quality",), c.boolean, "after each configuration's trials, outside them: "
        "perplexity of the model on the workload's own texts (teacher-forced) and agreement of "
        "its greedy tokens with a reference configuration (results: quality)", group="quality",
        field="quality", **_TRUE),
    Key("quality_reference", ("--quality-reference",), c.text, "--quality: the configuration "
        "(its label or id) every other one is compared with (default: the first earlier one that "
        "differs in one setting only, else the first of the same lengths)", "LABEL",
        group="quality", field="quality_reference"),
    Key("lm_eval", ("--lm-eval",), c.text, "--quality: also run these lm-evaluation-harness "
        "tasks (comma-separated names, or a directory of task YAML files: DIR:TASK[,...]) on "
        "the loaded model (needs streambench[eval])", "TASKS", group="quality", field="lm_eval"),
    Key("isolate", ("--isolate",), c.choice_of(_ISOLATE), "run each configuration (config; the "
        "default for more than one) or each model (model) in its own worker process, forked "
        "from a warm one that loaded the model where that is safe (CPU, transformers), or each "
        "configuration in a fresh Python (fresh), or everything in this process (none; the "
        "only mode under torchrun/deepspeed)",
        choices=_ISOLATE, field="isolate"),
    Key("resume", ("--resume",), None, "keep the configurations already ok in the first -o "
        ".json/.jsonl file (same settings) and measure only the rest", action="store_true",
        default=False),
    Key("seed", ("--seed",), c.bounded("seed"), "seed of random weights and prompts (default 0)",
        "N", field="seed", written=13),
    _wl("prompts", _path, "prompts from a local file: .txt (one per line), .jsonl (prompt or "
        "messages, optional output_tokens), .json (ShareGPT), .csv (a prompt column); input "
        "lengths come from the data", metavar="FILE"),
    _wl("output_len", parse_output_len, "with --prompts: N forced tokens (default 128), "
        "from-data (reference lengths; the default for ShareGPT), or natural (stop at EOS, up to "
        "--max-output-len)", metavar="N|from-data|natural"),
    _wl("max_output_len", _wint(1, MAX_TOKENS), "cap of --output-len natural (default "
        f"{DEFAULT_MAX_OUTPUT_LEN})", metavar="N"),
    _wl("max_prompts", _wint(1, MAX_PROMPTS), "use the first N prompts (after --shuffle)",
        metavar="N"),
    _wl("shuffle", _flag, "shuffle the prompts (with --seed)", **_TRUE),
    _wl("length_spread", parse_spread, "draw each request's input and output lengths uniformly "
        "within ±R of --in-out (e.g. 0.25), seeded", metavar="R"),
    _wl("shared_prefix", _wint(0, MAX_TOKENS), "the same N-token prefix before every "
        "prompt (counted in the input length)", metavar="N"),
    _wl("apply_chat_template", _flag, "text prompts through the tokenizer's chat template "
        "(messages always are)", commands=("run",), **_TRUE),
    _wl("save_outputs", _flag, "keep each generated text in the results (an MD5 of it is always "
        "kept)", **_TRUE),
    _wl("skip_invalid", _flag, "skip prompts that cannot run (too long for the context ...) "
        "with a count", **_TRUE),
    Key("verbose", ("-v", "--verbose"), None, "print every run's per-token timing",
        action="store_true", default=False),
    # where the configurations run (README, "Beyond one machine"): not settings of a
    # configuration, never in --config; checked by streambench.runners.remote.options
    Key("ray", ("--ray",), None, "run the configurations as tasks of the Ray cluster at ADDRESS "
        "(anything ray.init takes: auto, HOST:PORT, ray://HOST:PORT); needs streambench[ray]",
        "ADDRESS", group="cluster"),
    Key("ray_cpus", ("--ray-cpus",), None, "CPUs per configuration (default 1; the worker's "
        "threads)", "N", group="cluster"),
    Key("ray_gpus", ("--ray-gpus",), None, "GPUs per configuration (default 1 with --device "
        "cuda, else 0)", "N", group="cluster"),
    Key("ray_memory", ("--ray-memory",), None, "memory reserved per configuration, for "
        "placement (not enforced)", "GB", group="cluster"),
    Key("slurm", ("--slurm",), None, "run the configurations as a Slurm job array through "
        "submitit (one job per configuration, or per model with --isolate model); needs "
        "streambench[slurm]", action="store_true", group="cluster"),
    Key("slurm_partition", ("--slurm-partition",), None, "the partition of the jobs", "NAME",
        group="cluster"),
    Key("slurm_gpus_per_job", ("--slurm-gpus-per-job",), None, "GPUs per job (default 1 with "
        "--device cuda, else 0)", "N", group="cluster"),
    Key("slurm_time", ("--slurm-time",), None, "time limit of each job, minutes (default 60)",
        "MIN", group="cluster"),
    Key("slurm_folder", ("--slurm-folder",), None, "submitit's folder for job logs (default "
        "./streambench-slurm)", "DIR", group="cluster"),
    Key("slurm_arg", ("--slurm-arg",), None, "another submitit parameter (slurm_KEY), e.g. "
        "--slurm-arg mem_gb=16 (repeatable)", "KEY=VALUE", action="append", group="cluster"),
    # ipex-llm all-in-one's own keys; no option of their own
    Key("local_model_hub", (), c.hub, "directory holding the models"),
    Key("variants", (), lambda v, _where: v, "list of generation settings (checked later)"),
)  # fmt: skip


def keys_of(command: str, group: str | None = "*") -> list[Key]:
    """The keys with a command-line option in ``command`` (``group``: only that argument
    group; ``"*"``: all), in table order."""
    return [
        k for k in TABLE if k.flags and command in k.commands and (group == "*" or k.group == group)
    ]


#: ``--config`` key -> its setting (all-in-one names and streambench's own)
YAML_KEYS: dict[str, Key] = {name: k for k in TABLE for name in k.yaml_keys}


def generation_keys() -> dict[str, Key]:
    """The generation settings (each an axis of the variants), in table order."""
    return {k.dest: k for k in TABLE if k.gen is not None}


def _argument(k: Key) -> dict[str, Any]:
    """argparse's keywords of ``k``."""
    names = ("help", "metavar", "action", "nargs")
    out = {n: getattr(k, n) for n in names if getattr(k, n) is not None}
    if callable(out.get("help")):  # written when the parser is built (the engine registry's)
        out["help"] = out["help"]()
    out["default"] = k.default  # also for flags: None (not given), not store_true's False
    if k.choices is not None:
        out["choices"] = list(k.choices)
    return out


def add_arguments(
    parser: argparse.ArgumentParser, command: str, only: Iterable[str | None] | None = None
) -> None:
    """``command``'s options from :data:`TABLE`, in table order, each in its argument group
    (created on first use: the order of ``--help``); ``only``: those groups alone."""
    groups: dict[str, Any] = {}
    wanted = None if only is None else set(only)
    for k in keys_of(command):
        if wanted is not None and k.group not in wanted:
            continue
        target: Any = parser
        if k.group is not None:
            if k.group not in groups:
                groups[k.group] = parser.add_argument_group(GROUPS[k.group])
            target = groups[k.group]
        target.add_argument(*k.flags, **_argument(k))
