"""The command line: ``streambench endpoint`` and ``python -m streambench.endpoint``.

:func:`add_arguments` builds the options, :func:`specs_from_args` turns them into validated
:class:`EndpointSpec` objects (one per ``--in-out`` pair), :func:`cmd_endpoint` runs them, prints
a table per configuration and writes the shared results document; :func:`main` is the
``python -m`` entry point (one-line errors, the same exit codes).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from ..errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    exit_code_for_signal,
    interrupted_exit_code,
    signal_name,
)
from .client import describe_error
from .metrics import EndpointResult
from .records import RequestRecord
from .results import endpoint_table, environment, request_line, to_entry
from .runner import EndpointBenchmark
from .scrub import scrub_argv, scrub_text
from .signals import signal_policy
from .spec import (
    DEFAULT_API_KEY_ENV,
    MAX_IN_OUT_PAIRS,
    EndpointError,
    EndpointSpec,
    parse_slo,
)
from .tokens import load_tokenizer


def add_arguments(parser: Any) -> None:
    """Add the ``endpoint`` options to an ``argparse`` parser (``streambench endpoint`` and
    ``python -m streambench.endpoint``)."""
    parser.add_argument(
        "url", metavar="URL", help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1"
    )
    parser.add_argument("--model", required=True, help="model name sent in each request")
    parser.add_argument(
        "--chat", action="store_true", help="stream /chat/completions (default /completions)"
    )
    parser.add_argument(
        "--in-out",
        default="32-32",
        metavar="IN-OUT[,...]",
        help="prompt tokens-forced output tokens pairs, e.g. 32-32,512-128 (default 32-32)",
    )
    parser.add_argument(
        "--requests", type=int, default=10, metavar="N", help="measured requests (default 10)"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=1,
        metavar="N",
        help="warm-up requests, sent one at a time, not measured (default 1)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        metavar="N",
        help="most requests in flight (default 1; 64 with --request-rate)",
    )
    parser.add_argument(
        "--request-rate",
        type=float,
        default=None,
        metavar="R",
        help="Poisson arrivals at R requests/s (seeded); default: as fast as --concurrency allows",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of prompts and arrivals (default 0)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds per request, connect to last byte (default 60)",
    )
    parser.add_argument(
        "--api-key",
        default=None,
        help=f"bearer token; default: the environment variable ${DEFAULT_API_KEY_ENV} "
        "(prefer it: a key on the command line is visible to other users)",
    )
    parser.add_argument(
        "--api-key-env",
        default=None,
        metavar="VAR",
        help=f"environment variable holding the key (default {DEFAULT_API_KEY_ENV}, used when "
        "set; a variable named here must be set and not empty)",
    )
    parser.add_argument(
        "--tokenizer",
        default=None,
        metavar="DIR",
        help="local tokenizer directory: exact prompt lengths and per-chunk token counts",
    )
    parser.add_argument(
        "--force-output",
        choices=("auto", "on", "off"),
        default="auto",
        help="send ignore_eos and min_tokens to force the output length; auto (default) drops "
        "them when the server refuses them",
    )
    parser.add_argument(
        "--extra-body",
        default=None,
        metavar="JSON",
        help="JSON object merged into every request (server-specific options)",
    )
    parser.add_argument(
        "--prompt", default=None, help="send this text instead of generated prompts"
    )
    parser.add_argument(
        "--slo",
        default=None,
        metavar="KEY=TIME,...",
        help="goodput thresholds: ttft, tpot, itl, e2e, e.g. ttft=200ms,tpot=50ms",
    )
    parser.add_argument(
        "-o",
        "--output",
        action="append",
        metavar="FILE",
        help="write results; format by extension: .csv .json .jsonl .md (repeatable)",
    )
    parser.add_argument("--plot", metavar="FILE.png", help="plot per-token latency")
    parser.add_argument("-v", "--verbose", action="store_true", help="print one line per request")


def specs_from_args(args: Any) -> list[EndpointSpec]:
    """One validated :class:`EndpointSpec` per ``--in-out`` pair (:class:`EndpointError`, one
    line naming the option, for anything out of bounds)."""
    from ..local_run import parse_in_out

    extra = _extra_body(args.extra_body)
    slo = parse_slo(args.slo)
    api_key, key_env = _api_key(args)
    pairs = parse_in_out(args.in_out)
    if len(pairs) > MAX_IN_OUT_PAIRS:
        raise EndpointError(f"--in-out: {len(pairs)} pairs; at most {MAX_IN_OUT_PAIRS}")
    for name in ("requests", "warmup", "concurrency", "timeout", "request_rate"):
        value = getattr(args, name, None)
        if isinstance(value, float) and not math.isfinite(value):
            raise EndpointError(f"--{name.replace('_', '-')} {value}: expected a finite number")
    return [
        EndpointSpec(
            url=args.url,
            model=args.model,
            chat=args.chat,
            prompt_tokens=n_in,
            output_tokens=n_out,
            requests=args.requests,
            warmup=args.warmup,
            concurrency=args.concurrency,
            request_rate=args.request_rate,
            timeout_s=args.timeout,
            seed=args.seed,
            force=args.force_output,
            tokenizer=args.tokenizer,
            extra_body=extra,
            slo=slo,
            api_key=api_key,
            api_key_env=key_env or DEFAULT_API_KEY_ENV,
            prompt=args.prompt,
        ).validate()
        for n_in, n_out in pairs
    ]


def _extra_body(text: str | None) -> dict[str, Any]:
    """``--extra-body``: a strict JSON object (no NaN/Infinity), ``{}`` when not given."""
    if not text:
        return {}

    def constant(name: str) -> Any:
        raise ValueError(f"{name} is not a number in strict JSON")

    try:
        extra = json.loads(text, parse_constant=constant)
    except (ValueError, RecursionError) as exc:
        raise EndpointError(f"--extra-body is not JSON: {scrub_text(str(exc))}") from None
    if not isinstance(extra, dict):
        raise EndpointError("--extra-body must be a JSON object, e.g. '{\"top_k\": 1}'")
    return extra


def _api_key(args: Any) -> tuple[str | None, str | None]:
    """(``--api-key``, ``--api-key-env``), checked: a key given is not empty, a variable named is
    a name, set and not empty."""
    api_key = args.api_key
    key_env = getattr(args, "api_key_env", None)
    if api_key is not None and not api_key.strip():
        raise EndpointError("--api-key is empty: give the key, or drop --api-key")
    if api_key is None and key_env is not None:
        if not key_env or "=" in key_env or "\0" in key_env:
            raise EndpointError(f"--api-key-env {key_env!r}: not an environment variable name")
        value = os.environ.get(key_env)
        if value is None or not value.strip():
            state = "not set" if value is None else "empty"
            raise EndpointError(
                f"--api-key-env {key_env}: the environment variable ${key_env} is {state}; "
                f"export {key_env}=<key>, or drop --api-key-env to send no key"
            )
    return api_key, key_env


def cmd_endpoint(args: Any) -> int:
    """``streambench endpoint``: benchmark every ``--in-out`` pair against URL, print a table per
    pair, write ``--output`` files after each (atomically) and ``--plot`` at the end.

    Every input is checked before anything is sent: options (bounds), the URL, the key variable,
    the ``--output`` and ``--plot`` targets (:func:`streambench.outputs.check_output_targets`).
    An existing results file is replaced only once there is something to write.

    Exit codes: 0 every measured request succeeded; 1 some failed, or an output could not be
    written (the failures are counted and reported, the results kept); 2 bad input; 128 + the
    signal when interrupted (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP; finished requests written,
    ``"interrupted": true``). Runs under the :class:`~streambench.errors.SignalPolicy` in force,
    or installs one."""
    import signal

    with signal_policy():
        specs = specs_from_args(args)
        outputs = _checked_outputs(args, specs)
        command = _EndpointCommand(args, specs, outputs)
        command.announce()
        signum = command.run_configurations()
        if signum is not None or command.doc["interrupted"]:
            return command.interrupted(signum or int(signal.SIGINT))
        return command.finish()


def _checked_outputs(args: Any, specs: list[EndpointSpec]) -> list[str]:
    """The ``--output`` paths, after checking them and the ``--plot`` target (writable, a known
    format, not the tokenizer's folder) before anything is sent."""
    from .. import report
    from ..outputs import check_output_targets

    outputs = [str(o) for o in (args.output or [])]
    protected = [("tokenizer", specs[0].tokenizer)] if specs[0].tokenizer else []
    check_output_targets(
        outputs, option="--output", formats=tuple(report.OUTPUT_FORMATS), protected=protected
    )
    if args.plot:
        check_output_targets(
            [str(args.plot)], option="--plot", formats=(".png", ".svg", ".pdf"), protected=protected
        )
    return outputs


class _EndpointCommand:
    """One ``streambench endpoint`` invocation: the results document it fills (``doc``), the
    consoles and the progress bar, and what went wrong (failed requests, unwritable outputs)."""

    def __init__(self, args: Any, specs: list[EndpointSpec], outputs: list[str]) -> None:
        from rich.console import Console

        from .. import report

        self.args = args
        self.specs = specs
        self.outputs = outputs
        self.tokenizer = load_tokenizer(specs[0].tokenizer)
        self.secrets = specs[0].secrets()
        self.out = Console(highlight=False)
        self.err = Console(stderr=True)
        settings = specs[0].to_dict()
        for key in ("prompt_tokens", "output_tokens"):
            settings.pop(key)
        settings["in_out"] = [f"{s.prompt_tokens}-{s.output_tokens}" for s in specs]
        self.settings = settings
        self.doc = report.new_document("endpoint", environment(specs[0]), settings)
        self.failed = 0  # failed measured requests, and a plot that could not be written
        self.write_failed: list[str] = []

    def announce(self) -> None:
        """The first line: what is sent where, and the most it can take (seconds)."""
        first = self.specs[0]
        bound = sum(spec.max_duration_s for spec in self.specs)
        self.out.print(
            f"[bold]streambench endpoint[/bold]: {len(self.specs)} configuration(s) x "
            f"({first.warmup} warm-up + {first.requests} requests) against "
            f"{self.settings['endpoint']}, concurrency {first.max_in_flight}"
            + (f", {first.request_rate:g} requests/s" if first.request_rate else "")
            + f"; at most {bound:g} s",
            markup=True,
        )

    def run_configurations(self) -> int | None:
        """Run every configuration in turn, each recorded and written as it finishes; returns
        the signal that interrupted them, ``None`` when all ran."""
        import signal

        from .. import report

        progress = report.progress_bar(self.err)
        per_config = self.specs[0].warmup + self.specs[0].requests
        task = progress.add_task("requests", total=len(self.specs) * per_config)

        def on_request(rec: RequestRecord) -> None:
            # Runs inside the event loop while other requests stream: keep it cheap (no printing;
            # --verbose lines are printed after each configuration, with the final token counts).
            if rec.index >= 0:
                progress.advance(task)

        signum: int | None = None
        bench: EndpointBenchmark | None = None
        added = False
        try:
            with progress:
                for spec in self.specs:
                    progress.update(task, description=f"{spec.prompt_tokens}-{spec.output_tokens}")
                    bench, added = None, False
                    bench = EndpointBenchmark(spec, on_request=on_request, tokenizer=self.tokenizer)
                    result = bench.run()
                    added = True
                    self.add(result)
                    self.save()
                    if result.interrupted:
                        signum = result.interrupt_signal or int(signal.SIGINT)
                        break
        except KeyboardInterrupt as exc:  # a signal outside a run (between runs, while writing)
            signum = getattr(exc, "signum", int(signal.SIGINT))
            self.doc["interrupted"] = True
            if bench is not None and not added:
                bench.interrupted, bench.interrupt_signal = True, signum
                self.add(bench.result())
            self.save()
        return signum

    def add(self, result: EndpointResult) -> None:
        """Record a finished (or interrupted) configuration; an interrupted one without any
        finished measured request adds nothing."""
        if result.interrupted:
            self.doc["interrupted"] = True
            if not any(not r.warmup for r in result.records):
                return
        entry = to_entry(result)
        self.doc["configurations"].append(entry)
        self.failed += result.summary.failed
        if self.args.verbose:
            for rec in result.records:
                self.out.print(request_line(rec), markup=False, highlight=False)
        self.out.print(endpoint_table(entry))

    def save(self) -> None:
        """Write every output, each atomically; only when there is something to write."""
        from .. import report

        if not self.outputs or not self.doc["configurations"]:
            return
        for path in self.outputs:
            try:
                report.write_outputs([path], self.doc)
            except OSError as exc:
                message = f"cannot write --output {path}: {exc.strerror or describe_error(exc)}"
                if message not in self.write_failed:
                    self.write_failed.append(message)
                    line = scrub_text(message, self.secrets)
                    print(f"streambench: error: {line}", file=sys.stderr)

    def interrupted(self, signum: int) -> int:
        """Say what was kept after an interruption by ``signum``; its exit code (128 + signum)."""
        outputs, doc = self.outputs, self.doc
        written = outputs and doc["configurations"] and not self.write_failed
        if written:
            where = f": finished requests kept in {', '.join(outputs)}"
        elif outputs and not doc["configurations"]:
            where = " before any request finished: nothing written"
        else:
            where = ": finished requests kept" if not outputs else ""
        print(f"streambench: error: interrupted ({signal_name(signum)}){where}", file=sys.stderr)
        return exit_code_for_signal(signum)

    def finish(self) -> int:
        """After every configuration ran: the ``--plot``, where results went, the exit code."""
        from .. import report

        plot = self.args.plot
        if plot:
            try:
                report.plot_document(self.doc, plot)
                self.out.print(f"plot written to {plot}")
            except (RuntimeError, ValueError, OSError) as exc:
                reason = scrub_text(describe_error(exc, with_type=False), self.secrets)
                print(f"streambench: error: --plot {plot}: {reason}", file=sys.stderr)
                self.failed += 1
        if self.outputs and not self.write_failed:
            self.out.print("results written to " + ", ".join(self.outputs))
        return EXIT_FAILED if self.failed or self.write_failed else EXIT_OK


def _parser() -> Any:
    """The ``python -m streambench.endpoint`` parser; its errors are one line (a
    :class:`UsageError`: exit 2), not a usage block."""
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> Any:  # type: ignore[override]
            raise UsageError(f"{message} (see --help)")

    parser = Parser(
        prog="python -m streambench.endpoint",
        description="Benchmark an OpenAI-compatible streaming endpoint (TTFT, TPOT, ITL, E2E).",
    )
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m streambench.endpoint URL --model NAME [options]``: the same as
    ``streambench endpoint``, with the same exit codes (0 ok, 1 failed, 2 bad input, 128 + signal
    when interrupted) and one-line errors (``streambench: error: ...``, no traceback, no
    secret). Runs under a :class:`~streambench.errors.SignalPolicy`."""
    argv = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
    with signal_policy():
        try:
            return cmd_endpoint(_parser().parse_args(argv))
        except UsageError as exc:
            _error(str(exc), argv)
            return EXIT_USAGE
        except KeyboardInterrupt as exc:
            code = interrupted_exit_code(exc)
            _error(f"interrupted ({signal_name(code - 128)})", argv)
            return code
        except Exception as exc:  # noqa: BLE001 - one line, never a traceback
            _error(describe_error(exc), argv)
            return EXIT_FAILED


def _error(message: str, argv: Sequence[str] = ()) -> None:
    """One line on stderr, with every secret masked (also those given in ``argv``)."""
    line = " ".join(scrub_text(message, _argv_secrets(argv)).split())
    print(f"streambench: error: {line}", file=sys.stderr)


def _argv_secrets(argv: Sequence[str]) -> list[str]:
    """Secret values given on a command line (what :func:`scrub_argv` hides, URL passwords) and
    the keys in the environment variables it names."""
    argv = [str(a) for a in argv]
    found: list[str] = [os.environ.get(DEFAULT_API_KEY_ENV, "")]
    for i, (raw, clean) in enumerate(zip(argv, scrub_argv(argv))):
        if clean == "***":
            found.append(raw)
        elif clean.endswith("=***") and not raw.endswith("=***"):
            found.append(raw.partition("=")[2])
        if raw == "--api-key-env" and i + 1 < len(argv):
            found.append(os.environ.get(argv[i + 1], ""))
        elif raw.startswith("--api-key-env="):
            found.append(os.environ.get(raw.partition("=")[2], ""))
        with contextlib.suppress(ValueError):
            password = urlsplit(raw).password
            if password:
                found.append(password)
    return [f for f in found if f]
