"""How load is offered to an endpoint: arrivals, ramp-up, a time bound, an error-rate stop, the
percentiles reported, and the client's own lag (proof that the client is not the bottleneck).

- :class:`LoadSettings`: the settings of one load point (part of :class:`EndpointSpec`); the ones
  that change what is measured (:meth:`LoadSettings.identity`) enter the configuration's identity
  only when they differ from their default, so older results files still compare.
- :func:`arrival_offsets`: the seeded arrival schedule (Poisson, constant or gamma with a
  burstiness ``B``; ``B = 1`` is Poisson, as vLLM defines it), with a linear ramp-up.
- :func:`parse_rates`, :func:`parse_counts`, :func:`parse_percentiles`: the sweep axes and lists
  of the command line.
- :class:`ClientLag`: how late the event loop ran scheduled sends and how late its timers fired.

No import of :mod:`.spec` here (the spec imports this module).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError
from ..numtext import real, whole
from ..stats import describe, percentile

ARRIVALS = ("poisson", "constant", "gamma")
DEFAULT_PERCENTILES = (50.0, 90.0, 99.0)
MAX_PERCENTILES = 16
MAX_AXIS_POINTS = 64
MIN_BURSTINESS = 0.01
MAX_BURSTINESS = 100.0
#: most client processes one load point may be spread over (``--workers``)
MAX_WORKERS = 64
#: client lag (p99 of send lag or timer lag) above which the table warns: the client, not the
#: server, may be what limits the measured latencies
CLIENT_LAG_WARN_S = 0.005
#: finished requests needed before --max-error-rate may stop a point
MIN_REQUESTS_FOR_ERROR_STOP = 10


class LoadError(UsageError):
    """A bad load option: one line naming the option (exit 2)."""


@dataclass(frozen=True)
class LoadSettings:
    """How the requests of one load point are offered (times in seconds).

    Args:
        arrivals: ``poisson`` (exponential gaps), ``constant`` (equal gaps) or ``gamma`` (gaps
            from a gamma distribution of shape ``burstiness`` and mean ``1 / rate``); apply only
            to points with a request rate.
        burstiness: the gamma shape ``B``: ``B < 1`` burstier than Poisson, ``B > 1`` more even.
        ramp_up_s: the rate rises linearly from 0 over this many seconds first; the requests sent
            meanwhile are not measured (flagged as warm-up). Needs a request rate.
        duration_s: send measured requests for this long (after the ramp-up); ``requests`` is
            then only a cap. Requests in flight at the deadline finish (within the timeout) and
            count.
        max_error_rate: stop the point once at least 10 requests finished and more than this
            fraction of them failed (in a sweep or search, the point then fails the run).
        percentiles: reported for every latency metric (tables, JSON and CSV).
        workers: client processes the measured requests of the point are spread over, each with
            its own event loop (:mod:`streambench.endpoint.workers`); 1: this process only.
        ray: the address of a Ray cluster whose nodes the workers run on, as actors
            (:mod:`streambench.endpoint.ray_workers`); ``None``: local processes. Where the
            workers run is not part of what is measured (not in :meth:`identity`).
    """

    arrivals: str = "poisson"
    burstiness: float = 1.0
    ramp_up_s: float = 0.0
    duration_s: float | None = None
    max_error_rate: float | None = None
    percentiles: tuple[float, ...] = DEFAULT_PERCENTILES
    workers: int = 1
    ray: str | None = None

    def validate(self, rate: float | None, timeout_s: float) -> LoadSettings:
        """Check every value (``rate``: the request rate, ``None`` for none); :class:`LoadError`
        otherwise, one line naming the option."""
        if self.arrivals not in ARRIVALS:
            raise LoadError(f"--arrivals {self.arrivals!r}: use {', '.join(ARRIVALS)}")
        if not _finite(self.burstiness) or not (
            MIN_BURSTINESS <= self.burstiness <= MAX_BURSTINESS
        ):
            raise LoadError(
                f"--burstiness {self.burstiness}: expected a number from {MIN_BURSTINESS} to "
                f"{MAX_BURSTINESS:g}"
            )
        if self.burstiness != 1.0 and self.arrivals != "gamma":
            raise LoadError("--burstiness needs --arrivals gamma")
        if not _finite(self.ramp_up_s) or not 0 <= self.ramp_up_s <= 86_400:
            raise LoadError(f"--ramp-up {self.ramp_up_s}: expected a time from 0 to 86400 s")
        if self.duration_s is not None and (
            not _finite(self.duration_s) or not 0 < self.duration_s <= 86_400
        ):
            raise LoadError(f"--duration {self.duration_s}: expected a time above 0, at most 1 day")
        if self.max_error_rate is not None and (
            not _finite(self.max_error_rate) or not 0 <= self.max_error_rate < 1
        ):
            raise LoadError(
                f"--max-error-rate {self.max_error_rate}: expected a fraction from 0 to below 1"
            )
        if not self.percentiles or len(self.percentiles) > MAX_PERCENTILES:
            raise LoadError(f"--percentiles: give 1 to {MAX_PERCENTILES} values")
        for q in self.percentiles:
            if not _finite(q) or not 0 < q < 100:
                raise LoadError(f"--percentiles {q}: expected a number above 0 and below 100")
        if (
            isinstance(self.workers, bool)
            or not isinstance(self.workers, int)
            or not 1 <= self.workers <= MAX_WORKERS
        ):
            raise LoadError(
                f"--workers {self.workers}: expected a whole number from 1 to {MAX_WORKERS}"
            )
        if self.ray is not None and self.workers < 2:
            raise LoadError(f"--ray {self.ray}: spreads --workers N (2 or more) over a cluster")
        return self

    def identity(self, rate: float | None) -> dict[str, Any]:
        """The settings that change what is measured, where they are not the default (the
        arrival settings only with a request ``rate``: without one they do not apply)."""
        out: dict[str, Any] = {}
        if rate is not None and self.arrivals != "poisson":
            out["arrivals"] = self.arrivals
        if rate is not None and self.burstiness != 1.0:
            out["burstiness"] = self.burstiness
        if rate is not None and self.ramp_up_s:
            out["ramp_up_s"] = self.ramp_up_s
        if self.duration_s is not None:
            out["duration_s"] = self.duration_s
        if self.workers != 1:
            out["workers"] = self.workers
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; ``workers`` only when not 1 (older files still compare)."""
        out = {
            "arrivals": self.arrivals,
            "burstiness": self.burstiness,
            "ramp_up_s": self.ramp_up_s,
            "duration_s": self.duration_s,
            "max_error_rate": self.max_error_rate,
            "percentiles": list(self.percentiles),
        }
        if self.workers != 1:
            out["workers"] = self.workers
        return out


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# -- the arrival schedule -------------------------------------------------------------------------
def unit_gaps(arrivals: str, burstiness: float, seed: int) -> Iterator[float]:
    """Gaps with mean 1 (seeded, ``random.Random(seed)``): exponential, constant, or gamma of
    shape ``B`` and scale ``1 / B`` (coefficient of variation ``1 / sqrt(B)``)."""
    rng = random.Random(seed)
    while True:
        if arrivals == "constant":
            yield 1.0
        elif arrivals == "gamma":
            yield rng.gammavariate(burstiness, 1.0 / burstiness)
        else:
            yield rng.expovariate(1.0)


def _time_at(expected: float, rate: float, ramp_s: float) -> float:
    """When ``expected`` arrivals are due: the inverse of the integral of a rate that rises
    linearly from 0 to ``rate`` over ``ramp_s`` seconds, then stays."""
    if ramp_s <= 0:
        return expected / rate
    during = rate * ramp_s / 2.0
    if expected <= during:
        return math.sqrt(2.0 * ramp_s * expected / rate)
    return ramp_s + (expected - during) / rate


def arrival_offsets(
    rate: float, settings: LoadSettings, seed: int, cap_s: float
) -> Iterator[tuple[float, bool]]:
    """The arrival times (seconds since the first) of an endless seeded schedule: ``(offset,
    was_cut)``. The first arrival is at 0; each gap is cut at ``cap_s`` (the request timeout),
    later arrivals moving up with it. The same seed gives the same schedule."""
    expected = 0.0
    due = 0.0  # the uncut schedule
    at = 0.0
    yield 0.0, False
    for gap in unit_gaps(settings.arrivals, settings.burstiness, seed):
        expected += gap
        nxt = _time_at(expected, rate, settings.ramp_up_s)
        step, cut = nxt - due, False
        due = nxt
        if step > cap_s:
            step, cut = cap_s, True
        at += step
        yield at, cut


# -- command-line lists ---------------------------------------------------------------------------
def parse_rates(text: str | None) -> list[float | None]:
    """``"1,2,4,inf"`` -> ``[1.0, 2.0, 4.0, None]`` (``inf``: as fast as the concurrency allows);
    ``None`` or ``""`` -> ``[None]``."""
    if text is None or not str(text).strip():
        return [None]
    out: list[float | None] = []
    for part in str(text).split(","):
        part = part.strip().lower()
        if part in ("inf", "infinity", "max"):
            out.append(None)
            continue
        try:
            value = real(part)
        except ValueError as exc:
            raise LoadError(f"--request-rate: {exc}; expected requests/s or inf") from None
        if not math.isfinite(value) or value <= 0:
            raise LoadError(f"--request-rate {part!r}: expected a finite rate above 0, or inf")
        out.append(value)
    return _axis("--request-rate", out)


def parse_counts(option: str, text: str | None) -> list[int | None]:
    """``"1,8,32"`` -> ``[1, 8, 32]``; ``None`` -> ``[None]`` (the default)."""
    if text is None or not str(text).strip():
        return [None]
    out: list[int | None] = []
    for part in str(text).split(","):
        try:
            out.append(whole(part))
        except ValueError as exc:
            raise LoadError(f"{option}: {exc} (expected a whole number)") from None
    return _axis(option, out)


def _axis(option: str, values: list[Any]) -> list[Any]:
    if len(values) > MAX_AXIS_POINTS:
        raise LoadError(f"{option}: {len(values)} values; at most {MAX_AXIS_POINTS}")
    if len(set(values)) != len(values):
        raise LoadError(f"{option}: a value is given twice")
    return values


def parse_percentiles(text: str | None) -> tuple[float, ...]:
    """``"50,90,99.9"`` -> ``(50.0, 90.0, 99.9)``; ``None`` -> the default (50, 90, 99)."""
    if text is None:
        return DEFAULT_PERCENTILES
    out = []
    for part in str(text).split(","):
        try:
            out.append(real(part.strip().lstrip("pP")))
        except ValueError as exc:
            raise LoadError(f"--percentiles: {exc}; expected a number, e.g. 99.9") from None
    return tuple(sorted(set(out)))


def percentile_table(values: list[float], qs: tuple[float, ...]) -> dict[str, float] | None:
    """``{"p50": ..., "p99.9": ...}`` of ``values`` (``None`` when there are none)."""
    if not values:
        return None
    data = sorted(values)
    return {f"p{q:g}": percentile(data, q) for q in qs}


# -- the client's own lag -------------------------------------------------------------------------
@dataclass
class ClientLag:
    """Proof that the client keeps up: ``send_lag_s``, how late each scheduled send ran (the
    event loop's lateness against the arrival schedule), and ``timer_lag_s``, how late a 5 ms
    timer fired while the point ran (time the loop spent on other work: chunk handling, JSON)."""

    send_lag_s: list[float] = field(default_factory=list)
    timer_lag_s: list[float] = field(default_factory=list)
    period_s: float = 0.005

    async def watch(self) -> None:
        """Run until cancelled, recording the timer lag."""
        import asyncio

        while True:
            t = time.perf_counter()
            await asyncio.sleep(self.period_s)
            self.timer_lag_s.append(max(0.0, time.perf_counter() - t - self.period_s))

    def summary(self) -> dict[str, Any]:
        """``{"send_lag_s": Stats, "timer_lag_s": Stats, "bottleneck": bool}`` (JSON-ready)."""
        out: dict[str, Any] = {}
        worst = 0.0
        for key in ("send_lag_s", "timer_lag_s"):
            st = describe(getattr(self, key))
            out[key] = None if st is None else st.to_dict()
            if st is not None:
                worst = max(worst, st.p99)
        out["bottleneck"] = worst > CLIENT_LAG_WARN_S
        return out


def lag_warning(client: dict[str, Any] | None) -> str | None:
    """The table's warning when the client's lag says it may be the bottleneck."""
    if not client or not client.get("bottleneck"):
        return None
    parts = []
    for key, name in (("send_lag_s", "send lag"), ("timer_lag_s", "event-loop lag")):
        st = client.get(key)
        if st:
            parts.append(f"{name} p99 {st['p99'] * 1e3:.1f} ms")
    return (
        "the client may be the bottleneck (" + ", ".join(parts) + f" > "
        f"{CLIENT_LAG_WARN_S * 1e3:g} ms): latencies include client delay"
    )
