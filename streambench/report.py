"""Results of a benchmark sweep: the older interface of :mod:`streambench.results`, kept for
the commands that build plain dicts (``run``, ``endpoint``, ``distributed``) and for callers of
this module.

Every function here takes a results document or a configuration entry either as the typed object
(:class:`~streambench.results.ResultsDocument`, :class:`~streambench.results.ConfigurationResult`)
or as the dict the runners build (the ``streambench.results/1`` shape, or a results/2 one read
from a file), converts it once (:meth:`ResultsDocument.from_dict`) and hands it to
:mod:`streambench.results`. Files are written as ``streambench.results/2``
(``docs/results-schema.md``); :func:`load_document` still returns a plain dict (results/2 form).

Units: the JSON keeps the core's units (seconds, bytes); the CSV, the Markdown table and the console
tables show milliseconds and GiB (2**30 bytes; the CSV's column names say "GB", as the ipex-llm
all-in-one benchmark wrote; the console and Markdown say GiB).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .results import compare as _compare
from .results import writers as _writers
from .results.compare import (
    COMPARE_METRICS,
    MAX_THRESHOLD,
    CompareRow,
    check_threshold,
)
from .results.compare import unusable as _unusable
from .results.environment import dist_version as _dist_version
from .results.environment import environment, library_versions
from .results.outputs import atomic_write_text
from .results.report import plot as _plot
from .results.report import tables as _tables
from .results.report.plot import IQR_FROM_TRIALS
from .results.report.tables import compare_table, progress_bar
from .results.schema import SCHEMA, ConfigurationResult, ResultsDocument, as_configuration
from .results.validate import (
    _HINT,
    SCHEMA_READERS,
    _parse_json,
    _read_v1,
    _read_v2,
    _schema_version,
    load_document,
)
from .results.validate import validate_document as _validate_document
from .results.values import GiB
from .results.values import finite as _finite
from .results.values import finite_number as _finite_number
from .results.values import fmt as _fmt
from .results.values import is_int as _is_int
from .results.values import is_number as _is_number
from .results.values import kind as _kind
from .results.values import ms as _ms
from .results.values import one_line as _one_line
from .results.values import scaled as _scaled
from .results.writers import ALL_IN_ONE_COLUMNS, EXTRA_COLUMNS, MD_COLUMNS, md_text

__all__ = [
    "ALL_IN_ONE_COLUMNS",
    "OUTPUT_FORMATS",
    "SCHEMA",
    "SCHEMA_READERS",
    "CompareRow",
    "actual_tokens",
    "atomic_write_text",
    "check_threshold",
    "compare_documents",
    "configuration_table",
    "csv_rows",
    "environment",
    "load_document",
    "md_text",
    "new_document",
    "plot_document",
    "plot_figures",
    "render_csv",
    "render_json",
    "render_jsonl",
    "render_markdown",
    "validate_document",
    "write_outputs",
]

#: names kept for callers of the older private helpers
_KEPT = (
    COMPARE_METRICS,
    MAX_THRESHOLD,
    IQR_FROM_TRIALS,
    GiB,
    EXTRA_COLUMNS,
    MD_COLUMNS,
    compare_table,
    progress_bar,
    library_versions,
    _HINT,
    _parse_json,
    _read_v1,
    _read_v2,
    _schema_version,
    _dist_version,
    _finite,
    _finite_number,
    _fmt,
    _is_int,
    _is_number,
    _kind,
    _ms,
    _one_line,
    _scaled,
    _unusable,
)

#: a document or an entry: typed, or the dict a runner builds / a file holds
Document = ResultsDocument | Mapping[str, Any]
Entry = ConfigurationResult | Mapping[str, Any]


def _doc(doc: Document, where: str = "results") -> ResultsDocument:
    return ResultsDocument.coerce(doc, where)


def new_document(
    command: str, env: dict[str, Any], settings: dict[str, Any] | None = None
) -> dict[str, Any]:
    """An empty results document as a dict (``configurations`` are appended as they finish, in
    the form the runners build; the writers convert it)."""
    return {
        "schema": SCHEMA,
        "command": command,
        "environment": env,
        "settings": settings or {},
        "configurations": [],
        "interrupted": False,
    }


def validate_document(doc: Any, source: str = "results") -> dict[str, Any]:
    """Check a results document read from ``source`` (a file name, for messages) and return it
    in the current (results/2) form. Raises :class:`~streambench.errors.UsageError`, one line
    naming ``source``, the place and what is wrong.

    >>> validate_document({"schema": "streambench.results/1", "configurations": {}}, "r.json")
    Traceback (most recent call last):
    ...
    streambench.errors.UsageError: r.json: 'configurations' is an object, expected a list; ...
    """
    return _validate_document(doc, source)


def actual_tokens(entry: Entry, sep: str = "-") -> str:
    """The actual input/output tokens of an entry, e.g. ``"32-32"``; ``"?"`` for an unknown side
    (``"?-8"``), ``""`` when neither is known.

    >>> actual_tokens({"actual_input_tokens": None, "actual_output_tokens": 8}, "/")
    '?/8'
    """
    return _writers.actual_tokens(as_configuration(entry), sep)


def csv_row(entry: Entry) -> dict[str, Any]:
    """One CSV row: the all-in-one columns (means over trials, ms) then the extra columns."""
    return _writers.csv_row(as_configuration(entry))


def csv_rows(doc: Document) -> list[dict[str, Any]]:
    """One row per configuration, in order."""
    return _writers.csv_rows(_doc(doc))


def render_csv(doc: Document) -> str:
    return _writers.render_csv(_doc(doc))


def render_json(doc: Document) -> str:
    return _writers.render_json(_doc(doc))


def render_jsonl(doc: Document) -> str:
    """One JSON object per configuration (with the schema and environment in each line)."""
    return _writers.render_jsonl(_doc(doc))


def render_markdown(doc: Document) -> str:
    return _writers.render_markdown(_doc(doc))


#: output format by file extension (each takes a document, typed or a dict)
OUTPUT_FORMATS: dict[str, Callable[[Document], str]] = {
    ".csv": render_csv,
    ".json": render_json,
    ".jsonl": render_jsonl,
    ".md": render_markdown,
    ".html": lambda doc: _writers.render_html(_doc(doc)),
}


def check_output_paths(paths: Sequence[str]) -> None:
    """``ValueError`` (one line) for an output whose extension has no writer."""
    _writers.check_output_paths(paths)


def write_outputs(paths: Sequence[str], doc: Document) -> None:
    """Write ``doc`` to every path, the format chosen by extension; each write atomic."""
    _writers.write_outputs(paths, _doc(doc))


def configuration_table(entry: Entry) -> Any:
    """A rich renderable for one configuration (see
    :func:`streambench.results.report.tables.configuration_table`)."""
    return _tables.configuration_table(as_configuration(entry))


def plot_document(doc: Document, path: str | os.PathLike[str]) -> Path:
    """Write a PNG of per-token latency and memory (see
    :func:`streambench.results.report.plot.plot_document`)."""
    return _plot.plot_document(_doc(doc), path)


def plot_figures(doc: Document, path: str | os.PathLike[str]) -> list[Path]:
    """:func:`plot_document` to ``path`` and, for an endpoint sweep or search with several load
    points, the load figure beside it (``NAME-load.EXT``,
    :func:`streambench.results.report.load_plot.plot_load`); the files written."""
    from .results.report import load_plot

    typed = _doc(doc)
    written = [_plot.plot_document(typed, path)]
    if load_plot.has_load(typed):
        target = load_plot.load_path(path)
        load_plot.plot_load(typed, target)
        written.append(target)
    return written


def compare_documents(
    old: Document,
    new: Document,
    threshold: float,
    ignore: Sequence[str] = (),
    strict: bool = False,
) -> tuple[list[CompareRow], bool]:
    """Compare the configurations of two results documents (see
    :func:`streambench.results.compare.compare_documents`). ``ValueError`` for a threshold that
    is not finite in ``[0, MAX_THRESHOLD]`` or a document without a list of configurations."""
    check_threshold(threshold)
    return _compare.compare_documents(
        _doc(old, "OLD"), _doc(new, "NEW"), threshold, frozenset(ignore), strict
    )


#: doctest examples of the functions re-exported here
__test__ = {"md_text": md_text, "check_threshold": check_threshold}
