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

from ..driver import Planned
from ..errors import (
    EXIT_FAILED,
    EXIT_USAGE,
    Interrupted,
    UsageError,
    interrupted_exit_code,
    signal_name,
)
from ..numtext import whole_arg
from ..terminal import inert, inert_markup
from ..workloads.options import coerce as coerce_workload
from ..workloads.options import workload_from
from . import loadcli
from .client import describe_error
from .loadcli import add_load_arguments
from .metrics import EndpointResult
from .records import RequestRecord
from .results import endpoint_table, environment, length_note, request_line, to_entry
from .runner import EndpointBenchmark
from .scrub import scrub_argv, scrub_text
from .signals import signal_policy
from .spec import (
    DEFAULT_API_KEY_ENV,
    MAX_IN_OUT_PAIRS,
    MAX_REQUESTS,
    EndpointError,
    EndpointSpec,
    parse_slo,
)
from .sweeps import duration_text, finish_search, make_search, point_failed, sweep_settings
from .tokens import load_tokenizer
from .transport import header_values_in_argv
from .workload import with_requests


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
        default=None,
        metavar="IN-OUT[,...]",
        help="prompt tokens-forced output tokens pairs, e.g. 32-32,512-128 (default 32-32)",
    )
    parser.add_argument(
        "--requests",
        type=whole_arg,
        default=None,
        metavar="N",
        help="measured requests per point (default 10; with --prompts: every selected prompt "
        "once; with --duration only a cap)",
    )
    parser.add_argument(
        "--warmup",
        type=whole_arg,
        default=1,
        metavar="N",
        help="warm-up requests, sent one at a time, not measured (default 1)",
    )
    parser.add_argument(
        "--concurrency",
        default=None,
        metavar="N[,...]",
        help="most requests in flight (default 1; 64 with --request-rate, inf included); a list "
        "is a sweep axis",
    )
    parser.add_argument(
        "--request-rate",
        default=None,
        metavar="R[,...]",
        help="arrivals at R requests/s (seeded; see --arrivals); inf: every request at once, "
        "up to --concurrency (64 unless given); a list is a sweep axis. Without it: one "
        "request after another, up to --concurrency (default 1)",
    )
    parser.add_argument(
        "--seed", type=whole_arg, default=0, help="seed of prompts and arrivals (default 0)"
    )
    parser.add_argument(
        "--timeout",
        default="60",
        metavar="TIME",
        help="per request, connect to last byte (default 60 s; a bare number is seconds)",
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
        "--trust-remote-code",
        action="store_true",
        help="let the --tokenizer directory's own Python code run (off by default: such a "
        "tokenizer is refused, never asked about)",
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
        help="JSON object merged into every request (server-specific options; not the fields "
        "streambench sets itself: model, stream, max_tokens, prompt/messages, ignore_eos, "
        "min_tokens, stream_options)",
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
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the load points already ok in the first -o .json/.jsonl file (same settings; "
        "the rates, concurrencies and in-out pairs may differ) and measure only the rest",
    )
    from ..workloads.options import add_arguments as add_workload_arguments

    add_workload_arguments(parser, "endpoint")
    add_load_arguments(parser)


def specs_from_args(args: Any) -> list[EndpointSpec]:
    """One validated :class:`EndpointSpec` per ``--in-out`` pair (:class:`EndpointError`, one
    line naming the option, for anything out of bounds)."""
    from ..local_run import parse_in_out

    extra = _extra_body(args.extra_body)
    slo = parse_slo(args.slo)
    api_key, key_env = _api_key(args)
    workload = workload_from(coerce_workload(args), in_out_given=args.in_out is not None)
    pairs = parse_in_out(args.in_out or "32-32")
    if len(pairs) > MAX_IN_OUT_PAIRS:
        raise EndpointError(f"--in-out: {len(pairs)} pairs; at most {MAX_IN_OUT_PAIRS}")
    for name in ("requests", "warmup"):
        value = getattr(args, name, None)
        if isinstance(value, float) and not math.isfinite(value):
            raise EndpointError(f"--{name.replace('_', '-')} {value}: expected a finite number")
    load = loadcli.load_settings(args)
    requests = args.requests
    if requests is None:
        requests = MAX_REQUESTS if load.duration_s is not None else 10
    timeout_s = loadcli.time_option("--timeout", args.timeout)
    rates, concurrencies = loadcli.axes(args)
    if workload is not None and workload.uses_file:
        pairs = [(1, workload.max_output_len)]  # lengths from the data (set with the requests)
    specs = [
        EndpointSpec(
            url=args.url,
            model=args.model,
            chat=args.chat,
            prompt_tokens=n_in,
            output_tokens=n_out,
            requests=requests,
            warmup=args.warmup,
            concurrency=concurrencies[0],
            request_rate=rates[0],
            timeout_s=timeout_s,
            seed=args.seed,
            force=args.force_output,
            tokenizer=args.tokenizer,
            trust_remote_code=getattr(args, "trust_remote_code", False) is True,
            extra_body=extra,
            slo=slo,
            api_key=api_key,
            api_key_env=key_env or DEFAULT_API_KEY_ENV,
            prompt=args.prompt,
            workload=workload,
            load=load,
            transport=loadcli.transport(args),
        ).validate()
        for n_in, n_out in pairs
    ]
    if workload is not None and args.prompt is not None:
        raise EndpointError("--prompt sends one text; it does not combine with the workload "
                            "options (--prompts, --length-spread ...)")  # fmt: skip
    if workload:
        specs = [with_requests(spec, args.requests) for spec in specs]
    return loadcli.expand(specs, rates, concurrencies)


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
    """``streambench endpoint``: benchmark every ``--in-out`` pair against URL, through the one
    sweep driver (:mod:`streambench.driver`): a table per pair, ``--output`` files written after
    each (atomically), ``--plot`` at the end.

    Every input is checked before anything is sent: options (bounds), the URL, the key variable,
    the ``--output`` and ``--plot`` targets (:func:`streambench.outputs.check_output_targets`).
    An existing results file is replaced only once there is something to write.

    Exit codes: 0 every measured request succeeded; 1 some failed, or an output could not be
    written (the failures are counted and reported, the results kept); 2 bad input; 128 + the
    signal when interrupted (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP; finished requests written,
    ``"interrupted": true``). Runs under the :class:`~streambench.errors.SignalPolicy` in force,
    or installs one."""
    from ..output_lock import holding_outputs

    with signal_policy():
        specs = specs_from_args(args)
        outputs = _checked_outputs(args, specs)
        with holding_outputs(outputs, args.plot):  # a second writer is refused (exit 2)
            return _run_sweep(args, specs, outputs)


def _run_sweep(args: Any, specs: list[EndpointSpec], outputs: list[str]) -> int:
    """The endpoint sweep, its outputs checked and locked."""
    from .. import report, terminal
    from ..driver import Driver

    sweep = EndpointSweep(args, specs)
    doc = report.new_document("endpoint", environment(specs[0]), sweep.settings)
    resumed = _resumed(args, outputs, sweep, doc["environment"])
    out = terminal.console(highlight=False)  # a server's text is shown, never obeyed
    err = terminal.console(stderr=True)
    driver = Driver(doc, outputs, sweep, out, err, args.plot, resumed=resumed)
    sweep.announce(out)
    code = driver.run(sweep)
    if sweep.search is None:
        return code
    return finish_search(sweep.search, driver, out, code)


def _resumed(
    args: Any, outputs: list[str], sweep: EndpointSweep, env: dict[str, Any]
) -> dict[str, Any]:
    """``--resume``: the configurations of the first ``-o`` JSON/JSONL file, by id
    (:func:`streambench.driver.load_resume`: written with the same settings, apart from the
    sweep's axes, from this machine with the same versions)."""
    if not getattr(args, "resume", False):
        return {}
    from ..driver import load_resume

    if sweep.search is not None:
        raise EndpointError(
            "--resume does not combine with --find-max-rate: each rate of a search depends on "
            "the points before it; run the search again"
        )
    sources = [o for o in outputs if o.lower().endswith((".json", ".jsonl"))]
    if not sources:
        raise EndpointError("--resume needs an -o FILE.json or FILE.jsonl to resume from")
    return load_resume(sources[0], sweep.settings, env, command="endpoint")


def _checked_outputs(args: Any, specs: list[EndpointSpec]) -> list[str]:
    """The ``--output`` paths, after checking them and the ``--plot`` target (writable, a known
    format, none of the run's inputs: the tokenizer, the prompts file, the CA bundle) before
    anything is sent."""
    from .. import report
    from ..outputs import RunInputs, check_output_targets

    outputs = [str(o) for o in (args.output or [])]
    workload = specs[0].workload
    protected = RunInputs(
        [
            ("tokenizer", specs[0].tokenizer),
            ("prompts file", workload.prompts if workload is not None else None),
            ("CA bundle", getattr(args, "ca_bundle", None)),
        ]
    )
    check_output_targets(
        outputs, option="--output", formats=tuple(report.OUTPUT_FORMATS), protected=protected
    )
    from ..results.html import check_html_outputs

    check_html_outputs(outputs, "--output")
    if args.plot:
        check_output_targets(
            [str(args.plot)], option="--plot", formats=(".png", ".svg", ".pdf"), protected=protected
        )
    return outputs


class EndpointSweep:
    """The :class:`streambench.driver.Runner` of ``streambench endpoint``: one configuration per
    :class:`EndpointSpec`, measured by :class:`EndpointBenchmark`. It is also the driver's speaker:
    every message is scrubbed of secrets."""

    def __init__(self, args: Any, specs: list[EndpointSpec]) -> None:
        self.args = args
        self.specs = specs
        self.tokenizer = load_tokenizer(specs[0].tokenizer, specs[0].trust_remote_code)
        self.secrets = specs[0].secrets()
        settings = specs[0].to_dict()
        for key in ("prompt_tokens", "output_tokens"):
            settings.pop(key)
        if specs[0].workload is not None and specs[0].workload.uses_file:
            settings["in_out"] = []
        else:
            settings["in_out"] = sorted({f"{s.prompt_tokens}-{s.output_tokens}" for s in specs})
        self.search = make_search(args, specs[0])
        settings.update(sweep_settings(args, specs, self.search))
        self.settings = settings
        self.usage_failures = 0
        self.tolerant = loadcli.is_load_sweep(args)  # failed requests are results
        self._failed: set[int] = set()  # id() of entries with failed requests
        self._length_noted = False

    # -- speaker -------------------------------------------------------------------------------
    def error(self, message: str) -> None:
        print(f"streambench: error: {inert(scrub_text(message, self.secrets))}", file=sys.stderr)

    def note(self, message: str) -> None:
        print(f"streambench: {inert(scrub_text(message, self.secrets))}", file=sys.stderr)

    def kept_message(self, written: list[str], untouched: list[str], finished: int) -> str:
        if written:
            return f"finished requests kept in {', '.join(written)}"
        if untouched:
            return "before any request finished: nothing written"
        return "finished requests kept"

    # -- runner --------------------------------------------------------------------------------
    def announce(self, out: Any) -> None:
        """The first line: what is sent where, and about how long it takes (the worst-case
        bound with --verbose: :func:`~streambench.endpoint.sweeps.duration_text`)."""
        first = self.specs[0]
        if self.search is not None:
            st = self.search.settings
            load = (
                f"capacity search over {st.low:g}-{st.high:g} requests/s (at most "
                f"{st.max_points} points), concurrency {first.max_in_flight}"
            )
        else:
            rates = sorted({s.request_rate for s in self.specs if s.request_rate is not None})
            shown = [f"{r:g}" for r in rates]
            if self.args.request_rate is not None and len(rates) < len(
                {s.request_rate for s in self.specs}
            ):
                shown.append("inf")  # asked for: every request at once
            load = "concurrency " + ",".join(
                str(c) for c in dict.fromkeys(s.max_in_flight for s in self.specs)
            )
            load += f", {','.join(shown)} requests/s" if shown else ""
        when = duration_text(self.specs, self.search, bool(self.args.verbose))
        out.print(
            f"[bold]streambench endpoint[/bold]: {len(self.specs)} configuration(s) x "
            f"({first.warmup} warm-up + {self._measured_text(first)}) against "
            f"{inert_markup(self.settings['endpoint'])}, {load}" + (f"; {when}" if when else ""),
            markup=True,
        )

    def _measured_text(self, spec: EndpointSpec) -> str:
        """What each point measures: ``N requests``, or with ``--duration`` the time (and the
        ``--requests`` cap only when given)."""
        duration = spec.load.duration_s
        if duration is None:
            return f"{spec.requests} requests"
        cap = f", at most {spec.requests} requests" if self.args.requests is not None else ""
        return f"requests for {duration:g} s{cap}"

    def plan(self) -> Any:
        """The configurations: a list, or (a capacity search) a lazy plan, one rate at a time."""
        from .capacity import search_plan
        from .results import configuration_id

        def planned(spec: EndpointSpec) -> Planned:
            return Planned(*configuration_id(spec), spec.warmup + spec.requests, spec)

        if self.search is not None:
            return search_plan(self.search, planned)
        return [planned(spec) for spec in self.specs]

    def measure(self, planned: Planned, advance: Any, keep: Any) -> Any:
        """Run one configuration; an interrupted one is kept (when a measured request finished)
        and the interruption raised again."""
        import signal

        def on_request(rec: RequestRecord) -> None:
            # Runs inside the event loop while other requests stream: keep it cheap.
            if rec.index >= 0:
                advance(1)

        bench = EndpointBenchmark(planned.item, on_request=on_request, tokenizer=self.tokenizer)
        try:
            result = bench.run()
        except KeyboardInterrupt as exc:  # a signal outside the event loop's own handling
            bench.interrupted = True
            bench.interrupt_signal = getattr(exc, "signum", int(signal.SIGINT))
            result = bench.result()
        entry = self._entry(result)
        if self.search is not None and not result.interrupted:
            self.search.record(planned.id, result)
        if result.interrupted:
            if entry is not None:
                keep(entry)
            raise Interrupted(result.interrupt_signal or int(signal.SIGINT))
        return entry

    def _entry(self, result: EndpointResult) -> Any:
        if result.interrupted and not any(not r.warmup for r in result.records):
            return None  # nothing measured: nothing to keep
        entry = to_entry(result)
        note = None if self._length_noted else length_note(entry, result.spec)
        if note:  # once per run: every point has the same cause and fix
            self._length_noted = True
            self.note(note)
        if point_failed(result, self.tolerant):
            self._failed.add(id(entry))
        if self.args.verbose:
            for rec in result.records:
                print(inert(request_line(rec)))
        return entry

    def failed(self, entry: Any) -> bool:
        return id(entry) in self._failed

    def table(self, entry: Any) -> Any:
        return endpoint_table(entry)


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
    print(f"streambench: error: {inert(line)}", file=sys.stderr)


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
    found += header_values_in_argv(argv)
    return [f for f in found if f]
