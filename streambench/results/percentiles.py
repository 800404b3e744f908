"""Statistics of a series in the results/2 form: ``n``, ``mean``, ``median``, ``stdev``, ``min``,
``max`` and a map of percentiles (``{"50": ..., "90": ..., "99": ...}``), read from the results/1
form (fixed ``p90``/``p99`` keys) too."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Statistics", "percentile_key", "statistics_tree"]

#: a results/1 statistics object's keys (``p90``/``p99`` became ``percentiles``)
_V1_STAT_KEYS = frozenset(("n", "mean", "median", "p90", "p99", "stdev", "min", "max"))
_PERCENTILE_KEY = re.compile(r"p(\d+(?:\.\d+)?)")


def percentile_key(q: float | str) -> str:
    """The key of percentile ``q`` in :attr:`Statistics.percentiles`: ``90 -> "90"``,
    ``99.9 -> "99.9"``.

    >>> percentile_key(90), percentile_key(99.9), percentile_key("50")
    ('90', '99.9', '50')
    """
    return f"{float(q):g}"


@dataclass
class Statistics:
    """Statistics of one series (in the series' unit: seconds for latencies, tokens/s for
    speeds): ``n`` values, ``mean``, ``median`` (= the 50th percentile), sample ``stdev`` (0 for
    one value), ``min``, ``max``, and ``percentiles``: percent (a string, ``"90"``) -> value,
    linearly interpolated. Values are as read (a file is checked by ``load_document``).

    Over trials (``aggregates``), ``ci95`` is a 95 % interval ``[low, high]`` for the median
    (:mod:`streambench.intervals`), ``None`` with the reason in ``ci95_note`` when there is none
    (too few trials); both stay ``None`` (and are not written) for other series."""

    n: int | None = None
    mean: float | None = None
    median: float | None = None
    stdev: float | None = None
    min: float | None = None
    max: float | None = None
    percentiles: dict[str, float | None] = field(default_factory=dict)
    ci95: list[float] | None = None
    ci95_note: str | None = None

    @property
    def has_interval_fields(self) -> bool:
        """``ci95``/``ci95_note`` are recorded (a statistic over trials)."""
        return self.ci95 is not None or self.ci95_note is not None

    def percentile(self, q: float | str) -> float | None:
        """The ``q``-th percentile (``None`` when not recorded); 50 is the median."""
        key = percentile_key(q)
        if key in self.percentiles:
            return self.percentiles[key]
        return self.median if key == "50" else None

    @property
    def p90(self) -> float | None:
        return self.percentile(90)

    @property
    def p99(self) -> float | None:
        return self.percentile(99)

    def to_dict(self) -> dict[str, Any]:
        """The results/2 object: ``{n, mean, median, stdev, min, max, percentiles}``."""
        pct = dict(self.percentiles)
        pct.setdefault("50", self.median)
        ordered = sorted(pct.items(), key=lambda kv: _percent_order(kv[0]))
        out = {
            "n": self.n,
            "mean": self.mean,
            "median": self.median,
            "stdev": self.stdev,
            "min": self.min,
            "max": self.max,
            "percentiles": dict(ordered),
        }
        if self.has_interval_fields:
            out["ci95"] = list(self.ci95) if isinstance(self.ci95, list) else self.ci95
            out["ci95_note"] = self.ci95_note
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Statistics | None:
        """Read a results/2 object or a results/1 one (``p90``, ``p99`` keys); ``None`` for
        anything that is not an object."""
        if not isinstance(data, Mapping):
            return None
        pct: dict[str, Any] = {}
        given = data.get("percentiles")
        if isinstance(given, Mapping):
            pct.update((str(k), v) for k, v in given.items())
        for key, value in data.items():  # results/1: p90, p99
            m = _PERCENTILE_KEY.fullmatch(str(key))
            if m:
                pct.setdefault(percentile_key(m.group(1)), value)
        median = data["median"] if "median" in data else pct.get("50")
        if "median" in data:
            pct.setdefault("50", median)
        return cls(
            n=data.get("n"),
            mean=data.get("mean"),
            median=median,
            stdev=data.get("stdev"),
            min=data.get("min"),
            max=data.get("max"),
            percentiles=pct,
            ci95=data.get("ci95"),
            ci95_note=data.get("ci95_note"),
        )

    @classmethod
    def from_stats(cls, stats: Any) -> Statistics | None:
        """From :class:`streambench.stats.Stats` (``None`` stays ``None``)."""
        if stats is None:
            return None
        return cls(
            n=stats.n,
            mean=stats.mean,
            median=stats.median,
            stdev=stats.stdev,
            min=stats.min,
            max=stats.max,
            percentiles={"50": stats.median, "90": stats.p90, "99": stats.p99},
        )


def _percent_order(key: str) -> tuple[int, float, str]:
    try:
        return (0, float(key), key)
    except ValueError:
        return (1, 0.0, key)


def statistics_tree(value: Any) -> Any:
    """A copy of a JSON value with every results/1 statistics object (``n, mean, median, p90,
    p99, stdev, min, max``) in the results/2 form: for the objects a command adds on its own
    (``aggregates.endpoint``, ``ranks``)."""
    if isinstance(value, Mapping):
        if _V1_STAT_KEYS <= set(value):
            stats = Statistics.from_dict(value)
            return stats.to_dict() if stats is not None else None
        return {k: statistics_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [statistics_tree(v) for v in value]
    return value
