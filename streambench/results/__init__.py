"""Results of a benchmark: the typed results document (``streambench.results/2``), reading and
checking files, the writers (CSV, JSON, JSON Lines, Markdown), console tables, the plot and the
regression gate of ``streambench compare``. Pure Python plus rich; matplotlib only for plots; no
torch, so ``streambench plot`` and ``streambench compare`` start fast.

- :mod:`.schema`: :class:`ResultsDocument`, :class:`ConfigurationResult` and their parts, with
  ``from_dict`` (results/2 and results/1) and ``to_dict`` (results/2);
- :mod:`.validate`: :func:`load_document`/:func:`load_results` and :data:`SCHEMA_READERS`;
- :mod:`.writers`, :mod:`.tables`, :mod:`.plot`, :mod:`.compare`, :mod:`.environment`.

The full schema: ``docs/results-schema.md``. :mod:`streambench.report` is the older interface
(dicts in, converted here once).
"""

from __future__ import annotations

from .compare import COMPARE_METRICS, MAX_THRESHOLD, CompareRow, check_threshold, compare_documents
from .environment import environment, library_versions
from .report.plot import plot_document
from .report.tables import compare_table, configuration_table, progress_bar
from .schema import (
    SCHEMA,
    Aggregates,
    ConfigurationResult,
    ConfigurationSettings,
    Environment,
    ResultsDocument,
    RunRecord,
    RunSetup,
    Statistics,
)
from .validate import SCHEMA_READERS, load_document, load_results, validate_document
from .writers import (
    ALL_IN_ONE_COLUMNS,
    CSV_COLUMNS,
    EXTRA_COLUMNS,
    OUTPUT_FORMATS,
    actual_tokens,
    csv_row,
    render_csv,
    render_json,
    render_jsonl,
    render_markdown,
    write_outputs,
)

__all__ = [
    "ALL_IN_ONE_COLUMNS",
    "COMPARE_METRICS",
    "CSV_COLUMNS",
    "EXTRA_COLUMNS",
    "MAX_THRESHOLD",
    "OUTPUT_FORMATS",
    "SCHEMA",
    "SCHEMA_READERS",
    "Aggregates",
    "CompareRow",
    "ConfigurationResult",
    "ConfigurationSettings",
    "Environment",
    "ResultsDocument",
    "RunRecord",
    "RunSetup",
    "Statistics",
    "actual_tokens",
    "check_threshold",
    "compare_documents",
    "compare_table",
    "configuration_table",
    "csv_row",
    "environment",
    "library_versions",
    "load_document",
    "load_results",
    "plot_document",
    "progress_bar",
    "render_csv",
    "render_json",
    "render_jsonl",
    "render_markdown",
    "validate_document",
    "write_outputs",
]
