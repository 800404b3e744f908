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
    EXIT_USAGE,
    UsageError,
    interrupted_exit_code,
    signal_name,
)
from ..numtext import whole_arg
from ..spec.config import parse_in_out_text
from ..terminal import inert
from ..workloads.options import coerce as coerce_workload
from ..workloads.options import workload_from
from . import loadcli, replaycli
from .client import describe_error
from .loadcli import add_load_arguments
from .quality import add_quality_arguments
from .scrub import scrub_argv, scrub_text
from .server_metrics import metrics_url
from .signals import signal_policy
from .spec import (
    DEFAULT_API_KEY_ENV,
    MAX_IN_OUT_PAIRS,
    MAX_REQUESTS,
    EndpointError,
    EndpointSpec,
    parse_slo,
)
from .transport import header_values_in_argv
from .workload import with_requests

#: the ``endpoint`` options besides the load options (:mod:`.loadcli`) and the workload options
#: (:mod:`streambench.workloads.options`), in ``--help`` order: ``(flags, add_argument keywords)``
OPTIONS: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = (
    (("url",), dict(metavar="URL", help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")),
    (("--model",), dict(required=True, help="model name sent in each request")),
    (("--chat",), dict(action="store_true", help="stream /chat/completions (default "
        "/completions)")),
    (("--backend",), dict(default="openai", metavar="NAME", help="served backend: how requests "
        "are built and streams read (default openai: OpenAI-compatible servers; others from "
        "installed packages, entry-point group streambench.backends)")),
    (("--in-out",), dict(default=None, metavar="IN-OUT[,...]", help="prompt tokens-forced output "
        "tokens pairs, e.g. 32-32,512-128 (default 32-32)")),
    (("--requests",), dict(type=whole_arg, default=None, metavar="N", help="measured requests per "
        "point (default 10; with --prompts: every selected prompt once; with --duration only a "
        "cap)")),
    (("--warmup",), dict(type=whole_arg, default=1, metavar="N", help="warm-up requests, sent one "
        "at a time, not measured (default 1)")),
    (("--concurrency",), dict(default=None, metavar="N[,...]", help="most requests in flight "
        "(default 1; 64 with --request-rate, inf included); a list is a sweep axis")),
    (("--request-rate",), dict(default=None, metavar="R[,...]", help="arrivals at R requests/s "
        "(seeded; see --arrivals); inf: every request at once, up to --concurrency (64 unless "
        "given); a list is a sweep axis. Without it: one request after another, up to "
        "--concurrency (default 1)")),
    (("--seed",), dict(type=whole_arg, default=0, help="seed of prompts and arrivals (default 0)")),
    (("--timeout",), dict(default="60", metavar="TIME", help="per request, connect to last byte "
        "(default 60 s; a bare number is seconds)")),
    (("--api-key",), dict(default=None, help="bearer token; default: the environment variable "
        f"${DEFAULT_API_KEY_ENV} (prefer it: a key on the command line is visible to other "
        "users)")),
    (("--api-key-env",), dict(default=None, metavar="VAR", help="environment variable holding the "
        f"key (default {DEFAULT_API_KEY_ENV}, used when set; a variable named here must be set "
        "and not empty)")),
    (("--tokenizer",), dict(default=None, metavar="DIR", help="local tokenizer directory: exact "
        "prompt lengths and per-chunk token counts")),
    (("--trust-remote-code",), dict(action="store_true", help="let the --tokenizer directory's own "
        "Python code run (off by default: such a tokenizer is refused, never asked about)")),
    (("--force-output",), dict(choices=("auto", "on", "off"), default="auto", help="send "
        "ignore_eos and min_tokens to force the output length; auto (default) drops them when "
        "the server refuses them")),
    (("--extra-body",), dict(default=None, metavar="JSON", help="JSON object merged into every "
        "request (server-specific options; not the fields streambench sets itself: model, "
        "stream, max_tokens, prompt/messages, ignore_eos, min_tokens, stream_options)")),
    (("--prompt",), dict(default=None, help="send this text instead of generated prompts")),
    (("--slo",), dict(default=None, metavar="KEY=TIME,...", help="goodput thresholds: ttft, tpot, "
        "itl, e2e, ttfo (first visible output token), e.g. ttft=200ms,tpot=50ms")),
    (("-o", "--output"), dict(action="append", metavar="FILE", help="write results; format by "
        "extension: .csv .json .jsonl .md (repeatable)")),
    (("--plot",), dict(metavar="FILE.png", help="plot per-token latency")),
    (("-v", "--verbose"), dict(action="store_true", help="print one line per request")),
    (("--resume",), dict(action="store_true", help="keep the load points already ok in the first "
        "-o .json/.jsonl file (same settings; the rates, concurrencies and in-out pairs may "
        "differ) and measure only the rest")),
    (("--server-metrics",), dict(nargs="?", const="auto", default=None, metavar="URL",
        help="scrape the server's Prometheus metrics every 0.5 s during each load point (KV "
        "usage, running/waiting requests, prefix-cache hits, preemptions; vLLM, SGLang, TGI); "
        "URL default: /metrics beside the API base")),
)  # fmt: skip


def add_arguments(parser: Any) -> None:
    """Add the ``endpoint`` options to an ``argparse`` parser (``streambench endpoint`` and
    ``python -m streambench.endpoint``): :data:`OPTIONS`, the workload options, then the load
    options (:func:`~streambench.endpoint.loadcli.add_load_arguments`)."""
    from ..workloads.options import add_arguments as add_workload_arguments

    for flags, keywords in OPTIONS:
        parser.add_argument(*flags, **keywords)
    add_workload_arguments(parser, "endpoint")
    add_load_arguments(parser)
    replaycli.add_replay_arguments(parser)
    add_quality_arguments(parser)


def specs_from_args(args: Any) -> list[EndpointSpec]:
    """One validated :class:`EndpointSpec` per ``--in-out`` pair (:class:`EndpointError`, one
    line naming the option, for anything out of bounds)."""
    from .backends import get_backend

    backend = getattr(args, "backend", None) or "openai"
    get_backend(backend)  # an unknown --backend first: the other options are sent through it
    extra = _extra_body(args.extra_body)
    slo = parse_slo(args.slo)
    api_key, key_env = _api_key(args)
    workload = workload_from(coerce_workload(args), in_out_given=args.in_out is not None)
    replaycli.check(args, workload)
    pairs = parse_in_out_text(args.in_out or "32-32")
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
    concurrencies = replaycli.concurrencies(args, concurrencies)
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
            backend=backend,
            server_metrics=metrics_url(args.url, getattr(args, "server_metrics", None)),
        ).validate()
        for n_in, n_out in pairs
    ]
    if workload is not None and args.prompt is not None:
        raise EndpointError("--prompt sends one text; it does not combine with the workload "
                            "options (--prompts, --length-spread ...)")  # fmt: skip
    if workload and not getattr(args, "multi_turn", False):
        specs = [with_requests(spec, args.requests) for spec in specs]
    specs = replaycli.prepare(args, specs, args.requests)
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
    sweep driver (:mod:`streambench.runners.driver`): a table per pair, ``--output`` files written
    after
    each (atomically), ``--plot`` at the end.

    Every input is checked before anything is sent: options (bounds), the URL, the key variable,
    the ``--output`` and ``--plot`` targets
    (:func:`streambench.runners.run_io.check_result_targets`).
    An existing results file is replaced only once there is something to write.

    Exit codes: 0 every measured request succeeded; 1 some failed, or an output could not be
    written (the failures are counted and reported, the results kept); 2 bad input; 128 + the
    signal when interrupted (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP; finished requests written,
    ``"interrupted": true``). Runs under the :class:`~streambench.errors.SignalPolicy` in force,
    or installs one."""
    from .served_sweep import run_sweep

    with signal_policy():
        return run_sweep(args, specs_from_args(args))


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
