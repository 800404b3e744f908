"""``streambench`` command line: ``run`` (benchmark sweeps), ``endpoint`` (OpenAI-compatible
servers), ``plot`` and ``compare``.

Exit codes: 0 success; 1 a configuration failed (``run``) or NEW regressed (``compare``);
2 bad input (one line on stderr, no traceback unless ``--debug``); 130 interrupted (Ctrl-C).

Only argparse is imported at start-up so that ``streambench --help`` is fast; torch and
transformers load inside the ``run`` path. A new subcommand is one ``add_parser`` in
:func:`build_parser` plus a ``cmd_*`` function returning the exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

__all__ = ["build_parser", "main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

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
CONFIG_KEYS = {
    "repo_id": "models",
    "model": "models",
    "local_model_hub": "local_model_hub",
    "warm_up": "warmup",
    "warmup": "warmup",
    "num_trials": "trials",
    "trials": "trials",
    "in_out_pairs": "in_out",
    "in_out": "in_out",
    "batch_size": "batch_size",
    "low_bit": "low_bit",
    "num_beams": "num_beams",
    "device": "device",
    "dtype": "dtype",
    "trust_remote_code": "trust_remote_code",
    "random_weights": "random_weights",
    "ipex": "ipex",
    "num_layers": "num_layers",
    "output": "output",
    "plot": "plot",
    "seed": "seed",
    "tp": "tp",
}


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
        type=int,
        metavar="N",
        help=f"warm-up runs per configuration (default {DEFAULT_WARMUP})",
    )
    run.add_argument(
        "--trials",
        type=int,
        metavar="N",
        help=f"measured runs per configuration (default {DEFAULT_TRIALS})",
    )
    run.add_argument("--device", metavar="DEV", help="auto|cpu|cuda|cuda:N|xpu|mps (default auto)")
    run.add_argument(
        "--dtype",
        help="auto|float32|float16|bfloat16 (default auto: float32 on CPU, "
        "bfloat16/float16 on accelerators)",
    )
    run.add_argument("--num-beams", type=int, metavar="N", help="beam search width (default 1)")
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
        type=int,
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
    run.add_argument("--seed", type=int, help="seed of random weights and prompts (default 0)")
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
    """Entry point of the ``streambench`` command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # the deepspeed launcher passes --local_rank=N (without --no_local_rank); LOCAL_RANK has it too
    argv = [a for a in argv if not a.startswith(("--local_rank=", "--local-rank="))]
    debug = "--debug" in argv
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if getattr(args, "func", None) is None:
            parser.print_help()
            return EXIT_USAGE
        return int(args.func(args))
    except UsageFailure as exc:
        _error(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:
        from .sweep import UsageError

        if debug:
            raise
        if isinstance(exc, UsageError):
            _error(str(exc))
            return EXIT_USAGE
        _error(f"{type(exc).__name__}: {exc} (run again with --debug for the traceback)")
        return EXIT_FAILED


#: False on the ranks of a distributed run that do not write (only rank 0 speaks)
_SPEAK = True


def _error(message: str) -> None:
    if _SPEAK:
        print(f"streambench: error: {message}", file=sys.stderr)


def _note(message: str) -> None:
    if _SPEAK:
        print(f"streambench: {message}", file=sys.stderr)


# -- run ----------------------------------------------------------------------------------------
def _load_yaml(path: str) -> dict[str, Any]:
    from .sweep import UsageError

    try:
        import yaml
    except ImportError:
        raise UsageError("--config needs PyYAML: pip install pyyaml") from None
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as exc:
        raise UsageError(f"cannot read config {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" (line {where.line + 1})" if where is not None else ""
        raise UsageError(f"config {path} is not valid YAML{at}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UsageError(f"config {path} must be a mapping of keys to values")
    return data


def _merge_config(args: argparse.Namespace) -> dict[str, Any]:
    """Command-line values win over the config file, which wins over the defaults."""
    from .sweep import UsageError

    conf: dict[str, Any] = {}
    if args.config:
        for key, value in _load_yaml(args.config).items():
            if key in IGNORED_CONFIG_KEYS:
                _note(
                    f"config key {key!r} is an ipex-llm all-in-one option not used here (ignored)"
                )
                continue
            dest = CONFIG_KEYS.get(key)
            if dest is None:
                raise UsageError(
                    f"unknown key {key!r} in config {args.config} (known: "
                    f"{', '.join(sorted(CONFIG_KEYS))})"
                )
            conf[dest] = value
    merged = dict(conf)
    cli = vars(args)
    for dest in set(CONFIG_KEYS.values()) | {"verbose"}:
        if dest == "models":
            if args.model is not None:
                merged["models"] = [args.model]
            continue
        if cli.get(dest) is not None:
            merged[dest] = cli[dest]
    return merged


def _settings(args: argparse.Namespace) -> tuple[Any, list[str], str | None]:
    """Validate everything that can be checked without loading a model."""
    from .report import check_output_paths
    from .sweep import (
        SweepSettings,
        UsageError,
        parse_in_out,
        parse_int_list,
        resolve_model_spec,
    )

    m = _merge_config(args)
    models = m.get("models")
    if models is None:
        models = [None]
    elif isinstance(models, str):
        models = [models]
    random_weights = bool(m.get("random_weights") or False)
    specs = [
        resolve_model_spec(None if x is None else str(x), random_weights, m.get("local_model_hub"))
        for x in models
    ]
    in_out = parse_in_out(m.get("in_out", DEFAULT_IN_OUT))
    batch = parse_int_list(m.get("batch_size", DEFAULT_BATCH), "--batch-size")
    warmup = parse_int_list(m.get("warmup", DEFAULT_WARMUP), "--warmup", minimum=0)[0]
    trials = parse_int_list(m.get("trials", DEFAULT_TRIALS), "--trials")[0]
    beams = parse_int_list(m.get("num_beams", 1), "--num-beams")[0]
    low_bit = m.get("low_bit")
    if low_bit is not None and str(low_bit).strip().lower() in ("", "none", "null", "false"):
        low_bit = None
    dtype = str(m.get("dtype", "auto")).lower()
    from .sweep import DTYPES

    if dtype not in DTYPES:
        raise UsageError(f"unknown --dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    num_layers = m.get("num_layers")
    if num_layers is not None:
        num_layers = parse_int_list(num_layers, "--num-layers")[0]
        if any(s.kind == "pretrained" for s in specs):
            raise UsageError("--num-layers works with the embedded model and --random-weights only")
    outputs = m.get("output") or []
    if isinstance(outputs, str):
        outputs = [outputs]
    try:
        check_output_paths(outputs)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    plot = m.get("plot")
    if plot is not None and not str(plot).lower().endswith((".png", ".svg", ".pdf")):
        raise UsageError(f"--plot {plot}: use a .png (or .svg, .pdf) file name")
    if plot is not None:
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:
            raise UsageError(
                "--plot needs matplotlib, which is not installed: pip install 'streambench[plot]'"
            )
    settings = SweepSettings(
        models=specs,
        in_out=in_out,
        batch_sizes=batch,
        warmup=warmup,
        trials=trials,
        device=str(m.get("device", "auto")),
        dtype=dtype,
        num_beams=beams,
        low_bit=None if low_bit is None else str(low_bit),
        trust_remote_code=bool(m.get("trust_remote_code") or False),
        ipex=bool(m.get("ipex") or False),
        num_layers=num_layers,
        seed=int(m.get("seed", 0) or 0),
        verbose=bool(m.get("verbose") or False),
        tp=_tp_mode(m.get("tp")),
    )
    return settings, [str(o) for o in outputs], None if plot is None else str(plot)


def _tp_mode(value: Any) -> str:
    from .distributed import resolve_tp_mode
    from .sweep import UsageError

    try:
        return resolve_tp_mode(None if value is None else str(value))
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def cmd_run(args: argparse.Namespace) -> int:
    """``streambench run``: the sweep; results written after every configuration."""
    from .sweep import (
        UsageError,
        beam_wrapper_class,
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
        raise UsageError(str(exc)) from None
    return _sweep(args, settings, device, outputs, plot_path)


def _sweep(
    args: argparse.Namespace, settings: Any, device: Any, outputs: list[str], plot_path: str | None
) -> int:
    import gc
    import traceback

    from rich.console import Console

    from . import report
    from .sweep import (
        RankContext,
        UsageError,
        iter_configurations,
        load_model,
        new_entry,
        quiet_transformers,
        run_configuration,
    )

    # Distributed runs: every rank measures, the writer (rank 0) prints and writes. Multi-rank
    # gathering plugs into RankContext.gather.
    rank = RankContext.from_env(device)
    global _SPEAK
    _SPEAK = rank.is_writer
    out = Console(quiet=not rank.is_writer, highlight=False)
    err = Console(stderr=True, quiet=not rank.is_writer)

    doc = report.new_document("run", report.environment(device), settings.to_dict())
    if rank.is_writer:
        for path in outputs:  # fail now, not after the first configuration: write the empty file
            try:
                report.write_outputs([path], doc)
            except OSError as exc:
                raise UsageError(f"cannot write --output {path}: {exc.strerror or exc}") from None
    configs = list(iter_configurations(settings))
    runs_per_config = settings.warmup + settings.trials
    out.print(
        f"[bold]streambench run[/bold]: {len(configs)} configuration(s) × "
        f"({settings.warmup} warm-up + {settings.trials} trials) on {device} "
        f"({doc['environment'].get('device_name')})"
    )
    failures = 0

    def plain(line: str) -> None:  # per-token lines of --verbose: no rich markup
        out.print(line, markup=False, highlight=False, soft_wrap=True)

    progress = report.progress_bar(err)

    def save() -> None:
        if rank.is_writer and outputs:
            report.write_outputs(outputs, doc)

    task = progress.add_task("sweep", total=len(configs) * runs_per_config)
    loaded = None
    current_model = None
    load_error: str | None = None
    bad_model = False  # a model that could not be found or read: exit 2 (bad input)
    try:
        with progress, quiet_transformers(settings.verbose):
            for spec, n_in, n_out, batch in configs:
                entry = new_entry(settings, spec.name, n_in, n_out, batch)
                if current_model is not spec:
                    loaded = None
                    gc.collect()
                    current_model, load_error = spec, None
                    progress.update(task, description=f"loading {spec.name}")
                    try:
                        loaded = load_model(spec, settings, device)
                    except KeyboardInterrupt:
                        raise
                    except Exception as exc:  # noqa: BLE001 - recorded as failed configurations
                        if args.debug:
                            traceback.print_exc()
                        if isinstance(exc, UsageError):
                            bad_model = True
                            load_error = str(exc)
                        else:
                            load_error = f"loading {spec.name} failed: {type(exc).__name__}: {exc}"
                        _error(load_error)  # once per model, not once per configuration
                    if loaded is not None:
                        doc["environment"].update(report.library_versions())
                        for note in loaded.notes:
                            _note(f"{spec.name}: {note}")
                progress.update(task, description=entry["label"])
                if loaded is None:
                    entry["status"], entry["error"] = "failed", load_error
                    progress.advance(task, runs_per_config)
                    failures += 1
                    doc["configurations"].append(rank.gather(entry))
                    save()
                    continue
                done = 0

                def on_run(i: int, warm: bool) -> None:
                    nonlocal done
                    done += 1
                    progress.advance(task)

                try:
                    run_configuration(loaded, entry, settings, on_run=on_run, print_fn=plain)
                except KeyboardInterrupt:
                    doc["configurations"].append(rank.gather(entry))
                    raise
                except Exception:  # noqa: BLE001 - recorded in the entry, the sweep goes on
                    if args.debug:
                        traceback.print_exc()
                progress.advance(task, runs_per_config - done)
                if entry["status"] != "ok":
                    failures += 1
                    _error(f"configuration {entry['label']} failed: {entry['error']}")
                doc["configurations"].append(rank.gather(entry))
                save()
                out.print(report.configuration_table(entry))
    except KeyboardInterrupt:
        doc["interrupted"] = True
        save()
        finished = sum(1 for e in doc["configurations"] if e["status"] == "ok")
        _error(
            f"interrupted: {finished} finished configuration(s) kept"
            + (f" in {', '.join(outputs)}" if outputs and rank.is_writer else "")
        )
        return EXIT_INTERRUPTED
    finally:
        loaded = None
        gc.collect()

    if plot_path and rank.is_writer:
        try:
            report.plot_document(doc, plot_path)
            out.print(f"plot written to {plot_path}")
        except (RuntimeError, ValueError) as exc:
            _error(f"--plot: {exc}")
            failures += 1
    if outputs and rank.is_writer:
        out.print("results written to " + ", ".join(outputs))
    if bad_model and failures == len(configs):
        return EXIT_USAGE
    return EXIT_FAILED if failures else EXIT_OK


def cmd_endpoint(args: argparse.Namespace) -> int:
    """``streambench endpoint``: see :func:`streambench.endpoint.cmd_endpoint`."""
    from .endpoint import cmd_endpoint as run_endpoint_command

    return run_endpoint_command(args)


# -- plot, compare -------------------------------------------------------------------------------
def cmd_plot(args: argparse.Namespace) -> int:
    from . import report
    from .sweep import UsageError

    if not args.output.lower().endswith((".png", ".svg", ".pdf")):
        raise UsageError(f"-o {args.output}: use a .png (or .svg, .pdf) file name")
    try:
        doc = report.load_document(args.results)
        report.plot_document(doc, args.output)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except RuntimeError as exc:  # matplotlib missing
        raise UsageError(str(exc)) from None
    print(f"plot written to {args.output}")
    return EXIT_OK


def parse_threshold(text: str) -> float:
    """``"5%"`` or ``"5"`` -> ``0.05`` (a fraction)."""
    from .sweep import UsageError

    raw = str(text).strip().rstrip("%").strip()
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"--threshold {text!r}: write a percentage, e.g. 5%") from None
    if value < 0:
        raise UsageError(f"--threshold {text!r} must not be negative")
    return value / 100.0


def cmd_compare(args: argparse.Namespace) -> int:
    from rich.console import Console

    from . import report
    from .sweep import UsageError

    threshold = parse_threshold(args.threshold)
    try:
        old = report.load_document(args.old)
        new = report.load_document(args.new)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    rows, regressed = report.compare_documents(old, new, threshold)
    console = Console(highlight=False)
    console.print(report.compare_table(rows, threshold))
    if regressed:
        slower = [r.label for r in rows if r.regressed or (r.problem and "NEW" in r.problem)]
        console.print(f"[bold red]regression[/bold red]: {', '.join(slower)}")
        return EXIT_FAILED
    console.print(f"[green]no regression beyond {threshold:.1%}[/green]")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
