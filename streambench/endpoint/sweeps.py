"""Load sweeps and the capacity search around the driver: the sweep's settings, which point fails
the run, and the end of a search (its ``capacity`` object, its lines, its exit code)."""

from __future__ import annotations

from typing import Any

from ..errors import EXIT_FAILED, EXIT_OK
from . import loadcli
from .capacity import CapacitySearch, SearchSettings, parse_rate_range
from .load import LoadError
from .metrics import EndpointResult
from .spec import EndpointSpec


def make_search(args: Any, base: EndpointSpec) -> CapacitySearch | None:
    """The :class:`CapacitySearch` of ``--find-max-rate`` (``None`` without it); checked."""
    if not getattr(args, "find_max_rate", False):
        return None
    if not base.slo:
        raise LoadError("--find-max-rate needs --slo, e.g. --slo ttft=200ms,tpot=50ms")
    low, high = parse_rate_range(args.rate_range)
    settings = SearchSettings(
        attainment=args.slo_attainment,
        low=low,
        high=high,
        tolerance=args.rate_tolerance,
        max_points=args.max_points,
        target=getattr(args, "search_target", None) or "attainment",
    ).validate(base.timeout_s)
    return CapacitySearch(base, settings)


def sweep_settings(
    args: Any, specs: list[EndpointSpec], search: CapacitySearch | None
) -> dict[str, Any]:
    """The document's settings for the load axes (``request_rates``, ``concurrencies``; the
    driver lets ``--resume`` extend them) and the search, if any."""
    rates, concurrencies = loadcli.axes(args)
    out: dict[str, Any] = {
        "request_rate": None,
        "concurrency": None,
        "max_in_flight": None,
        "request_rates": None if search else rates,
        "concurrencies": concurrencies,
    }
    if search is not None:
        st = search.settings
        out["capacity_search"] = {
            "attainment": st.attainment,
            "rate_range": [st.low, st.high],
            "tolerance": st.tolerance,
            "max_points": st.max_points,
        }
        if st.target != "attainment":  # the default, not written (files before it resume)
            out["capacity_search"]["target"] = st.target
    return out


def duration_text(specs: list[EndpointSpec], search: Any, verbose: bool) -> str:
    """The opening line's time: about how long the points take where the load sets it (a rate,
    ``--duration``; :attr:`EndpointSpec.expected_duration_s`), how many points the server's speed
    paces; the worst-case bound (every request cut at ``--timeout``) only with ``--verbose``."""
    first = specs[0]
    if search is not None:
        per_point = first.expected_duration_s if first.load.duration_s is not None else None
        text = f"about {per_point:.3g} s per point" if per_point is not None else ""
        bound = search.settings.max_points * first.max_duration_s
    else:
        expected = [s.expected_duration_s for s in specs]
        known = sum(e for e in expected if e is not None)
        paced = sum(e is None for e in expected)
        server = f"{paced} point(s) as fast as the server answers"
        if paced == len(specs):
            text = "as fast as the server answers"
        else:
            text = f"about {known:.3g} s" + (f" plus {server}" if paced else "")
        bound = sum(spec.max_duration_s for spec in specs)
    if verbose:
        limit = f"at most {bound:g} s (every request cut at --timeout {first.timeout_s:g} s)"
        text = f"{text}; {limit}" if text else limit
    return text


def point_failed(result: EndpointResult, tolerant: bool) -> bool:
    """Whether a point fails the run (exit 1). A single load point: any failed request. In a load
    sweep or a search (``tolerant``): failed requests are results; only a point stopped by
    ``--max-error-rate``, or one where no request succeeded, fails."""
    s = result.summary
    if not tolerant:
        return bool(s.failed)
    return result.stopped_early is not None or (s.requests > 0 and s.ok == 0)


def finish_search(search: CapacitySearch, driver: Any, out: Any, code: int) -> int:
    """Add the ``capacity`` object to the document, rewrite the outputs, print the outcome;
    the exit code: interrupted/usage codes as they are, else 0 when a rate passed, 1 when none."""
    if code not in (EXIT_OK, EXIT_FAILED):
        return code
    driver.doc["capacity"] = search.report()
    driver.save()
    for line in search.lines():
        out.print(line, markup=False, highlight=False)
    return EXIT_OK if search.found() and not driver.write_failures else EXIT_FAILED
