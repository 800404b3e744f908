"""Reading results files: ``.json`` or ``.jsonl``, checked before any reader sees them.

:func:`load_document` returns the document in the current (results/2) dict form,
:func:`load_results` as a :class:`~streambench.results.schema.ResultsDocument`. Every problem is
a :class:`~streambench.errors.UsageError` (a ``ValueError``; exit 2 on the command line) of one
line naming the file and the place, e.g.
``r.json: configurations[1].aggregates.first_token_s.median is a string ('0.002'), ...``.
:data:`SCHEMA_READERS` holds one reader per schema version (results/1 files are converted).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..reading import read_bounded
from .quality import check_quality
from .schema import AGGREGATE_STATISTICS, SCHEMA, SCHEMA_PREFIX, ResultsDocument
from .values import is_int, is_number, kind

__all__ = ["SCHEMA_READERS", "load_document", "load_results", "validate_document"]

#: what to do about a file that is not a results document
_HINT = "give a results file written by streambench run -o FILE.json (or .jsonl)"
_DAMAGED = (
    "the file is damaged or not a streambench results file "
    "(write a new one with streambench run -o)"
)


def load_results(path: str | os.PathLike[str]) -> ResultsDocument:
    """:func:`load_document`, typed."""
    return ResultsDocument.from_dict(load_document(path), str(path))


def load_document(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a results document written as ``.json`` (or ``.jsonl``: one configuration per line),
    check it (:func:`validate_document`) and return it in the results/2 form. Raises
    :class:`~streambench.errors.UsageError` with one line naming the file and what is wrong."""
    p = Path(path)
    data = read_bounded(p, "results")  # a regular file (not /dev/zero, not a FIFO), at most 1 GiB
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{path} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}): "
            "not a results file; give the .json or .jsonl that streambench run -o wrote"
        ) from None
    if p.suffix.lower() == ".jsonl":
        return _load_lines(text, str(path))
    return validate_document(_parse_json(text, str(path), "is not JSON"), str(path))


def _load_lines(text: str, path: str) -> dict[str, Any]:
    """JSON Lines: each line a configuration with ``environment`` (and, from results/2 on,
    ``schema`` and ``command``; a line without ``schema`` is results/1)."""
    lines = []
    for number, line in enumerate(text.split("\n"), 1):  # JSON Lines: "\n" only
        if not line.strip():
            continue
        value = _parse_json(line, f"{path} line {number}", "is not JSON")
        if not isinstance(value, dict):
            raise UsageError(
                f"{path} line {number} is {kind(value)}, not a configuration object; {_HINT}"
            )
        lines.append((number, value))
    if not lines:
        raise UsageError(f"{path} is empty: no configuration in it; {_HINT}")
    env = lines[0][1].get("environment", {})
    command = lines[0][1].get("command", "run")
    doc: dict[str, Any] = {
        "schema": "streambench.results/1",
        "command": command if isinstance(command, str) else "run",
        "environment": env if isinstance(env, dict) else {},
        "settings": {},
        "configurations": [],
        "interrupted": False,
    }
    versions = set()
    for number, line in lines:
        schema = line.get("schema", "streambench.results/1")  # results/1 lines carry none
        versions.add(_schema_version(schema, f"{path} line {number}"))
        if len(versions) > 1:
            raise UsageError(f"{path} line {number}: lines of different schemas; {_HINT}")
        doc["schema"] = schema
        doc["configurations"].append(
            {k: v for k, v in line.items() if k not in ("environment", "schema", "command")}
        )
    return validate_document(doc, path)


def _parse_json(text: str, where: str, what: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError:
        raise UsageError(f"{where} {what}: nested too deeply; {_HINT}") from None
    except ValueError as exc:
        if not isinstance(exc, json.JSONDecodeError):  # int()'s limit, not a syntax error
            msg = f"{where} {what}: a number of more than 4,300 digits; {_DAMAGED}"
            raise UsageError(msg) from None
        more = ""
        if str(exc).startswith("Extra data"):
            more = " (one JSON value per line? name the file .jsonl)"
        raise UsageError(f"{where} {what}: {exc}{more}") from None


def _schema_version(schema: Any, where: str) -> int:
    """The version number of a ``schema`` value that this streambench reads, else UsageError."""
    if not isinstance(schema, str):
        raise UsageError(
            f"{where}: 'schema' is {kind(schema)}, expected a string like {SCHEMA!r}; {_HINT}"
        )
    prefix, _, number = schema.partition("/")
    if prefix != SCHEMA_PREFIX or not (number.isascii() and number.isdigit()):
        raise UsageError(f"{where}: unknown schema {schema[:80]!r}, expected {SCHEMA!r}; {_HINT}")
    version = int(number)
    if version > max(SCHEMA_READERS):
        raise UsageError(
            f"{where} was written by a newer streambench (schema {schema!r}; this one reads "
            f"up to {SCHEMA!r}): upgrade streambench (pip install -U streambench)"
        )
    if version not in SCHEMA_READERS:
        raise UsageError(f"{where}: unknown schema version {schema!r}, expected {SCHEMA!r}")
    return version


def validate_document(doc: Any, source: str = "results") -> dict[str, Any]:
    """Check a results document read from ``source`` (a file name, for messages) and return it
    in the current (results/2) form: :data:`SCHEMA_READERS` turns each known version into it.
    Raises :class:`~streambench.errors.UsageError`, one line naming ``source``, the place
    (e.g. ``configurations[2].aggregates.first_token_s.median``) and what is wrong."""
    if not isinstance(doc, dict):
        raise UsageError(f"{source} holds {kind(doc)}, not a results document; {_HINT}")
    if "schema" not in doc:
        raise UsageError(f"{source} is not a streambench results file (no 'schema' key); {_HINT}")
    version = _schema_version(doc["schema"], source)
    return SCHEMA_READERS[version](doc, source)


_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "number": (is_number, "a number or null"),
    "int": (is_int, "a whole number or null"),
    "string": (lambda v: isinstance(v, str), "a string"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "object": (lambda v: isinstance(v, dict), "an object"),
    "list": (lambda v: isinstance(v, list), "a list"),
    "numbers": (lambda v: isinstance(v, list), "a list of numbers"),
}


class _Checker:
    """Type checks that raise one :class:`UsageError` line naming the file and the place."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, value: Any, expected: str) -> None:
        raise UsageError(
            f"{self.source}: {where} is {kind(value)}, expected {expected}; {_DAMAGED}"
        )

    def field(self, obj: dict[str, Any], key: str, where: str, what: str, required=False) -> Any:
        """Check ``obj[key]`` against ``what`` (a key of ``_CHECKS``; ``numbers``: a list of
        numbers or nulls); null always passes unless ``required``."""
        place = f"{where}.{key}" if where else repr(key)
        if key not in obj:
            if required:
                raise UsageError(f"{self.source}: {place} is missing; {_DAMAGED}")
            return None
        value = obj[key]
        if value is None and not required:
            return None
        test, expected = _CHECKS[what]
        if not test(value):
            self.fail(place, value, expected)
        if what == "numbers":
            for i, item in enumerate(value):
                if item is not None and not is_number(item):
                    self.fail(f"{place}[{i}]", item, "a number or null")
        return value

    def fields(self, obj: dict[str, Any], keys: tuple[str, ...], where: str, what: str) -> None:
        for key in keys:
            self.field(obj, key, where, what)


def _check_document(c: _Checker, doc: dict[str, Any]) -> list[Any]:
    c.field(doc, "command", "", "string")
    c.field(doc, "environment", "", "object")
    c.field(doc, "settings", "", "object")
    c.field(doc, "interrupted", "", "bool")
    if not isinstance(doc.get("configurations"), list):
        c.fail("'configurations'", doc.get("configurations"), "a list")
    for i, entry in enumerate(doc["configurations"]):
        if not isinstance(entry, dict):
            c.fail(f"configurations[{i}]", entry, "a configuration object")
    return doc["configurations"]


def _check_entry(c: _Checker, entry: dict[str, Any], where: str, identity: str) -> None:
    """The checks shared by results/1 and /2; ``identity``: where the settings are."""
    c.fields(entry, ("id", "label", "started_at", "error"), where, "string")
    c.field(entry, "status", where, "string", required=True)
    ident = c.field(entry, identity, where, "object", required=True)
    c.field(ident, "model", f"{where}.{identity}", "string")
    for key in ("input_tokens", "output_tokens", "batch_size", "num_beams", "concurrency"):
        c.field(ident, key, f"{where}.{identity}", "int")
    c.fields(entry, ("actual_input_tokens", "actual_output_tokens"), where, "int")
    c.fields(entry, ("model_loading_time_s", "duration_s"), where, "number")
    c.field(entry, "encoder_decoder", where, "bool")
    c.field(entry, "csv_extra", where, "object")
    c.field(entry, "ranks", where, "object")
    for i, warning in enumerate(c.field(entry, "warnings", where, "list") or []):
        if not isinstance(warning, str):
            c.fail(f"{where}.warnings[{i}]", warning, "a string")
    c.field(entry, "stopped", where, "string")
    c.field(entry, "adaptive", where, "object")
    interference = c.field(entry, "interference", where, "object")
    if interference is not None:
        place = f"{where}.interference"
        c.field(interference, "busy_threshold", place, "number")
        c.field(interference, "trial_started_at", place, "numbers")
        for j, load in enumerate(c.field(interference, "trials", place, "list") or []):
            if not isinstance(load, dict):
                c.fail(f"{place}.trials[{j}]", load, "an object")
            for key in ("wall_s", "other_cpu_share", "steal_share", "own_cpu_share"):
                c.field(load, key, f"{place}.trials[{j}]", "number")


def _check_aggregates(c: _Checker, agg: dict[str, Any], where: str, stat_check: Any) -> None:
    for key in AGGREGATE_STATISTICS:
        stats = c.field(agg, key, where, "object")
        if stats is not None:
            stat_check(c, stats, f"{where}.{key}")
    for key in ("peak_memory_bytes", "runs", "warmup", "incomplete", "new_tokens"):
        c.field(agg, key, where, "number")
    c.field(agg, "memory_kind", where, "string")


def _check_runs(c: _Checker, entry: dict[str, Any], where: str, stat_check: Any) -> None:
    for runs in ("warmup_runs", "trials"):
        for j, run in enumerate(c.field(entry, runs, where, "list") or []):
            place = f"{where}.{runs}[{j}]"
            if not isinstance(run, dict):
                c.fail(place, run, "a run object")
            for key in ("first_token_s", "rest_token_mean_s", "peak_memory_bytes"):
                c.field(run, key, place, "number")
            for key in ("token_latencies_s", "memory_per_token_bytes"):
                c.field(run, key, place, "numbers")
            if stat_check is not None:
                stats = c.field(run, "rest_token_stats_s", place, "object")
                if stats is not None:
                    stat_check(c, stats, f"{place}.rest_token_stats_s")


def _check_v1_stats(c: _Checker, stats: dict[str, Any], where: str) -> None:
    c.fields(stats, ("n", "mean", "median", "p90", "p99", "stdev", "min", "max"), where, "number")


def _check_v2_stats(c: _Checker, stats: dict[str, Any], where: str) -> None:
    c.fields(stats, ("n", "mean", "median", "stdev", "min", "max"), where, "number")
    c.field(stats, "ci95_note", where, "string")
    ci = c.field(stats, "ci95", where, "numbers")
    if ci is not None and (len(ci) != 2 or None in ci or ci[0] > ci[1]):
        c.fail(f"{where}.ci95", ci, "[low, high] with low <= high, or null")
    pct = c.field(stats, "percentiles", where, "object")
    for key in pct or {}:
        try:
            ok = 0 <= float(key) <= 100
        except ValueError:
            ok = False
        if not ok:
            c.fail(f"{where}.percentiles", key, "percent keys from 0 to 100 (e.g. '90')")
        c.field(pct, key, f"{where}.percentiles", "number")


def _read_v1(doc: dict[str, Any], source: str) -> dict[str, Any]:
    """Check a ``streambench.results/1`` document and convert it to results/2."""
    c = _Checker(source)
    for i, entry in enumerate(_check_document(c, doc)):
        where = f"configurations[{i}]"
        _check_entry(c, entry, where, "config")
        agg = c.field(entry, "aggregates", where, "object")
        if agg is not None:
            _check_aggregates(c, agg, f"{where}.aggregates", _check_v1_stats)
        _check_runs(c, entry, where, None)
    return ResultsDocument.from_dict(doc, source).to_dict()


def _read_v2(doc: dict[str, Any], source: str) -> dict[str, Any]:
    """Check a ``streambench.results/2`` document (the current form: returned as it is)."""
    c = _Checker(source)
    for i, entry in enumerate(_check_document(c, doc)):
        where = f"configurations[{i}]"
        _check_entry(c, entry, where, "settings")
        c.field(entry, "config", where, "object", required=True)
        c.field(entry["settings"], "request_rate", f"{where}.settings", "number")
        c.field(entry["settings"], "chat", f"{where}.settings", "bool")
        agg = c.field(entry, "aggregates", where, "object")
        if agg is not None:
            _check_aggregates(c, agg, f"{where}.aggregates", _check_v2_stats)
        _check_runs(c, entry, where, _check_v2_stats)
        check_quality(entry.get("quality"), f"{where}.quality", source)
    return doc


#: how to read each schema version this streambench knows: a function that checks a document of
#: that version and returns it in the current in-memory form (results/2). A new version adds its
#: reader here (and the older ones convert to the new form), e.g. ``SCHEMA_READERS[3] =
#: _read_v3``; a version above the largest key is "newer: upgrade".
SCHEMA_READERS: dict[int, Callable[[dict[str, Any], str], dict[str, Any]]] = {
    1: _read_v1,
    2: _read_v2,
}
