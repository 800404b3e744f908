"""Old home of the results writers: a re-export shim of :mod:`streambench.results`, kept so that
code written against the first version (``from streambench.report import write_outputs``) keeps
working. It warns (``DeprecationWarning``) when imported; the package itself uses
:mod:`streambench.results` (typed documents) and never imports it.

Every function here takes a results document or a configuration entry either as the typed object
(:class:`~streambench.results.ResultsDocument`, :class:`~streambench.results.ConfigurationResult`)
or as a dict (the ``streambench.results/1`` shape, or a results/2 one read from a file), converts it
once and hands it to :mod:`streambench.results`. :func:`load_document` returns a plain dict
(results/2 form).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .results import compare as _compare
from .results import writers as _writers
from .results.compare import CompareRow, check_threshold
from .results.environment import environment
from .results.outputs import atomic_write_text
from .results.report import tables as _tables
from .results.report.load_plot import plot_figures as _plot_figures
from .results.report.plot import plot_document as _plot_document
from .results.schema import (
    SCHEMA,
    ConfigurationResult,
    ResultsDocument,
    as_configuration,
    new_document,
)
from .results.validate import SCHEMA_READERS, load_document
from .results.validate import validate_document as _validate_document
from .results.writers import ALL_IN_ONE_COLUMNS, md_text

warnings.warn(
    "streambench.report is deprecated: use streambench.results (ResultsDocument, write_outputs, "
    "load_document ...)",
    DeprecationWarning,
    stacklevel=2,
)

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
    "csv_row",
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


#: a document or an entry: typed, or the dict a runner builds / a file holds
Document = ResultsDocument | Mapping[str, Any]
Entry = ConfigurationResult | Mapping[str, Any]


def _doc(doc: Document, where: str = "results") -> ResultsDocument:
    return ResultsDocument.coerce(doc, where)


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
    return _plot_document(_doc(doc), path)


def plot_figures(doc: Document, path: str | os.PathLike[str]) -> list[Path]:
    """:func:`plot_document` to ``path`` and, for an endpoint sweep or search with several load
    points, the load figure beside it; the files written."""
    return _plot_figures(_doc(doc), path)


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
