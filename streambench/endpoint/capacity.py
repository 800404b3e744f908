"""The capacity search (``--find-max-rate``): the highest request rate at which at least a given
fraction of requests meets every SLO.

Each point is one load point (one configuration of the results document, through the shared
driver). The search brackets (from the low end of ``--rate-range``, doubling until a point fails
or the high end passes), then bisects geometrically between the last rate that passed and the
first that failed until ``(fail - pass) / pass <= tolerance`` or ``--max-points`` are measured.
A point passes when it was not stopped early (``--max-error-rate``) and ``slo_attained`` (requests
meeting every SLO / all measured requests, failed ones included) is at least ``--slo-attainment``.

The capacity is the highest passing rate *measured*; it lies within a factor ``1 + tolerance``
below the true threshold when the search converged (``converged``). The document gets a
``capacity`` object (:meth:`CapacitySearch.report`); the exit code is 0 when a rate passed, 1 when
no point passed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..numtext import real
from .load import LoadError
from .metrics import EndpointResult
from .spec import MAX_REQUEST_RATE, EndpointSpec

MAX_SEARCH_POINTS = 64
TARGETS = ("attainment", "goodput")


@dataclass(frozen=True)
class SearchSettings:
    """``attainment`` (0-1], the rate range ``low``..``high`` (requests/s), the relative
    ``tolerance`` of the bisection and the most points measured."""

    attainment: float = 0.95
    low: float = 0.5
    high: float = 256.0
    tolerance: float = 0.1
    max_points: int = 12
    #: ``attainment``: ``slo_attained >= attainment``; ``goodput``: ``goodput_requests_per_s >=
    #: attainment * rate`` (requests meeting every SLO per second against the rate asked)
    target: str = "attainment"

    def validate(self, timeout_s: float) -> SearchSettings:
        if self.target not in TARGETS:
            raise LoadError(f"--search-target {self.target!r}: use {' or '.join(TARGETS)}")
        if not _finite(self.attainment) or not 0 < self.attainment <= 1:
            raise LoadError(
                f"--slo-attainment {self.attainment}: expected a fraction above 0, at most 1"
            )
        floor = 1.0 / timeout_s
        if not (_finite(self.low) and _finite(self.high)) or not (
            floor <= self.low < self.high <= MAX_REQUEST_RATE
        ):
            raise LoadError(
                f"--rate-range {self.low:g},{self.high:g}: expected LO,HI with "
                f"{floor:.4g} (1 / --timeout) <= LO < HI <= {MAX_REQUEST_RATE:g}"
            )
        if not _finite(self.tolerance) or not 0.001 <= self.tolerance <= 1:
            raise LoadError(f"--rate-tolerance {self.tolerance}: expected 0.001 to 1")
        if (
            isinstance(self.max_points, bool)
            or not isinstance(self.max_points, int)
            or not (2 <= self.max_points <= MAX_SEARCH_POINTS)
        ):
            raise LoadError(f"--max-points {self.max_points}: expected 2 to {MAX_SEARCH_POINTS}")
        return self


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_rate_range(text: str | None) -> tuple[float, float]:
    if text is None:
        return SearchSettings.low, SearchSettings.high
    lo, _, hi = str(text).partition(",")
    try:
        return real(lo), real(hi)
    except ValueError:
        raise LoadError(f"--rate-range {text!r}: write LO,HI in requests/s, e.g. 1,64") from None


@dataclass
class Point:
    """One measured point of the search."""

    id: str
    rate: float
    passed: bool
    slo_attained: float | None
    error_rate: float
    requests: int
    requests_per_s: float
    output_tokens_per_s: float
    stopped_early: bool
    #: requests meeting every SLO per second (the point's goodput)
    goodput_requests_per_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class CapacitySearch:
    """Drives the rates of one search; :meth:`record` is called with each point's result."""

    base: EndpointSpec
    settings: SearchSettings
    points: list[Point] = field(default_factory=list)
    reason: str = ""

    def passes(self, result: EndpointResult) -> bool:
        s = result.summary
        if result.stopped_early is not None or result.interrupted or s.slo_attained is None:
            return False
        if self.settings.target == "goodput":
            rate = float(result.spec.request_rate or 0.0)
            good = s.goodput_requests_per_s
            return good is not None and good >= self.settings.attainment * rate
        return s.slo_attained >= self.settings.attainment

    def record(self, cid: str, result: EndpointResult) -> None:
        s = result.summary
        self.points.append(
            Point(
                id=cid,
                rate=float(result.spec.request_rate or 0.0),
                passed=self.passes(result),
                slo_attained=s.slo_attained,
                error_rate=s.error_rate,
                requests=s.requests,
                requests_per_s=s.requests_per_s,
                output_tokens_per_s=s.output_tokens_per_s,
                stopped_early=result.stopped_early is not None,
                goodput_requests_per_s=s.goodput_requests_per_s,
            )
        )

    def spec_at(self, rate: float) -> EndpointSpec:
        return dataclasses.replace(self.base, request_rate=rate).validate()

    @property
    def last_pass(self) -> Point | None:
        passed = [p for p in self.points if p.passed]
        return max(passed, key=lambda p: p.rate) if passed else None

    @property
    def first_fail(self) -> Point | None:
        best = self.last_pass
        failed = [p for p in self.points if not p.passed and (best is None or p.rate > best.rate)]
        return min(failed, key=lambda p: p.rate) if failed else None

    def rates(self) -> Iterator[float]:
        """The rates to measure, one at a time (each decided from the points so far)."""
        st = self.settings
        rate = st.low
        while len(self.points) < st.max_points:
            yield rate
            nxt = self._next()
            if nxt is None:
                return
            rate = nxt
        self.reason = self.reason or f"stopped after --max-points {st.max_points}"

    def _next(self) -> float | None:
        st = self.settings
        good, bad = self.last_pass, self.first_fail
        if good is None:
            self.reason = f"the lowest rate {st.low:g}/s did not meet the SLO"
            return None
        if bad is None:
            if good.rate >= st.high:
                self.reason = f"the highest rate {st.high:g}/s met the SLO (capacity at least)"
                return None
            return min(_round(good.rate * 2), st.high)
        if (bad.rate - good.rate) / good.rate <= st.tolerance:
            self.reason = f"converged: within {st.tolerance:.0%}"
            return None
        mid = _round(math.sqrt(good.rate * bad.rate))
        if not good.rate < mid < bad.rate:
            self.reason = "converged: the next rate rounds to one already measured"
            return None
        return mid

    def found(self) -> bool:
        return self.last_pass is not None

    def report(self) -> dict[str, Any]:
        """The document's ``capacity`` object."""
        good, bad = self.last_pass, self.first_fail
        st = self.settings
        return {
            "max_rate": good.rate if good else None,
            "converged": self.reason.startswith("converged"),
            "reason": self.reason,
            "slo_s": dict(self.base.slo),
            "attainment": st.attainment,
            "rate_range": [st.low, st.high],
            "tolerance": st.tolerance,
            "max_points": st.max_points,
            "target": st.target,
            "max_goodput_requests_per_s": max(
                (p.goodput_requests_per_s or 0.0 for p in self.points), default=None
            ),
            "last_pass": good.to_dict() if good else None,
            "first_fail": bad.to_dict() if bad else None,
            "points": [p.to_dict() for p in self.points],
        }

    def _goal(self) -> str:
        a = self.settings.attainment
        if self.settings.target == "goodput":
            return f"with goodput at least {a:.0%} of the rate"
        return f"for {a:.0%} of requests"

    def lines(self) -> list[str]:
        """What the command prints at the end."""
        rep = self.report()
        out = ["capacity search: " + ", ".join(_point_text(p) for p in self.points)]
        good, bad = self.last_pass, self.first_fail
        slo = ",".join(f"{k}={v * 1e3:g}ms" for k, v in self.base.slo.items())
        if good is None:
            out.append(f"no rate met {slo} {self._goal()}: " + rep["reason"])
        else:
            out.append(
                f"max rate {good.rate:g} requests/s meets {slo} {self._goal()} "
                f"(last pass {good.rate:g}/s: "
                f"{_pct(good.slo_attained)}"
                + (f"; first fail {bad.rate:g}/s: {_pct(bad.slo_attained)}" if bad else "")
                + f"); {rep['reason']}"
            )
        return out


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def _point_text(p: Point) -> str:
    good = "" if p.goodput_requests_per_s is None else f", goodput {p.goodput_requests_per_s:.3g}/s"
    return f"{p.rate:g}/s {'pass' if p.passed else 'fail'} ({_pct(p.slo_attained)}{good})"


def _round(rate: float) -> float:
    """3 significant digits (readable ids and labels)."""
    return float(f"{rate:.3g}")


def search_plan(search: CapacitySearch, planned: Callable[[EndpointSpec], Any]) -> Iterator[Any]:
    """The driver's lazy plan: one planned configuration per rate the search asks for."""
    for rate in search.rates():
        yield planned(search.spec_at(rate))
