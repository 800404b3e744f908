"""Results documents with known trials, for the verdicts of ``streambench compare``: edit a real
file's per-trial values (and the aggregate they make, ``ci95`` included), or build a synthetic
results/2 document from per-trial values."""

from __future__ import annotations

import copy
from typing import Any

from streambench.results.percentiles import Statistics
from streambench.results.trial_intervals import interval_fields
from streambench.stats import describe


def stats_of(values: list[float]) -> dict[str, Any]:
    """The ``aggregates`` statistics object that ``values`` (one per trial) make."""
    stats = Statistics.from_stats(describe(values))
    assert stats is not None
    return {**stats.to_dict(), **interval_fields(values)}


def set_trials(entry: dict[str, Any], key: str, values: list[float]) -> None:
    """Give a configuration entry these per-trial values of ``key`` and their statistic."""
    trials = entry["trials"]
    assert len(trials) == len(values), (len(trials), len(values))
    for run, value in zip(trials, values):
        run[key] = value
    entry["aggregates"][key] = stats_of(values)


def scale_trials(entry: dict[str, Any], key: str, factor: float) -> None:
    """Multiply the per-trial values of ``key`` (and so its statistic) by ``factor``."""
    set_trials(entry, key, [run[key] * factor for run in entry["trials"]])


def synthetic_entry(
    first: list[float],
    rest: list[float] | None = None,
    model: str = "m",
    further: dict[str, Any] | None = None,
    warnings: list[str] | None = None,
    **config: Any,
) -> dict[str, Any]:
    """A results/2 configuration (8-4, batch 1) whose trials have these first-token and
    later-token latencies (s); ``config``: ``dtype``, ``device`` …"""
    rest = rest if rest is not None else [v / 10 for v in first]
    settings: dict[str, Any] = {
        "model": model,
        "input_tokens": 8,
        "output_tokens": 4,
        "batch_size": 1,
        "num_beams": 1,
    }
    if further:
        settings["further"] = dict(further)
    entry: dict[str, Any] = {
        "label": f"{model} 8-4 bs1" + "".join(f" {k}={v}" for k, v in (further or {}).items()),
        "settings": settings,
        "config": {
            "dtype": "float32",
            "device": "cpu",
            "low_bit": None,
            "warmup": 0,
            "trials": len(first),
            **config,
        },
        "status": "ok",
        "error": None,
        "aggregates": {
            "runs": len(first),
            "warmup": 0,
            "incomplete": 0,
            "new_tokens": 4,
            "batch_size": 1,
            "peak_memory_bytes": 2**30,
        },
        "trials": [{"first_token_s": f, "rest_token_mean_s": r} for f, r in zip(first, rest)],
    }
    entry["aggregates"]["first_token_s"] = stats_of(first)
    entry["aggregates"]["rest_token_mean_s"] = stats_of(rest)
    if warnings is not None:
        entry["warnings"] = list(warnings)
    return entry


def synthetic_doc(*entries: dict[str, Any]) -> dict[str, Any]:
    """A results/2 document of these configurations."""
    return {
        "schema": "streambench.results/2",
        "command": "run",
        "environment": {},
        "settings": {},
        "configurations": [copy.deepcopy(e) for e in entries],
        "interrupted": False,
    }
