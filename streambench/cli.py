"""``streambench`` command line: ``run`` (benchmark sweeps), ``endpoint`` (OpenAI-compatible
servers), ``plot`` and ``compare``.

Exit codes (one policy, :mod:`streambench.errors`): 0 success; 1 a configuration or request
failed, or ``compare`` found a regression or could not compare; 2 bad input (one line on stderr,
a traceback too with ``--debug``); 128 + N interrupted by signal N (130 Ctrl-C, 143 SIGTERM,
129 SIGHUP), finished results kept.

Only argparse is imported at start-up so that ``streambench --help`` is fast; torch and
transformers load inside the ``run`` path. A new subcommand is one ``add_parser`` in
:func:`build_parser` plus a ``cmd_*`` function returning the exit code.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

__all__ = ["build_parser", "main"]

from .errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    SignalPolicy,
    UsageError,
    describe_exception,
    interrupted_exit_code,
)

DEFAULT_IN_OUT = "32-32"
DEFAULT_BATCH = "1"
DEFAULT_WARMUP = 1
DEFAULT_TRIALS = 3

#: all-in-one config keys that make no sense here; reported, then ignored
IGNORED_CONFIG_KEYS = {
    "test_api",
    "cpu_embedding",
    "streaming",
    "use_fp16_torch_dtype",
    "task",
    "exclude",
    "group_size",
    "n_gpu",
    "lookahead",
    "max_matching_ngram_size",
}


#: config key -> argparse destination (all-in-one names and streambench's own)
def _config_keys() -> dict[str, str]:
    from .config import KEYS

    return {key: spec.dest for key, spec in KEYS.items()}


class UsageFailure(Exception):
    """Raised instead of argparse's ``exit(2)`` so that :func:`main` prints one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageFailure(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show Python tracebacks on errors")
    parser = _Parser(
        prog="streambench",
        description=(
            "Benchmark transformers generation: first-token and per-token latency and memory, "
            "timed through generate(streamer=...)."
        ),
        parents=[common],
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"streambench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = sub.add_parser(
        "run",
        parents=[common],
        help="benchmark a model over input/output lengths and batch sizes",
        description=(
            "Benchmark MODEL (a local directory or hub id; without MODEL, an embedded tiny "
            "random-weight Llama, no download) over every input/output pair x batch size: "
            "warm-ups, then trials, each a model.generate() timed per token."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  streambench run\n"
            "  streambench run ./my-model --in-out 32-32,1024-128 --batch-size 1,4 "
            "-o results.csv -o results.json --plot results.png\n"
            "  streambench run --random-weights llama-3-8b --dtype bfloat16 --device cuda\n"
            "  streambench run --config all-in-one.yaml\n"
            "\nbundled --random-weights presets: llama-3-8b, qwen2.5-7b, mistral-7b, tiny-llama"
        ),
    )
    run.add_argument("model", nargs="?", metavar="MODEL", help="local directory or hub id")
    run.add_argument(
        "--random-weights",
        action="store_true",
        default=None,
        help="build MODEL from its config alone (local config.json / directory, or a bundled "
        "preset) with random weights",
    )
    run.add_argument(
        "--in-out",
        metavar="IN-OUT[,...]",
        help=f"prompt tokens-new tokens pairs, e.g. 32-32,1024-128 (default {DEFAULT_IN_OUT})",
    )
    run.add_argument(
        "--batch-size", metavar="N[,...]", help=f"batch sizes, e.g. 1,4 (default {DEFAULT_BATCH})"
    )
    run.add_argument(
        "--warmup",
        metavar="N",
        help=f"warm-up runs per configuration (default {DEFAULT_WARMUP})",
    )
    run.add_argument(
        "--trials",
        metavar="N",
        help=f"measured runs per configuration (default {DEFAULT_TRIALS})",
    )
    run.add_argument("--device", metavar="DEV", help="auto|cpu|cuda|cuda:N|xpu|mps (default auto)")
    run.add_argument(
        "--dtype",
        help="auto|float32|float16|bfloat16 (default auto: float32 on CPU, "
        "bfloat16/float16 on accelerators)",
    )
    run.add_argument("--num-beams", metavar="N", help="beam search width (default 1)")
    run.add_argument(
        "--low-bit",
        metavar="KIND",
        help="low-bit weights: ipex-llm kinds (sym_int4, sym_int8, nf4 ...), torchao "
        "(int8_weight_only, int8_dynamic, int4_weight_only) or bitsandbytes (bnb_nf4, bnb_fp4, "
        "bnb_int8)",
    )
    run.add_argument(
        "--trust-remote-code",
        action="store_true",
        default=None,
        help="allow the model's own code from its repository (off by default)",
    )
    run.add_argument(
        "--ipex",
        action="store_true",
        default=None,
        help="apply intel-extension-for-pytorch's ipex.llm.optimize before timing",
    )
    run.add_argument(
        "--num-layers",
        metavar="N",
        help="override num_hidden_layers (embedded model and --random-weights only)",
    )
    run.add_argument(
        "--tp",
        choices=["auto", "none", "transformers", "deepspeed"],
        help="tensor parallelism under torchrun / deepspeed: transformers (tp_plan='auto'), "
        "deepspeed (AutoTP), none (a full replica per rank); default auto: transformers when "
        "launched with several ranks",
    )
    run.add_argument("--config", metavar="FILE.yaml", help="sweep settings (all-in-one keys)")
    run.add_argument(
        "-o",
        "--output",
        action="append",
        metavar="FILE",
        help="write results; format by extension: .csv .json .jsonl .md (repeatable)",
    )
    run.add_argument("--plot", metavar="FILE.png", help="plot per-token latency and memory")
    run.add_argument("--seed", metavar="N", help="seed of random weights and prompts (default 0)")
    run.add_argument(
        "-v", "--verbose", action="store_true", help="print every run's per-token timing"
    )
    run.set_defaults(func=cmd_run)

    plot = sub.add_parser(
        "plot",
        parents=[common],
        help="plot saved results",
        description="Plot per-token latency and memory of a results file written by run.",
    )
    plot.add_argument("results", metavar="RESULTS.json")
    plot.add_argument("-o", "--output", required=True, metavar="FILE.png")
    plot.set_defaults(func=cmd_plot)

    compare = sub.add_parser(
        "compare",
        parents=[common],
        help="compare two results files; non-zero exit when NEW is slower",
        description=(
            "Ratios NEW/OLD of the first-token and rest-token medians per configuration. Exit 1 "
            "when NEW is slower than --threshold on any of them, or a configuration is missing "
            "or failed in NEW."
        ),
    )
    compare.add_argument("old", metavar="OLD.json")
    compare.add_argument("new", metavar="NEW.json")
    compare.add_argument(
        "--threshold", default="5%", help="allowed slow-down in percent (default 5%%)"
    )
    compare.set_defaults(func=cmd_compare)

    endpoint = sub.add_parser(
        "endpoint",
        parents=[common],
        help="benchmark an OpenAI-compatible streaming server (TTFT, TPOT, ITL, E2E)",
        description=(
            "Stream requests to an OpenAI-compatible server (vLLM, TGI, llama.cpp, Ollama, "
            "transformers serve ...) and time every chunk on the client: time to first token, "
            "time per output token, inter-token latency, end-to-end latency, throughput and "
            "goodput. Same tables, -o files, --plot and compare as run."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  streambench endpoint http://127.0.0.1:8000/v1 --model my-model\n"
            "  streambench endpoint http://127.0.0.1:8000/v1 --model my-model --in-out 512-128 "
            "--requests 100 --request-rate 4 --slo ttft=200ms,tpot=50ms -o served.json\n"
            "  streambench compare local.json served.json"
        ),
    )
    from .endpoint import add_arguments as add_endpoint_arguments

    add_endpoint_arguments(endpoint)
    endpoint.set_defaults(func=cmd_endpoint)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``streambench`` command; returns the exit code (see the module
    docstring). SIGTERM and SIGHUP stop a command as Ctrl-C does."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # the deepspeed launcher passes --local_rank=N (without --no_local_rank); LOCAL_RANK has it too
    argv = [a for a in argv if not a.startswith(("--local_rank=", "--local-rank="))]
    debug = "--debug" in argv
    parser = build_parser()
    speaker = _Speaker()
    with SignalPolicy():
        try:
            args = parser.parse_args(argv)
            if getattr(args, "func", None) is None:
                parser.print_help()
                return EXIT_USAGE
            args.speaker = speaker
            return int(args.func(args))
        except UsageFailure as exc:
            speaker.error(str(exc))
            return EXIT_USAGE
        except KeyboardInterrupt as exc:
            speaker.error(f"interrupted ({exc})" if str(exc) else "interrupted")
            return interrupted_exit_code(exc)
        except UsageError as exc:
            if debug:
                traceback.print_exc()
            speaker.error(str(exc))
            return EXIT_USAGE
        except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, exit 1
            if debug:
                traceback.print_exc()
            speaker.error(f"{describe_exception(exc)} (run again with --debug for the traceback)")
            return EXIT_FAILED


class _Speaker:
    """Where the command's own messages go; quiet on the ranks of a distributed run that do not
    write (only rank 0 speaks)."""

    def __init__(self) -> None:
        self.speak = True

    def error(self, message: str) -> None:
        if self.speak:
            print(f"streambench: error: {message}", file=sys.stderr)

    def note(self, message: str) -> None:
        if self.speak:
            print(f"streambench: {message}", file=sys.stderr)


# -- run ----------------------------------------------------------------------------------------
def _load_yaml(path: str) -> dict[str, Any]:
    try:
        import yaml
    except ImportError:
        raise UsageError("--config needs PyYAML: pip install pyyaml") from None
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as exc:
        raise UsageError(f"cannot read config {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"config {path} is not UTF-8 text: write it as a YAML file") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" (line {where.line + 1})" if where is not None else ""
        raise UsageError(f"config {path} is not valid YAML{at}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UsageError(f"config {path} must be a mapping of keys to values")
    return data


def _option_name(dest: str) -> str:
    return "MODEL" if dest == "models" else "--" + dest.replace("_", "-")


def _merge_config(args: argparse.Namespace) -> dict[str, Any]:
    """Typed settings: command-line values win over the config file, which wins over the
    defaults. Every value goes through :data:`streambench.config.KEYS` (types and bounds); an
    error names the option or the config file and key."""
    from .config import KEYS

    speaker = getattr(args, "speaker", None) or _Speaker()
    merged: dict[str, Any] = {}
    if args.config:
        for key, value in _load_yaml(args.config).items():
            if key in IGNORED_CONFIG_KEYS:
                speaker.note(
                    f"config key {key!r} is an ipex-llm all-in-one option not used here (ignored)"
                )
                continue
            spec = KEYS.get(key) if isinstance(key, str) else None
            if spec is None:
                raise UsageError(
                    f"unknown key {key!r} in config {args.config} (known: "
                    f"{', '.join(sorted(KEYS))})"
                )
            merged[spec.dest] = spec.coerce(value, f"config {args.config}: key {key!r}")
    cli = vars(args)
    by_dest = {spec.dest: spec for spec in KEYS.values()}
    if args.model is not None:
        merged["models"] = by_dest["models"].coerce([args.model], "MODEL")
    for dest, spec in by_dest.items():
        if dest != "models" and cli.get(dest) is not None:
            merged[dest] = spec.coerce(cli[dest], _option_name(dest))
    merged["verbose"] = bool(cli.get("verbose"))
    return merged


def _settings(args: argparse.Namespace) -> tuple[Any, list[str], str | None]:
    """Validate everything that can be checked without loading a model."""
    from .config import parse_in_out_text, parse_int_axis
    from .sweep import DTYPES, SweepSettings, check_low_bit_kind, resolve_model_spec

    m = _merge_config(args)
    random_weights = m.get("random_weights", False)
    specs = [
        resolve_model_spec(x, random_weights, m.get("local_model_hub"))
        for x in m.get("models", [None])
    ]
    in_out = m.get("in_out") or parse_in_out_text(DEFAULT_IN_OUT)
    batch = m.get("batch_size") or parse_int_axis(DEFAULT_BATCH, "--batch-size", 1, 1)
    dtype = m.get("dtype", "auto").lower()
    if dtype not in DTYPES:
        raise UsageError(f"unknown --dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    low_bit = m.get("low_bit")
    if low_bit is not None:
        check_low_bit_kind(low_bit)
    num_layers = m.get("num_layers")
    if num_layers is not None and any(s.kind == "pretrained" for s in specs):
        raise UsageError("--num-layers works with the embedded model and --random-weights only")
    outputs, plot = m.get("output", []), m.get("plot")
    _check_targets(outputs, plot, specs, m.get("local_model_hub"))
    settings = SweepSettings(
        models=specs,
        in_out=in_out,
        batch_sizes=batch,
        warmup=m.get("warmup", DEFAULT_WARMUP),
        trials=m.get("trials", DEFAULT_TRIALS),
        device=m.get("device", "auto"),
        dtype=dtype,
        num_beams=m.get("num_beams", 1),
        low_bit=low_bit,
        trust_remote_code=m.get("trust_remote_code", False),
        ipex=m.get("ipex", False),
        num_layers=num_layers,
        seed=m.get("seed", 0),
        verbose=m["verbose"],
        tp=_tp_mode(m.get("tp")),
    )
    return settings, outputs, plot


def _check_targets(outputs: list[str], plot: str | None, specs: list[Any], hub: str | None) -> None:
    """Every output path checked before any work: format, writable, not inside what is read."""
    from .outputs import check_output_targets
    from .report import OUTPUT_FORMATS
    from .sweep import protected_directories

    protected = protected_directories(specs, hub)
    check_output_targets(outputs, "--output", OUTPUT_FORMATS, protected)
    if plot is not None:
        check_output_targets([plot], "--plot", (".png", ".svg", ".pdf"), protected)
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:
            raise UsageError(
                "--plot needs matplotlib, which is not installed: pip install 'streambench[plot]'"
            )
        if any(os.path.realpath(plot) == os.path.realpath(o) for o in outputs):
            raise UsageError(f"--plot {plot}: also named by --output; use another file name")


def _tp_mode(value: Any) -> str:
    from .distributed import resolve_tp_mode

    try:
        return resolve_tp_mode(None if value is None else str(value))
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def cmd_run(args: argparse.Namespace) -> int:
    """``streambench run``: the sweep; results written after every configuration."""
    from .sweep import (
        beam_wrapper_class,
        check_hub_models,
        check_ipex_available,
        check_low_bit_available,
    )

    settings, outputs, plot_path = _settings(args)
    if settings.num_beams > 1:
        beam_wrapper_class()
    if settings.low_bit:
        check_low_bit_available(
            settings.low_bit, any(m.kind != "pretrained" for m in settings.models)
        )
    if settings.ipex:
        check_ipex_available()

    from .devices import DeviceNotAvailableError, resolve_device

    try:
        device = resolve_device(settings.device)
    except (ValueError, DeviceNotAvailableError) as exc:
        raise UsageError(str(exc).replace("pass device='cpu'", "use --device cpu")) from None
    check_hub_models(settings.models)
    return _sweep(args, settings, device, outputs, plot_path)


def _sweep(
    args: argparse.Namespace, settings: Any, device: Any, outputs: list[str], plot_path: str | None
) -> int:
    import gc

    from rich.console import Console

    from . import report
    from .sweep import RankContext, iter_configurations, quiet_transformers

    # Distributed runs: every rank measures, the writer (rank 0) prints and writes.
    rank = RankContext.from_env(device)
    speaker = getattr(args, "speaker", None) or _Speaker()
    speaker.speak = rank.is_writer
    out = Console(quiet=not rank.is_writer, highlight=False)
    err = Console(stderr=True, quiet=not rank.is_writer)

    doc = report.new_document("run", report.environment(device), settings.to_dict())
    configs = list(iter_configurations(settings))
    runs_per_config = settings.warmup + settings.trials
    out.print(
        f"[bold]streambench run[/bold]: {len(configs)} configuration(s) × "
        f"({settings.warmup} warm-up + {settings.trials} trials) on {device} "
        f"({doc['environment'].get('device_name')})"
    )

    written: set[str] = set()

    def save() -> None:
        # An existing results file is replaced only by a document with a finished configuration;
        # a new one is written after every configuration, failed or not.
        if not rank.is_writer or not doc["configurations"]:
            return
        finished = any(e["status"] == "ok" for e in doc["configurations"])
        targets = [p for p in outputs if finished or p in written or not os.path.lexists(p)]
        report.write_outputs(targets, doc)
        written.update(targets)

    progress = report.progress_bar(err)
    task = progress.add_task("sweep", total=len(configs) * runs_per_config)
    driver = _RunDriver(args, settings, device, speaker, out, progress, task, rank)
    try:
        with progress, quiet_transformers(settings.verbose):
            for spec, n_in, n_out, batch in configs:
                entry = driver.measure(spec, n_in, n_out, batch, doc)
                doc["configurations"].append(rank.gather(entry))
                save()
                if entry["status"] == "ok":
                    out.print(report.configuration_table(entry))
    except KeyboardInterrupt as exc:
        doc["interrupted"] = True
        save()
        finished = sum(1 for e in doc["configurations"] if e["status"] == "ok")
        untouched = [p for p in outputs if p not in written]
        kept = f"{finished} finished configuration(s)" + (
            f" kept in {', '.join(p for p in outputs if p in written)}" if written else ""
        )
        if untouched:
            kept += f"; {', '.join(untouched)} left as it was"
        speaker.error(f"interrupted ({exc or 'SIGINT'}): {kept}")
        return interrupted_exit_code(exc)
    finally:
        driver.loaded = None
        gc.collect()

    failures = driver.failures
    if plot_path and rank.is_writer:
        try:
            report.plot_document(doc, plot_path)
            out.print(f"plot written to {plot_path}")
        except (RuntimeError, ValueError, OSError) as exc:
            speaker.error(f"--plot {plot_path}: {describe_exception(exc)}")
            failures += 1
    if outputs and rank.is_writer:
        untouched = [p for p in outputs if p not in written]
        if written:
            out.print("results written to " + ", ".join(p for p in outputs if p in written))
        if untouched:
            speaker.note(f"no configuration finished: {', '.join(untouched)} left as it was")
    if driver.bad_model and failures == len(configs):
        return EXIT_USAGE
    return EXIT_FAILED if failures else EXIT_OK


class _RunDriver:
    """Loads each model once and measures its configurations; failures become failed entries
    (the sweep goes on), interrupts propagate after the partial entry is recorded."""

    def __init__(
        self,
        args: argparse.Namespace,
        settings: Any,
        device: Any,
        speaker: _Speaker,
        out: Any,
        progress: Any,
        task: Any,
        rank: Any,
    ) -> None:
        self.args, self.settings, self.device, self.speaker = args, settings, device, speaker
        self.out, self.progress, self.task, self.rank = out, progress, task, rank
        self.loaded: Any = None
        self.current: Any = None
        self.load_error: str | None = None
        self.bad_model = False  # a model that could not be found or read: exit 2 (bad input)
        self.failures = 0

    def _load(self, spec: Any, doc: dict[str, Any]) -> None:
        import gc

        from . import report
        from .sweep import load_model

        self.loaded = None
        gc.collect()
        self.current, self.load_error = spec, None
        self.progress.update(self.task, description=f"loading {spec.name}")
        try:
            self.loaded = load_model(spec, self.settings, self.device)
        except Exception as exc:  # noqa: BLE001 - recorded as failed configurations
            if self.args.debug:
                traceback.print_exc()
            if isinstance(exc, UsageError):
                self.bad_model = True
                self.load_error = str(exc)
            else:
                self.load_error = f"loading {spec.name} failed: {describe_exception(exc)}"
            self.speaker.error(self.load_error)  # once per model, not once per configuration
            return
        doc["environment"].update(report.library_versions())
        for note in self.loaded.notes:
            self.speaker.note(f"{spec.name}: {note}")

    def measure(self, spec: Any, n_in: int, n_out: int, batch: int, doc: dict[str, Any]) -> Any:
        from .sweep import new_entry, run_configuration

        settings = self.settings
        runs_per_config = settings.warmup + settings.trials
        entry = new_entry(settings, spec.name, n_in, n_out, batch)
        if self.current is not spec:
            self._load(spec, doc)
        self.progress.update(self.task, description=entry["label"])
        if self.loaded is None:
            entry["status"], entry["error"] = "failed", self.load_error
            self.progress.advance(self.task, runs_per_config)
            self.failures += 1
            return entry
        done = 0

        def on_run(i: int, warm: bool) -> None:
            nonlocal done
            done += 1
            self.progress.advance(self.task)

        def plain(line: str) -> None:  # per-token lines of --verbose: no rich markup
            self.out.print(line, markup=False, highlight=False, soft_wrap=True)

        try:
            run_configuration(self.loaded, entry, settings, on_run=on_run, print_fn=plain)
        except KeyboardInterrupt:
            doc["configurations"].append(self.rank.gather(entry))
            raise
        except Exception:  # noqa: BLE001 - recorded in the entry, the sweep goes on
            if self.args.debug:
                traceback.print_exc()
        self.progress.advance(self.task, runs_per_config - done)
        if entry["status"] != "ok":
            self.failures += 1
            self.speaker.error(f"configuration {entry['label']} failed: {entry['error']}")
        return entry


def cmd_endpoint(args: argparse.Namespace) -> int:
    """``streambench endpoint``: see :func:`streambench.endpoint.cmd_endpoint`."""
    from .endpoint import cmd_endpoint as run_endpoint_command

    return run_endpoint_command(args)


# -- plot, compare -------------------------------------------------------------------------------
def cmd_plot(args: argparse.Namespace) -> int:
    from . import report
    from .errors import UsageError

    if not args.output.lower().endswith((".png", ".svg", ".pdf")):
        raise UsageError(f"-o {args.output}: use a .png (or .svg, .pdf) file name")
    doc = report.load_document(args.results)  # UsageError (exit 2) naming the file
    try:
        report.plot_document(doc, args.output)
    except ValueError as exc:  # e.g. nothing to plot
        raise UsageError(f"{args.results}: {exc}") from None
    except RuntimeError as exc:  # matplotlib missing
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"cannot write -o {args.output}: {exc.strerror or exc}") from None
    print(f"plot written to {args.output}")
    return EXIT_OK


def parse_threshold(text: str) -> float:
    """``"5%"`` or ``"5"`` -> ``0.05`` (a fraction). A finite percentage from 0% to 1000%, else
    :class:`UsageError`: ``nan`` or ``inf`` would switch the regression gate off."""
    from .errors import UsageError
    from .report import MAX_THRESHOLD

    raw = str(text).strip().removesuffix("%").strip()
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"--threshold {text!r}: write a percentage, e.g. 5%") from None
    if not 0 <= value <= MAX_THRESHOLD * 100:  # NaN fails both comparisons
        raise UsageError(
            f"--threshold {text!r}: must be a finite percentage from 0% to "
            f"{MAX_THRESHOLD * 100:g}%, e.g. 5%"
        )
    return value / 100.0


def cmd_compare(args: argparse.Namespace) -> int:
    """Exit 0 when NEW is not slower; 1 on a regression or anything that could not be compared
    (the gate fails closed); 2 for a bad file or option (UsageError, one line)."""
    from rich.console import Console
    from rich.markup import escape

    from . import report

    threshold = parse_threshold(args.threshold)
    old = report.load_document(args.old)  # UsageError (exit 2) naming the file
    new = report.load_document(args.new)
    rows, failed = report.compare_documents(old, new, threshold)
    console = Console(highlight=False)
    console.print(report.compare_table(rows, threshold))
    if failed:
        slower = [escape(r.label) for r in rows if r.regressed]
        unsure = [escape(r.label) for r in rows if r.fails and not r.regressed]
        if slower:
            console.print(f"[bold red]regression[/bold red]: {', '.join(slower)}")
        if unsure:
            console.print(
                f"[bold red]could not compare[/bold red] (the gate fails closed): "
                f"{', '.join(unsure)}"
            )
        return EXIT_FAILED
    console.print(f"[green]no regression beyond {threshold:.1%}[/green]")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
