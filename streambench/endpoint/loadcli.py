"""The load options of ``streambench endpoint``: sweep axes (``--request-rate 1,2,inf``,
``--concurrency 1,8``), arrivals, ramp-up, duration, error-rate stop, percentiles, headers, TLS and
the capacity search (``--find-max-rate``). :func:`expand` turns one spec into the points of the
sweep (in-out x rate x concurrency)."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..numtext import real_arg, whole_arg
from .load import LoadError, LoadSettings, parse_counts, parse_percentiles, parse_rates
from .spec import RATE_CONCURRENCY, EndpointSpec, parse_duration
from .transport import Transport, parse_header

#: the load, request and capacity-search options, in ``--help`` order: ``(flags, add_argument
#: keywords)``; see ``docs/endpoint.md``
LOAD_OPTIONS: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = (
    (("--arrivals",), dict(choices=("poisson", "constant", "gamma"), default="poisson",
        help="arrival process with --request-rate (default poisson; seeded)")),
    (("--burstiness",), dict(type=real_arg, default=1.0, metavar="B", help="gamma shape with "
        "--arrivals gamma: <1 burstier, >1 more even, 1 = Poisson")),
    (("--ramp-up",), dict(default=None, metavar="TIME", help="raise the rate linearly from 0 over "
        "TIME first (those requests not measured)")),
    (("--duration",), dict(default=None, metavar="TIME", help="send measured requests for TIME "
        "(e.g. 60s); --requests is then only a cap")),
    (("--max-error-rate",), dict(type=real_arg, default=None, metavar="F", help="stop a point "
        "once more than this fraction of its requests failed (>= 10 done); in a sweep or search, "
        "only such a point fails the run")),
    (("--workers",), dict(type=whole_arg, default=1, metavar="N", help="spread each point's "
        "measured requests over N client processes (default 1; at most 64 and the "
        "concurrency)")),
    (("--ray",), dict(default=None, metavar="ADDRESS", help="run the --workers as actors of the "
        "Ray cluster at ADDRESS, spread over its nodes (streambench[ray]; README, 'Beyond one "
        "machine')")),
    (("--percentiles",), dict(default=None, metavar="Q,...", help="percentiles of every latency "
        "metric (default 50,90,99)")),
    (("--header",), dict(action="append", default=None, metavar="'NAME: VALUE'", help="extra "
        "request header (repeatable); values are never printed or written")),
    (("--insecure",), dict(action="store_true", help="do not verify the server's TLS "
        "certificate")),
    (("--ca-bundle",), dict(default=None, metavar="FILE", help="trust the certificates in this "
        "PEM file")),
    (("--find-max-rate",), dict(action="store_true", help="search the highest request rate at "
        "which --slo-attainment of requests meet --slo")),
    (("--slo-attainment",), dict(type=real_arg, default=0.95, metavar="F", help="fraction of "
        "requests that must meet every SLO (default 0.95)")),
    (("--rate-range",), dict(default=None, metavar="LO,HI", help="requests/s the search stays "
        "within (default 0.5,256)")),
    (("--rate-tolerance",), dict(type=real_arg, default=0.1, metavar="F", help="stop bisecting "
        "when (fail - pass) / pass <= F (default 0.1)")),
    (("--max-points",), dict(type=whole_arg, default=12, metavar="N", help="most load points the "
        "search measures (default 12)")),
    (("--search-target",), dict(choices=("attainment", "goodput"), default="attainment",
        help="what a searched rate must reach: attainment (default: --slo-attainment of its "
        "requests meet the SLO) or goodput (requests/s meeting the SLO at least "
        "--slo-attainment x the rate asked: a server that falls behind fails too)")),
)  # fmt: skip


def add_load_arguments(parser: Any) -> None:
    """The load, request and capacity-search options (:data:`LOAD_OPTIONS`)."""
    for flags, keywords in LOAD_OPTIONS:
        parser.add_argument(*flags, **keywords)


def time_option(option: str, text: Any) -> float:
    """A time option (``--timeout``, ``--duration``, ``--ramp-up``): a bare number is seconds;
    the error names the option."""
    try:
        return parse_duration(str(text), unit="s")
    except ValueError as exc:
        raise LoadError(f"{option} {text}: {exc}") from None


def _time(option: str, text: str | None) -> float | None:
    return None if text is None else time_option(option, text)


def load_settings(args: Any) -> LoadSettings:
    """:class:`LoadSettings` from the options (checked once per point by the spec)."""
    return LoadSettings(
        arrivals=args.arrivals,
        burstiness=args.burstiness,
        ramp_up_s=_time("--ramp-up", args.ramp_up) or 0.0,
        duration_s=_time("--duration", args.duration),
        max_error_rate=args.max_error_rate,
        percentiles=parse_percentiles(args.percentiles),
        workers=args.workers,
        ray=_ray_address(args),
    )


def _ray_address(args: Any) -> str | None:
    """``--ray``, once Ray is known to be importable (else one line and exit 2)."""
    address = getattr(args, "ray", None)
    if address is not None:
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            from ..extras import install_hint

            raise LoadError(f"--ray needs ray, which is not installed: {install_hint('ray')}")
    return address


def transport(args: Any) -> Transport:
    headers = tuple(parse_header(h) for h in (args.header or ()))
    return Transport(headers=headers, insecure=args.insecure, ca_bundle=args.ca_bundle).validate()


def axes(args: Any) -> tuple[list[float | None], list[int | None]]:
    """The request rates and concurrencies of the sweep (each ``[None]`` when not given; an
    ``inf`` rate without ``--concurrency``: ``[RATE_CONCURRENCY]``, every request at once up to
    the bound of the finite rates)."""
    rates = parse_rates(args.request_rate)
    concurrencies = parse_counts("--concurrency", args.concurrency)
    if args.find_max_rate and args.request_rate is not None:
        raise LoadError("--find-max-rate searches the rate itself: drop --request-rate")
    if args.find_max_rate and len(concurrencies) > 1:
        raise LoadError("--find-max-rate: give one --concurrency (the most requests in flight)")
    needs_rate = args.arrivals != "poisson" or args.burstiness != 1.0 or args.ramp_up
    if needs_rate and not args.find_max_rate and all(r is None for r in rates):
        raise LoadError(
            "--arrivals, --burstiness and --ramp-up need a finite --request-rate (or a search)"
        )
    if args.find_max_rate:
        rates = [1.0]  # a placeholder: the search sets each point's rate
    elif args.request_rate is not None and None in rates and concurrencies == [None]:
        # an ``inf`` asked for: every request at once, bounded as the finite rates are (not
        # the one-at-a-time default of a run without --request-rate)
        concurrencies = [RATE_CONCURRENCY]
    return rates, concurrencies


def expand(
    specs: list[EndpointSpec], rates: list[float | None], concurrencies: list[int | None]
) -> list[EndpointSpec]:
    """Every point of the sweep: each spec x rate x concurrency, validated."""
    return [
        dataclasses.replace(spec, request_rate=rate, concurrency=conc).validate()
        for spec in specs
        for rate in rates
        for conc in concurrencies
    ]


def is_load_sweep(args: Any) -> bool:
    """A sweep over load (several rates or concurrencies) or a capacity search: failed requests
    are results there, and only a point past ``--max-error-rate`` (or with no success) fails."""
    rates, concurrencies = (
        parse_rates(args.request_rate),
        parse_counts("--concurrency", args.concurrency),
    )
    return bool(args.find_max_rate) or len(rates) * len(concurrencies) > 1
