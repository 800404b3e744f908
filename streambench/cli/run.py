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
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

__all__ = ["build_parser", "main"]

from .. import terminal
from ..errors import (
    EXIT_FAILED,
    EXIT_USAGE,
    SignalPolicy,
    UsageError,
    describe_exception,
    interrupted_exit_code,
)
from ..results.outputs import WriteFailed
from ..terminal import inert, inert_traceback


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
    from ..version import __version__

    parser.add_argument("--version", action="version", version=f"streambench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    _add_run(sub, common)
    _add_results_commands(sub, common)
    _add_endpoint(sub, common)
    return parser


def _add_results_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """``plot``, ``compare`` and ``report``: the commands that read results files."""
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
            "Ratios NEW/OLD of the first-token and rest-token medians per configuration, each "
            "with a 95%% interval over the trials and a verdict: slower, faster, same or "
            "unclear. Exit 1 when NEW is slower (the whole interval beyond --threshold), a "
            "configuration is missing or failed in NEW, or anything cannot be compared; "
            "unclear passes with a warning (exit 1 with --strict)."
        ),
    )
    compare.add_argument("old", metavar="OLD.json")
    compare.add_argument("new", metavar="NEW.json")
    compare.add_argument(
        "--threshold", default="5%", help="allowed slow-down in percent (default 5%%)"
    )
    compare.add_argument(
        "--ignore",
        metavar="SETTING[,SETTING...]",
        default="",
        help="pair configurations that differ only in these settings (an A/B: "
        "attn_implementation, dtype, engine, ...); each row names what differs",
    )
    compare.add_argument(
        "--strict", action="store_true", help="fail on an unclear verdict too (exit 1)"
    )
    compare.add_argument(
        "--max-quality-drop",
        metavar="PCT",
        help="fail (exit 1) when NEW's perplexity rose, or its agreement fell, by more than PCT "
        "of OLD's (--quality results; one side without quality fails)",
    )
    compare.add_argument(
        "-o",
        "--output",
        metavar="FILE.md",
        help="also write the comparison as Markdown (a pull-request comment) or .html (the "
        "report of both files)",
    )
    compare.set_defaults(func=cmd_compare)

    rep = sub.add_parser(
        "report",
        parents=[common],
        help="one self-contained interactive HTML page of results (several: compared)",
        description=(
            "Write RESULTS (and MORE, compared with the first) as one HTML file that opens "
            "offline: environment, settings, per-token latency and memory, sweeps, served-model "
            "distributions and comparisons, interactive. Needs streambench[report] (plotly)."
        ),
    )
    rep.add_argument("results", nargs="+", metavar="RESULTS.json")
    rep.add_argument("-o", "--output", required=True, metavar="FILE.html")
    rep.add_argument(
        "--threshold", default="5%", help="comparison: allowed slow-down (default 5%%)"
    )
    rep.set_defaults(func=cmd_report)


def _add_endpoint(sub: Any, common: argparse.ArgumentParser) -> None:
    """``endpoint`` (:mod:`streambench.endpoint`) and ``system-check``."""
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
    from .system import add_parser as add_system_parser

    add_system_parser(sub, common)
    from ..endpoint import add_arguments as add_endpoint_arguments

    add_endpoint_arguments(endpoint)
    endpoint.set_defaults(func=cmd_endpoint)


def _add_run(sub: Any, common: argparse.ArgumentParser) -> None:
    """``streambench run``: its options are :data:`streambench.spec.keys.TABLE`'s."""
    from ..spec.keys import add_arguments

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
    add_arguments(run, "run")
    run.set_defaults(func=cmd_run)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``streambench`` command; returns the exit code (see the module
    docstring). SIGTERM and SIGHUP stop a command as Ctrl-C does."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # the deepspeed launcher passes --local_rank=N (without --no_local_rank); LOCAL_RANK has it too
    argv = [a for a in argv if not a.startswith(("--local_rank=", "--local-rank="))]
    debug = "--debug" in argv
    parser = build_parser()
    speaker = _Speaker()
    terminal.guard_messages()  # a library's warning may quote a model's or a file's text
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
                inert_traceback()
            speaker.error(str(exc))
            return EXIT_USAGE
        except WriteFailed as exc:  # a full disk: a failure, not bad input
            speaker.error(str(exc))
            return EXIT_FAILED
        except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, exit 1
            if debug:
                inert_traceback()
            speaker.error(f"{describe_exception(exc)} (run again with --debug for the traceback)")
            return EXIT_FAILED


class _Speaker:
    """Where the command's own messages go; quiet on the ranks of a distributed run that do not
    write (only rank 0 speaks)."""

    def __init__(self) -> None:
        self.speak = True

    def error(self, message: str) -> None:
        if self.speak:
            print(f"streambench: error: {inert(message)}", file=sys.stderr)

    def note(self, message: str) -> None:
        if self.speak:
            print(f"streambench: {inert(message)}", file=sys.stderr)


# -- run ----------------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    """``streambench run``: the sweep; results written after every configuration."""
    from ..spec.run import build_run_settings

    speaker = getattr(args, "speaker", None) or _Speaker()
    settings, outputs, plot_path = build_run_settings(args, speaker.note)
    from ..ranks import RankFacts
    from ..results.output_lock import holding_outputs

    # one writer per output file for the whole run: a second process is refused now (exit 2)
    with holding_outputs(outputs, plot_path, RankFacts.from_env().is_writer):
        return _run_checked(args, speaker, settings, outputs, plot_path)


def _run_checked(
    args: argparse.Namespace, speaker: Any, settings: Any, outputs: list[str], plot: str | None
) -> int:
    """``run`` after its settings were checked and its outputs locked: preflight, then the
    sweep."""
    on_cluster = getattr(args, "ray", None) is not None or bool(getattr(args, "slurm", None))
    # a sweep on a cluster runs its workers on the cluster's nodes: no warm process here
    zygote = None if on_cluster else _prestart(settings, bool(getattr(args, "debug", False)))
    try:
        return _run_preflight(args, speaker, settings, outputs, plot, zygote)
    finally:
        if zygote is not None:
            zygote.stop()  # unused (another device, a refused sweep), or stopped already


def _prestart(settings: Any, debug: bool) -> Any:
    """The warm process of ``--isolate config|model`` (:mod:`streambench.runners.local.warm`),
    started now, so that its imports overlap this process's; ``None`` where the sweep will not
    fork its workers (one configuration, ``--isolate none|fresh|model`` with ``--interleave``,
    a launcher, a device other than the CPU asked for, not Linux)."""
    import sys

    from ..ranks import launched_world_size
    from ..runners.local.plan import iter_plan

    asked = getattr(settings, "isolate", None)
    if asked in ("none", "fresh") or (getattr(settings, "interleave", False) and asked == "model"):
        return None
    if not sys.platform.startswith("linux") or settings.device not in ("auto", "cpu"):
        return None
    if launched_world_size() > 1 or (asked is None and len(list(iter_plan(settings))) < 2):
        return None
    from ..runners.local.warm import Zygote

    return Zygote(debug)


def _run_preflight(
    args: argparse.Namespace,
    speaker: Any,
    settings: Any,
    outputs: list[str],
    plot: str | None,
    zygote: Any,
) -> int:
    from ..engines.transformers.load import check_ipex_available
    from ..runners.local.plan import beam_wrapper_class
    from ..runners.local.workload_prompts import preflight
    from ..spec.models import check_hub_models

    preflight(settings, speaker.note)  # the prompt file against every model: before any load
    if settings.num_beams > 1:
        beam_wrapper_class()
    from ..engines import check_all

    device = check_all(settings)  # every engine checked; the torch device the sweep times on
    if settings.ipex:
        check_ipex_available()
    check_hub_models(settings.models)
    from ..ranks import launched_world_size

    isolate = _isolation(settings, launched_world_size(), device, speaker.note)
    from ..runners.remote.options import remote_options

    on_cluster = getattr(args, "ray", None) is not None or bool(getattr(args, "slurm", None))
    if on_cluster and settings.isolate is None and isolate == "none" and not settings.interleave:
        isolate = "config" if launched_world_size() <= 1 else isolate  # one configuration too
    if on_cluster and settings.interleave:  # the rotation's workers live on this machine
        isolate = "none"  # refused by remote_options, which names both options
    remote = remote_options(args, device, isolate)  # UsageError before anything loads
    resumed = _resume(args, outputs, {**settings.to_dict(), "isolate": isolate}, device)
    if remote is not None:
        from .cluster import run_on_cluster

        return run_on_cluster(
            args, speaker, settings, device, outputs, plot, resumed, isolate, remote
        )
    return _sweep(args, speaker, settings, device, outputs, plot, resumed, isolate, zygote)


def _isolation(settings: Any, world_size: int, device: Any = None, note: Any = None) -> str:
    """``--isolate``: asked for, or ``config`` for sweeps of more than one configuration;
    ``none`` under a launcher (several ranks), where a worker per configuration cannot join the
    process group; with ``--interleave``, forked workers where that is safe, else this process
    (:func:`streambench.runners.local.rotation.check_isolation`)."""
    from ..runners.local.plan import iter_plan

    asked = getattr(settings, "isolate", None)
    if world_size > 1:
        if asked in ("config", "fresh", "model"):
            raise UsageError(
                f"--isolate {asked} does not work under torchrun/deepspeed (several ranks): "
                "use --isolate none"
            )
        return "none"
    from ..runners.local.rotation import check_isolation

    interleaved = check_isolation(settings, asked, device, note)  # --interleave
    if interleaved is not None:
        return interleaved
    if asked is not None:
        return str(asked)
    return "config" if len(list(iter_plan(settings))) > 1 else "none"


def _resume(
    args: argparse.Namespace, outputs: list[str], settings: dict[str, Any], device: Any
) -> dict:
    """``--resume``: the configurations of the first ``-o`` JSON/JSONL file, measured with the
    same settings on this machine (:func:`streambench.runners.run_io.load_resumed`)."""
    if not getattr(args, "resume", False):
        return {}
    from ..results.environment import environment
    from ..runners.run_io import load_resumed

    return load_resumed(outputs, settings, environment(device), "run")


def _sweep(
    args: argparse.Namespace,
    speaker: _Speaker,
    settings: Any,
    device: Any,
    outputs: list[str],
    plot_path: str | None,
    resumed: dict[str, Any],
    isolate: str,
    zygote: Any = None,
) -> int:
    from ..results.environment import environment
    from ..results.schema import new_document
    from ..runners.driver import Driver
    from ..runners.local.plan import RankContext, quiet_transformers
    from ..runners.local.runner import LocalRunner
    from ..runners.local.trials import trials_text

    # Distributed runs: every rank measures, the writer (rank 0) prints and writes.
    rank = RankContext.from_env(device, tp=settings.tp)  # the placement, resolved once
    speaker.speak = rank.is_writer
    out = terminal.console(quiet=not rank.is_writer, highlight=False)
    err = terminal.console(stderr=True, quiet=not rank.is_writer)
    runner = LocalRunner(settings, device, speaker, out, rank, args.debug, isolate=isolate)
    runner.zygote = zygote if isolate in ("config", "model") else None
    runner.skip = set(resumed)  # --interleave rotates the configurations not kept from --resume
    doc = new_document(
        "run", environment(device), {**settings.to_dict(), "isolate": runner.isolate}
    )
    runner.on_environment = doc["environment"].update
    driver = Driver(doc, outputs, speaker, out, err, plot_path, rank.is_writer, resumed)
    from ..runners.run_io import opening_line

    where = f"on {device} ({doc['environment'].get('device_name')})"
    planned = len(runner.plan())
    out.print(opening_line("run", planned, settings.warmup, trials_text(settings), where))
    if rank.is_writer:  # what on this machine makes timings move (~0.15 s); stdout: stderr is
        from .system import summary_line  # kept for errors, one line each

        out.print(summary_line(), markup=False, soft_wrap=True)  # names shown inert
    try:
        with quiet_transformers(settings.verbose):
            return driver.run(runner)
    finally:
        runner.close()


def cmd_endpoint(args: argparse.Namespace) -> int:
    """``streambench endpoint``: see :func:`streambench.endpoint.cmd_endpoint`."""
    from ..endpoint import cmd_endpoint as run_endpoint_command

    return run_endpoint_command(args)


# -- plot, compare, report: the commands that read results files (streambench.cli.results) ---
def cmd_plot(args: argparse.Namespace) -> int:
    from .results import cmd_plot as run

    return run(args)


def cmd_compare(args: argparse.Namespace) -> int:
    """Exit 0 when NEW is not slower; 1 on a regression, anything that could not be compared (the
    gate fails closed) or, with ``--strict``, an unclear verdict; 2 for a bad file or option."""
    from .results import cmd_compare as run

    return run(args)


def cmd_report(args: argparse.Namespace) -> int:
    from .results import cmd_report as run

    return run(args)


def parse_threshold(text: str) -> float:
    """``"5%"`` -> ``0.05``: :func:`streambench.cli.results.parse_threshold`."""
    from .results import parse_threshold as parse

    return parse(text)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
