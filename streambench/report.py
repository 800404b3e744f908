"""Results of a benchmark sweep: the results document, its writers (CSV, JSON, JSONL, Markdown),
console tables, plots and comparisons. Pure Python plus rich (tables); matplotlib only for plots;
no torch, so ``streambench plot`` and ``streambench compare`` start fast.

The interface is generic so that every command that measures configurations can share it
(``streambench run``, and other commands such as an endpoint benchmark):

- a *results document* (:func:`new_document`) holds ``environment``, ``settings`` and a list of
  ``configurations``;
- a *configuration entry* is a dict with at least ``id``, ``label``, ``config`` (free keys: what was
  measured), ``status`` (``"ok"``, ``"failed"``, ``"interrupted"``), ``error``, ``aggregates``
  (statistics over the measured trials) and ``trials`` (one :meth:`RunResult.to_dict` per measured
  run, per-token lists included). The full schema: ``docs/results-schema.md``.

Units: the JSON keeps the core's units (seconds, bytes); the CSV, the Markdown table and the console
tables show milliseconds and GiB ("GB", as the ipex-llm all-in-one benchmark wrote).

Writes are atomic: each file is written to a temporary file beside it and moved into place with
``os.replace``, so a reader never sees half a file, and a crash keeps the previous complete file.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from .errors import UsageError
from .outputs import atomic_write_text

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
    "render_csv",
    "render_json",
    "render_jsonl",
    "render_markdown",
    "validate_document",
    "write_outputs",
]

#: identifies the results format; bump the number on incompatible changes
SCHEMA = "streambench.results/1"

GiB = 1024**3

#: the ipex-llm all-in-one benchmark's CSV columns, first and in this order
ALL_IN_ONE_COLUMNS = [
    "model",
    "1st token avg latency (ms)",
    "2+ avg latency (ms/token)",
    "encoder time (ms)",
    "input/output tokens",
    "batch_size",
    "actual input/output tokens",
    "num_beams",
    "low_bit",
    "cpu_embedding",
    "model loading time (s)",
    "peak mem (GB)",
]

#: streambench's own columns, after the all-in-one ones
EXTRA_COLUMNS = [
    "status",
    "error",
    "device",
    "dtype",
    "trials",
    "warmup",
    "1st token median (ms)",
    "1st token p90 (ms)",
    "1st token stdev (ms)",
    "2+ median (ms/token)",
    "2+ p90 (ms/token)",
    "2+ stdev (ms/token)",
    "decode tokens/s",
    "pre-prompt time (ms)",
    "memory kind",
]


# -- the document --------------------------------------------------------------------------------
def environment(device: Any = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Versions and machine: streambench, Python, torch and transformers (when imported or
    importable), device and its name, CPU model, OS, date (UTC, ISO 8601)."""
    import datetime

    from . import __version__
    from .devices import cpu_model

    env: dict[str, Any] = {
        "streambench": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": cpu_model() or platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "argv": list(sys.argv),
    }
    env.update(library_versions())
    if device is not None:
        from .devices import device_name

        env["device"] = str(device)
        env["device_name"] = device_name(device)
    if extra:
        env.update(extra)
    return env


def library_versions() -> dict[str, str]:
    """Versions of torch and transformers (installed), and of accelerate, ipex-llm and
    intel-extension-for-pytorch where loaded. Call again after loading a model to catch the
    libraries that loading imported."""
    out: dict[str, str] = {}
    for mod, dist in (
        ("torch", "torch"),
        ("transformers", "transformers"),
        ("accelerate", "accelerate"),
        ("ipex_llm", "ipex-llm"),
        ("intel_extension_for_pytorch", "intel-extension-for-pytorch"),
    ):
        module = sys.modules.get(mod)
        version = getattr(module, "__version__", None) if module is not None else None
        if version is None and (module is not None or mod in ("torch", "transformers")):
            version = _dist_version(dist)
        if version is not None:
            out[mod] = str(version)
    return out


def _dist_version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def new_document(
    command: str, env: dict[str, Any], settings: dict[str, Any] | None = None
) -> dict[str, Any]:
    """An empty results document (``configurations`` are appended as they finish)."""
    return {
        "schema": SCHEMA,
        "command": command,
        "environment": env,
        "settings": settings or {},
        "configurations": [],
        "interrupted": False,
    }


def load_document(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a results document written as ``.json`` (or ``.jsonl``: one configuration per line)
    and check its structure (:func:`validate_document`), so that every reader gets typed data.
    Raises :class:`~streambench.errors.UsageError` (a ``ValueError``) with one line that names
    the file and what is wrong when it is not a results document this streambench can read."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{path} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}): "
            "not a results file; give the .json or .jsonl that streambench run -o wrote"
        ) from None
    if p.suffix.lower() == ".jsonl":
        lines = []
        for number, line in enumerate(text.split("\n"), 1):  # JSON Lines: "\n" only
            if not line.strip():
                continue
            value = _parse_json(line, f"{path} line {number}", "is not JSON")
            if not isinstance(value, dict):
                raise UsageError(
                    f"{path} line {number} is {_kind(value)}, not a configuration object; {_HINT}"
                )
            lines.append((number, value))
        if not lines:
            raise UsageError(f"{path} is empty: no configuration in it; {_HINT}")
        env = lines[0][1].get("environment", {})
        doc = new_document("run", env if isinstance(env, dict) else {})
        doc["configurations"] = []
        versions = set()
        for number, line in lines:
            schema = line.get("schema", SCHEMA)  # lines written so far carry none: results/1
            versions.add(_schema_version(schema, f"{path} line {number}"))
            if len(versions) > 1:
                raise UsageError(f"{path} line {number}: lines of different schemas; {_HINT}")
            doc["schema"] = schema
            doc["configurations"].append(
                {k: v for k, v in line.items() if k not in ("environment", "schema")}
            )
        return validate_document(doc, str(path))
    doc = _parse_json(text, str(path), "is not JSON")
    return validate_document(doc, str(path))


#: what to do about a file that is not a results document
_HINT = "give a results file written by streambench run -o FILE.json (or .jsonl)"


def _parse_json(text: str, where: str, what: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError:
        raise UsageError(f"{where} {what}: nested too deeply; {_HINT}") from None
    except ValueError as exc:
        more = ""
        if str(exc).startswith("Extra data"):
            more = " (one JSON value per line? name the file .jsonl)"
        raise UsageError(f"{where} {what}: {exc}{more}") from None


def _schema_version(schema: Any, where: str) -> int:
    """The version number of a ``schema`` value that this streambench reads, else UsageError."""
    if not isinstance(schema, str):
        raise UsageError(
            f"{where}: 'schema' is {_kind(schema)}, expected a string like {SCHEMA!r}; {_HINT}"
        )
    prefix, _, number = schema.partition("/")
    if prefix != SCHEMA.partition("/")[0] or not (number.isascii() and number.isdigit()):
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
    in the current in-memory form: :data:`SCHEMA_READERS` turns each known schema version into
    it. Raises :class:`~streambench.errors.UsageError`, one line naming ``source``, the place
    (e.g. ``configurations[2].aggregates.first_token_s.median``) and what is wrong.

    >>> validate_document({"schema": "streambench.results/1", "configurations": {}}, "r.json")
    Traceback (most recent call last):
    ...
    streambench.errors.UsageError: r.json: 'configurations' is an object, expected a list; ...
    """
    if not isinstance(doc, dict):
        raise UsageError(f"{source} holds {_kind(doc)}, not a results document; {_HINT}")
    if "schema" not in doc:
        raise UsageError(f"{source} is not a streambench results file (no 'schema' key); {_HINT}")
    version = _schema_version(doc["schema"], source)
    return SCHEMA_READERS[version](doc, source)


def _kind(value: Any) -> str:
    """How a JSON value looks, for messages: ``a string ('fast')``, ``a list``, ``null``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return f"a string ({value[:40]!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _is_number(value: Any) -> bool:
    """A JSON number (``true``/``false`` are not numbers, although Python's bool is an int)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite_number(value: Any) -> bool:
    return _is_number(value) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Checker:
    """Type checks of a results document that raise one :class:`UsageError` line naming the
    file and the place."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, value: Any, expected: str) -> None:
        raise UsageError(
            f"{self.source}: {where} is {_kind(value)}, expected {expected}; the file is damaged "
            "or not a streambench results file (write a new one with streambench run -o)"
        )

    def field(self, obj: dict[str, Any], key: str, where: str, kind: str, required=False) -> Any:
        """Check ``obj[key]`` against ``kind``: ``number``, ``int``, ``string``, ``bool``,
        ``object``, ``list``, ``numbers`` (a list of numbers or nulls); null always passes unless
        ``required``."""
        place = f"{where}.{key}" if where else repr(key)
        if key not in obj:
            if required:
                raise UsageError(
                    f"{self.source}: {place} is missing; the file is damaged or not a "
                    "streambench results file (write a new one with streambench run -o)"
                )
            return None
        value = obj[key]
        if value is None and not required:
            return None
        ok = {
            "number": _is_number,
            "int": _is_int,
            "string": lambda v: isinstance(v, str),
            "bool": lambda v: isinstance(v, bool),
            "object": lambda v: isinstance(v, dict),
            "list": lambda v: isinstance(v, list),
            "numbers": lambda v: isinstance(v, list),
        }[kind](value)
        expected = {
            "number": "a number or null",
            "int": "a whole number or null",
            "string": "a string",
            "bool": "true or false",
            "object": "an object",
            "list": "a list",
            "numbers": "a list of numbers",
        }[kind]
        if not ok:
            self.fail(place, value, expected)
        if kind == "numbers":
            for i, item in enumerate(value):
                if item is not None and not _is_number(item):
                    self.fail(f"{place}[{i}]", item, "a number or null")
        return value


#: statistics objects of ``aggregates`` and their fields (``{n, mean, median, ...}``)
_AGG_STATS = (
    "first_token_s",
    "rest_token_mean_s",
    "decode_tokens_per_s",
    "decode_throughput_tokens_per_s",
    "prefill_tokens_per_s",
    "pre_prompt_s",
)
_STAT_FIELDS = ("n", "mean", "median", "p90", "p99", "stdev", "min", "max")


def _read_v1(doc: dict[str, Any], source: str) -> dict[str, Any]:
    """Check a ``streambench.results/1`` document (the current form: returned as it is)."""
    c = _Checker(source)
    c.field(doc, "command", "", "string")
    c.field(doc, "environment", "", "object")
    c.field(doc, "settings", "", "object")
    c.field(doc, "interrupted", "", "bool")
    if not isinstance(doc.get("configurations"), list):
        c.fail("'configurations'", doc.get("configurations"), "a list")
    for i, entry in enumerate(doc["configurations"]):
        where = f"configurations[{i}]"
        if not isinstance(entry, dict):
            c.fail(where, entry, "a configuration object")
        for key in ("id", "label", "started_at", "error"):
            c.field(entry, key, where, "string")
        c.field(entry, "status", where, "string", required=True)
        cfg = c.field(entry, "config", where, "object", required=True)
        c.field(cfg, "model", f"{where}.config", "string")
        for key in ("input_tokens", "output_tokens", "batch_size", "num_beams", "concurrency"):
            c.field(cfg, key, f"{where}.config", "int")
        for key in ("actual_input_tokens", "actual_output_tokens"):
            c.field(entry, key, where, "int")
        for key in ("model_loading_time_s", "duration_s"):
            c.field(entry, key, where, "number")
        c.field(entry, "encoder_decoder", where, "bool")
        c.field(entry, "csv_extra", where, "object")
        c.field(entry, "ranks", where, "object")
        agg = c.field(entry, "aggregates", where, "object")
        if agg is not None:
            for key in _AGG_STATS:
                stats = c.field(agg, key, f"{where}.aggregates", "object")
                for stat in _STAT_FIELDS if stats is not None else ():
                    c.field(stats, stat, f"{where}.aggregates.{key}", "number")
            for key in ("peak_memory_bytes", "runs", "warmup", "incomplete", "new_tokens"):
                c.field(agg, key, f"{where}.aggregates", "number")
            c.field(agg, "memory_kind", f"{where}.aggregates", "string")
        for runs in ("warmup_runs", "trials"):
            for j, run in enumerate(c.field(entry, runs, where, "list") or []):
                place = f"{where}.{runs}[{j}]"
                if not isinstance(run, dict):
                    c.fail(place, run, "a run object")
                for key in ("first_token_s", "rest_token_mean_s", "peak_memory_bytes"):
                    c.field(run, key, place, "number")
                for key in ("token_latencies_s", "memory_per_token_bytes"):
                    c.field(run, key, place, "numbers")
    return doc


#: how to read each schema version this streambench knows: a function that checks a document of
#: that version and returns it in the current in-memory form (``streambench.results/1``). A new
#: version adds its reader here (and an older one converts to the new form), e.g.
#: ``SCHEMA_READERS[2] = _read_v2``; a version above the largest key is "newer: upgrade".
SCHEMA_READERS: dict[int, Callable[[dict[str, Any], str], dict[str, Any]]] = {1: _read_v1}


# -- numbers out of an entry ---------------------------------------------------------------------
def _agg(entry: dict[str, Any], key: str, stat: str = "mean") -> float | None:
    """``entry["aggregates"][key][stat]`` when it is a number, else ``None``."""
    value = _raw_stat(entry, key, stat)
    return value if _is_number(value) else None


def actual_tokens(entry: dict[str, Any], sep: str = "-") -> str:
    """The actual input/output tokens of an entry, e.g. ``"32-32"``; ``"?"`` for an unknown side
    (``"?-8"``), ``""`` when neither is known.

    >>> actual_tokens({"actual_input_tokens": None, "actual_output_tokens": 8}, "/")
    '?/8'
    """
    counts = [entry.get("actual_input_tokens"), entry.get("actual_output_tokens")]
    if all(c is None for c in counts):
        return ""
    return sep.join("?" if c is None else str(c) for c in counts)


def _ms(value: float | None) -> float | None:
    return None if value is None else value * 1e3


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.{digits}f}"
    return str(value)


def csv_row(entry: dict[str, Any]) -> dict[str, Any]:
    """One CSV row: the all-in-one columns (means over trials, ms) then the extra columns."""
    cfg = entry.get("config", {})
    agg = entry.get("aggregates") or {}
    peak = agg.get("peak_memory_bytes")
    pre = _ms(_agg(entry, "pre_prompt_s"))
    enc = pre if entry.get("encoder_decoder") else (0.0 if pre is not None else None)
    first = _ms(_agg(entry, "first_token_s"))
    if entry.get("encoder_decoder") and first is not None and pre is not None:
        # As all-in-one (BenchmarkWrapper's first_cost): the encoder is its own column, so the
        # first token counts from the end of the encoder; mean(a - b) = mean(a) - mean(b).
        first -= pre
    actual = actual_tokens(entry)
    io_tokens = ""
    if cfg.get("input_tokens") is not None:
        io_tokens = f"{cfg.get('input_tokens')}-{cfg.get('output_tokens')}"
    row = {
        "model": cfg.get("model", ""),
        "1st token avg latency (ms)": _fmt(first, 3),
        "2+ avg latency (ms/token)": _fmt(_ms(_agg(entry, "rest_token_mean_s")), 3),
        "encoder time (ms)": _fmt(enc, 3),
        "input/output tokens": io_tokens,
        "batch_size": cfg.get("batch_size", ""),
        "actual input/output tokens": actual,
        "num_beams": cfg.get("num_beams", 1),
        "low_bit": cfg.get("low_bit") or "none",
        "cpu_embedding": cfg.get("cpu_embedding", False),
        "model loading time (s)": _fmt(entry.get("model_loading_time_s"), 3),
        "peak mem (GB)": _fmt(peak / GiB if _is_number(peak) else None, 4),
        "status": entry.get("status", ""),
        "error": entry.get("error") or "",
        "device": cfg.get("device", ""),
        "dtype": cfg.get("dtype", ""),
        "trials": len(entry.get("trials") or []),
        "warmup": cfg.get("warmup", ""),
        "1st token median (ms)": _fmt(_ms(_agg(entry, "first_token_s", "median")), 3),
        "1st token p90 (ms)": _fmt(_ms(_agg(entry, "first_token_s", "p90")), 3),
        "1st token stdev (ms)": _fmt(_ms(_agg(entry, "first_token_s", "stdev")), 3),
        "2+ median (ms/token)": _fmt(_ms(_agg(entry, "rest_token_mean_s", "median")), 3),
        "2+ p90 (ms/token)": _fmt(_ms(_agg(entry, "rest_token_mean_s", "p90")), 3),
        "2+ stdev (ms/token)": _fmt(_ms(_agg(entry, "rest_token_mean_s", "stdev")), 3),
        "decode tokens/s": _fmt(_agg(entry, "decode_tokens_per_s"), 1),
        "pre-prompt time (ms)": _fmt(pre, 3),
        "memory kind": agg.get("memory_kind") or "",
    }
    for key, value in (entry.get("csv_extra") or {}).items():  # command-specific columns
        row[key] = value
    return row


def csv_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per configuration, in order."""
    return [csv_row(e) for e in doc.get("configurations", [])]


# -- renderers -----------------------------------------------------------------------------------
def render_csv(doc: dict[str, Any]) -> str:
    rows = csv_rows(doc)
    columns = list(ALL_IN_ONE_COLUMNS) + list(EXTRA_COLUMNS)
    for row in rows:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _finite(value: Any) -> Any:
    """NaN and infinities (not JSON) become ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def render_json(doc: dict[str, Any]) -> str:
    return json.dumps(_finite(doc), indent=1, allow_nan=False, default=str) + "\n"


def render_jsonl(doc: dict[str, Any]) -> str:
    """One JSON object per configuration (with the environment repeated in each line)."""
    env = doc.get("environment", {})
    lines = [
        json.dumps(_finite({"environment": env, **e}), allow_nan=False, default=str)
        for e in doc.get("configurations", [])
    ]
    return "".join(line + "\n" for line in lines)


MD_COLUMNS = [
    ("configuration", lambda e: e.get("label", e.get("id", ""))),
    ("status", lambda e: e.get("status", "")),
    ("1st token mean (ms)", lambda e: _fmt(_ms(_agg(e, "first_token_s")))),
    ("1st token p90 (ms)", lambda e: _fmt(_ms(_agg(e, "first_token_s", "p90")))),
    ("2+ mean (ms/token)", lambda e: _fmt(_ms(_agg(e, "rest_token_mean_s")), 3)),
    ("2+ p90 (ms/token)", lambda e: _fmt(_ms(_agg(e, "rest_token_mean_s", "p90")), 3)),
    ("decode tokens/s", lambda e: _fmt(_agg(e, "decode_tokens_per_s"), 1)),
    ("peak mem (GB)", lambda e: _fmt(_peak_gib(e), 3)),
    ("actual in/out", lambda e: _actual(e)),
]


def _peak_gib(entry: dict[str, Any]) -> float | None:
    peak = (entry.get("aggregates") or {}).get("peak_memory_bytes")
    return peak / GiB if _is_number(peak) else None


def md_text(value: Any) -> str:
    r"""``value`` as one line of Markdown text that cannot break a table row or a list item:
    ``\`` and ``|`` escaped, line breaks as ``<br>``, other control characters as spaces, and
    ``&``, ``<``, ``>`` as HTML entities (no raw HTML from a model name or an error message).

    >>> md_text("a\nb|c")
    'a<br>b\\|c'
    """
    text = str(value).replace("\r\n", "\n").replace("\r", "\n")
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = text.replace("\\", "\\\\").replace("|", "\\|")
    text = "".join(c if c == "\n" or c.isprintable() else " " for c in text)
    return text.replace("\n", "<br>")


def _actual(entry: dict[str, Any]) -> str:
    return actual_tokens(entry)


def render_markdown(doc: dict[str, Any]) -> str:
    env = doc.get("environment", {})
    head = "| " + " | ".join(name for name, _ in MD_COLUMNS) + " |"
    sep = "|" + "|".join("---" for _ in MD_COLUMNS) + "|"
    lines = [
        f"# streambench {md_text(doc.get('command', 'run'))} results",
        "",
        md_text(
            f"streambench {env.get('streambench', '?')}, torch {env.get('torch', '?')}, "
            f"transformers {env.get('transformers', '?')}; device {env.get('device', '?')} "
            f"({env.get('device_name', '?')}); {env.get('date', '')}"
        ),
        "",
        head,
        sep,
    ]
    for entry in doc.get("configurations", []):
        cells = [md_text(fn(entry)) for _, fn in MD_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    failed = [e for e in doc.get("configurations", []) if e.get("error")]
    if failed:
        lines += ["", "Failures:", ""]
        lines += [
            f"- {md_text(e.get('label', e.get('id')))}: {md_text(e['error'])}" for e in failed
        ]
    return "\n".join(lines) + "\n"


#: output format by file extension
OUTPUT_FORMATS: dict[str, Callable[[dict[str, Any]], str]] = {
    ".csv": render_csv,
    ".json": render_json,
    ".jsonl": render_jsonl,
    ".md": render_markdown,
}


def check_output_paths(paths: Iterable[str]) -> None:
    """``ValueError`` (one line) for an output whose extension has no writer."""
    for path in paths:
        ext = Path(path).suffix.lower()
        if ext not in OUTPUT_FORMATS:
            raise ValueError(
                f"--output {path}: unknown format {ext or '(no extension)'!r}; use "
                + ", ".join(OUTPUT_FORMATS)
            )


def write_outputs(paths: Sequence[str], doc: dict[str, Any]) -> None:
    """Write ``doc`` to every path, the format chosen by extension; each write atomic."""
    for path in paths:
        atomic_write_text(path, OUTPUT_FORMATS[Path(path).suffix.lower()](doc))


# -- console tables -------------------------------------------------------------------------------
def progress_bar(console: Any) -> Any:
    """The sweep's progress bar (``run`` and ``endpoint``): description, bar, done/total, elapsed
    time; drawn on ``console`` only when it is a terminal, and cleared when finished."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
        transient=True,
    )


def configuration_table(entry: dict[str, Any]) -> Any:
    """A rich renderable for one configuration: a table of first token and rest tokens (mean,
    median, p90, stdev over trials) and decode tokens/s, then a line with peak memory, the actual
    token counts and the model loading time (or the error of a failed configuration)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    cfg = entry.get("config", {})
    trials = len(entry.get("trials") or [])
    title = f"{entry.get('label', entry.get('id'))}  ·  {trials} trial{'s' * (trials != 1)}"
    if cfg.get("warmup"):
        title += f" after {cfg.get('warmup')} warm-up{'s' * (cfg.get('warmup') != 1)}"
    header = Text(title, style="bold")
    table = Table(min_width=60)
    table.add_column("metric", style="bold")
    for name in ("mean", "median", "p90", "stdev"):
        table.add_column(name, justify="right")
    if entry.get("status") != "ok":
        status = entry.get("status", "failed")
        return Group(header, Text(f"{status}: {entry.get('error') or ''}", style="red"), Text(""))
    rows = [
        ("first token (ms)", "first_token_s", 1e3, 2),
        ("rest tokens (ms/token)", "rest_token_mean_s", 1e3, 3),
        ("decode (tokens/s)", "decode_tokens_per_s", 1.0, 1),
    ]
    for name, key, scale, digits in rows:
        stats = (entry.get("aggregates") or {}).get(key)
        if not stats:
            table.add_row(name, "-", "-", "-", "-")
            continue
        table.add_row(
            name,
            *(
                _fmt(_scaled(stats.get(s), scale), digits)
                for s in ("mean", "median", "p90", "stdev")
            ),
        )
    agg = entry.get("aggregates") or {}
    parts = []
    peak = agg.get("peak_memory_bytes")
    if _is_number(peak):
        kind = {"rss": "RSS", "peak_allocated": "allocated"}.get(
            agg.get("memory_kind") or "", agg.get("memory_kind") or "memory"
        )
        parts.append(f"peak {peak / GiB:.3f} GB {kind}")
    if actual_tokens(entry):
        parts.append(f"actual in/out {actual_tokens(entry, '/')} tokens")
    if entry.get("model_loading_time_s") is not None:
        parts.append(f"load {entry['model_loading_time_s']:.2f} s")
    return Group(header, table, Text("  ·  ".join(parts), style="dim"), Text(""))


# -- plots -------------------------------------------------------------------------------------
#: trials from which the plot's band is the interquartile range instead of min...max
IQR_FROM_TRIALS = 4


def _per_position(
    trials: list[dict[str, Any]], key: str
) -> tuple[list[float], list[float], list[float]]:
    """Per position over trials of ``trials[i][key][position]``: the median, and a band: the
    25th-75th percentiles with at least :data:`IQR_FROM_TRIALS` trials, else min and max."""
    import statistics

    from .stats import percentile

    series = [t.get(key) or [] for t in trials]
    # a trial with a hole (null, NaN) in the list is left out rather than drawn wrong
    series = [s for s in series if s and all(_finite_number(v) for v in s)]
    if not series:
        return [], [], []
    n = min(len(s) for s in series)
    med, lo, hi = [], [], []
    for i in range(n):
        values = sorted(s[i] for s in series)
        med.append(statistics.median(values))
        if len(values) >= IQR_FROM_TRIALS:
            lo.append(percentile(values, 25))
            hi.append(percentile(values, 75))
        else:
            lo.append(values[0])
            hi.append(values[-1])
    return med, lo, hi


def plot_document(doc: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write a PNG: per-token latency (and memory, where measured) over token position, one line
    per configuration (median over trials, min-max band), the first token in its own panel.
    Needs matplotlib (``pip install streambench[plot]``). Atomic like the other writers."""
    import statistics

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RuntimeError(
            "plots need matplotlib, which is not installed: pip install 'streambench[plot]'"
        ) from None

    entries = [
        e for e in doc.get("configurations", []) if e.get("status") == "ok" and e.get("trials")
    ]
    if not entries:
        raise ValueError("nothing to plot: no configuration finished")
    has_mem = any(t.get("memory_per_token_bytes") for e in entries for t in e["trials"])
    rows = 2 if has_mem else 1
    fig = plt.figure(figsize=(12, 3.9 * rows + 1.4), layout="constrained")
    grid = fig.add_gridspec(rows, 2, width_ratios=[1, 3.6])
    ax_first = fig.add_subplot(grid[0, 0])
    ax_rest = fig.add_subplot(grid[0, 1])
    colors = plt.get_cmap("tab10").colors
    labels = [str(e.get("label", e.get("id"))) for e in entries]
    models = {str(e.get("config", {}).get("model", "")) for e in entries}
    single_model = models.pop() if len(models) == 1 else None
    if single_model:  # say the model once, in the title
        labels = [lab.removeprefix(single_model).strip() or lab for lab in labels]
    numbers = [str(i + 1) for i in range(len(entries))]
    longest = 1

    # First token, set apart: one bar per configuration (median over trials, whiskers min-max).
    for i, entry in enumerate(entries):
        color = colors[i % len(colors)]
        firsts = [
            t["first_token_s"] * 1e3
            for t in entry["trials"]
            if _finite_number(t.get("first_token_s")) and t["first_token_s"] > 0
        ]
        if not firsts:
            continue
        med = statistics.median(firsts)
        ax_first.bar(i, med, color=color, alpha=0.85, width=0.7)
        if len(firsts) > 1:
            ax_first.errorbar(
                i,
                med,
                yerr=[[med - min(firsts)], [max(firsts) - med]],
                color="0.2",
                capsize=3,
                linewidth=1,
            )
        ax_first.annotate(
            _short(med),
            (i, max(firsts)),
            textcoords="offset points",
            xytext=(0, 3),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax_first.set_xticks(range(len(entries)), numbers)
    ax_first.set_xlabel("configuration")
    ax_first.set_ylabel("time to first token (ms)")
    ax_first.set_title("First token: median, min…max", loc="left", fontsize=11)
    ax_first.set_ylim(bottom=0)
    ax_first.margins(y=0.12)
    ax_first.grid(axis="y", alpha=0.3)

    # Every later token over its position: median over trials, min-max band.
    tops: list[float] = []
    for i, entry in enumerate(entries):
        color = colors[i % len(colors)]
        med, lo, hi = _per_position(entry["trials"], "token_latencies_s")
        if len(med) < 2:
            continue
        longest = max(longest, len(med))
        xs = list(range(2, len(med) + 1))
        rest = [v * 1e3 for v in med[1:]]
        ax_rest.plot(xs, rest, color=color, linewidth=1.5, label=f"{i + 1}: {labels[i]}")
        ax_rest.fill_between(
            xs,
            [v * 1e3 for v in lo[1:]],
            [v * 1e3 for v in hi[1:]],
            color=color,
            alpha=0.12,
            linewidth=0,
        )
        ordered = sorted(rest)
        tops.append(ordered[min(len(ordered) - 1, int(0.98 * len(ordered)))])
    ax_rest.set_xlabel("generated token position")
    ax_rest.set_ylabel("latency of the token (ms)")
    few = min(len(e["trials"]) for e in entries) < IQR_FROM_TRIALS
    band = "min…max" if few else "25th…75th percentile"
    ax_rest.set_title(
        f"Rest tokens (decode): median over trials, band = {band}", loc="left", fontsize=11
    )
    if tops:
        # Keep the lines readable: a rare outlier of one trial may leave the axes.
        ax_rest.set_ylim(0, max(tops) * 1.6)
    ax_rest.set_xlim(0.5, longest + 0.5)
    ax_rest.grid(alpha=0.3)

    if has_mem:
        ax_peak = fig.add_subplot(grid[1, 0])
        ax_mem = fig.add_subplot(grid[1, 1], sharex=ax_rest)
        unit, scale = _memory_unit(entries)
        for i, entry in enumerate(entries):
            color = colors[i % len(colors)]
            med, _, _ = _per_position(entry["trials"], "memory_per_token_bytes")
            if not med:
                continue
            xs = list(range(1, len(med) + 1))
            ax_mem.plot(xs, [v / scale for v in med], color=color, linewidth=1.5)
            ax_mem.plot([1], [med[0] / scale], marker="o", color=color, markersize=6)
            peak = (entry.get("aggregates") or {}).get("peak_memory_bytes")
            if _finite_number(peak):
                ax_peak.bar(i, peak / scale, color=color, alpha=0.85, width=0.7)
                ax_peak.annotate(
                    _short(peak / scale),
                    (i, peak / scale),
                    textcoords="offset points",
                    xytext=(0, 3),
                    ha="center",
                    va="bottom",
                    fontsize=8,
                )
        kind = {
            "rss": ("process resident memory (RSS)", "RSS"),
            "peak_allocated": ("peak memory allocated by torch in the step", "allocated"),
            "current_allocated": ("memory allocated by torch at the token", "allocated"),
        }.get(_memory_kind(entries), ("memory", "memory"))
        ax_mem.set_xlabel("generated token position (● = first token)")
        ax_mem.set_ylabel(f"{kind[1]} ({unit})")
        ax_mem.set_title(f"Memory per token: {kind[0]}", loc="left", fontsize=11)
        ax_mem.grid(alpha=0.3)
        _tight_ylim(ax_mem)
        ax_peak.set_xticks(range(len(entries)), numbers)
        ax_peak.set_xlabel("configuration")
        ax_peak.set_ylabel(f"peak {kind[1]} ({unit})")
        ax_peak.set_title("Peak memory", loc="left", fontsize=11)
        ax_peak.set_ylim(bottom=0)
        ax_peak.margins(y=0.12)
        ax_peak.grid(axis="y", alpha=0.3)

    handles, texts = ax_rest.get_legend_handles_labels()
    if handles:
        fig.legend(
            handles,
            texts,
            loc="outside lower center",
            ncol=min(len(handles), 3),
            fontsize=9,
            frameon=False,
        )
    env = doc.get("environment", {})
    fig.suptitle(
        f"streambench: {single_model + ' on ' if single_model else ''}"
        f"{env.get('device_name') or env.get('device', '')} "
        f"({env.get('device', '?')}) · torch {env.get('torch', '?')} · "
        f"transformers {env.get('transformers', '?')} · {str(env.get('date', ''))[:10]}",
        fontsize=12,
    )
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, target)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _short(value: float) -> str:
    """Compact label: 3 significant digits."""
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def _memory_kind(entries: list[dict[str, Any]]) -> str:
    for e in entries:
        kind = (e.get("aggregates") or {}).get("memory_kind")
        if kind:
            return kind
    return ""


def _memory_unit(entries: list[dict[str, Any]]) -> tuple[str, float]:
    peaks = [(e.get("aggregates") or {}).get("peak_memory_bytes") for e in entries]
    peaks = [p for p in peaks if _finite_number(p)]
    return ("GiB", float(GiB)) if max(peaks, default=0) >= 4 * GiB else ("MiB", float(2**20))


def _tight_ylim(ax: Any) -> None:
    """Memory lines differ by little compared with their level: zoom in, but keep some room."""
    lo, hi = ax.get_ylim()
    pad = max((hi - lo) * 0.1, abs(hi) * 0.002, 1e-9)
    ax.set_ylim(lo - pad, hi + pad)


# -- compare --------------------------------------------------------------------------------------
#: metrics compared (lower is better for all): aggregate key, statistic, label, scale, unit
COMPARE_METRICS = [
    ("first_token_s", "median", "first token median", 1e3, "ms"),
    ("rest_token_mean_s", "median", "rest tokens median", 1e3, "ms/token"),
]

#: the largest ``threshold`` accepted (10 = 1000 %): beyond it the gate would pass anything
MAX_THRESHOLD = 10.0


def check_threshold(threshold: Any) -> float:
    """``threshold`` (a fraction: 0.05 = 5 %) if it is a finite number in
    ``[0, MAX_THRESHOLD]``, else ``ValueError``: NaN or infinity would switch the gate off.

    >>> check_threshold(0.05)
    0.05
    >>> check_threshold(float("nan"))
    Traceback (most recent call last):
    ...
    ValueError: threshold nan: expected a finite number between 0 and 10 (0% to 1000%)
    """
    if not _is_number(threshold) or not 0 <= threshold <= MAX_THRESHOLD:  # NaN fails both
        raise ValueError(
            f"threshold {threshold!r}: expected a finite number between 0 and "
            f"{MAX_THRESHOLD:g} (0% to {MAX_THRESHOLD:.0%})"
        )
    return float(threshold)


class CompareRow:
    """One configuration compared: old and new values per metric, their ratio (new / old), the
    metrics whose ratio is over ``1 + threshold`` (``regressed``), why the row could not be (fully)
    compared (``problem``), and whether the row fails the gate (``fails``: a regression, or
    something that could not be compared: the gate fails closed)."""

    def __init__(self, key: str, label: str) -> None:
        self.key = key
        self.label = label
        self.values: dict[str, tuple[float | None, float | None]] = {}
        self.problem: str | None = None
        self.regressed: list[str] = []
        self.fails = False
        #: at least one metric was compared (a ratio of two usable numbers)
        self.compared = False

    def fail(self, problem: str) -> None:
        self.problem = problem if not self.problem else f"{self.problem}; {problem}"
        self.fails = True

    def ratio(self, metric: str) -> float | None:
        old, new = self.values.get(metric, (None, None))
        if _unusable(old, "OLD") or _unusable(new, "NEW"):
            return None
        return new / old  # type: ignore[operator]


def _unusable(value: Any, side: str) -> str | None:
    """Why ``value`` cannot enter a ratio (``None`` when it can): a positive finite number."""
    if value is None:
        return f"{side} missing"
    if not _is_number(value):
        return f"{side} is not a number ({_kind(value)})"
    if math.isnan(value):
        return f"{side} is NaN"
    if math.isinf(value):
        return f"{side} is infinite"
    if value < 0:
        return f"{side} is negative ({value:g})"
    if value == 0:
        return f"{side} is 0"
    return None


def _raw_stat(entry: dict[str, Any], key: str, stat: str) -> Any:
    agg = entry.get("aggregates")
    value = agg.get(key) if isinstance(agg, dict) else None
    return value.get(stat) if isinstance(value, dict) else None


def _scaled(value: Any, scale: float) -> float | None:
    """``value * scale`` for a number (NaN and infinities kept, to be shown), else ``None``."""
    return float(value) * scale if _is_number(value) else None


def _single_token(entry: dict[str, Any]) -> bool:
    """The configuration generates one token per sequence: no "rest tokens" to time."""
    cfg = entry.get("config") if isinstance(entry.get("config"), dict) else {}
    agg = entry.get("aggregates") if isinstance(entry.get("aggregates"), dict) else {}
    return cfg.get("output_tokens") == 1 or agg.get("new_tokens") == 1


def _one_line(value: Any, limit: int = 200) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _compare_key(entry: dict[str, Any], with_model: bool) -> str:
    cfg = entry.get("config") if isinstance(entry.get("config"), dict) else {}
    parts = [
        f"{cfg.get('input_tokens')}-{cfg.get('output_tokens')}",
        f"bs{cfg.get('batch_size')}",
        f"beams{cfg.get('num_beams', 1)}",
    ]
    extra = cfg.get("concurrency")
    if extra is not None and extra != 1:  # a local run is one request at a time: c1
        parts.append(f"c{extra}")
    if with_model:
        parts.insert(0, str(cfg.get("model")))
    return "|".join(parts)


def _entries(doc: dict[str, Any], side: str) -> list[dict[str, Any]]:
    entries = doc.get("configurations") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError(
            f"{side}: 'configurations' must be a list of objects (read files with load_document)"
        )
    return entries


def compare_documents(
    old: dict[str, Any], new: dict[str, Any], threshold: float
) -> tuple[list[CompareRow], bool]:
    """Compare configurations of two results documents. Configurations are matched by model,
    input/output tokens, batch size and beams; when the two files share no model name (e.g. the
    same benchmark of a renamed model), by the rest alone. A configuration that appears several
    times is matched in order: its k-th occurrence in OLD with its k-th in NEW.

    Returns the rows and whether the gate fails, closed: a metric slower than ``threshold``
    (0.05 = 5 %); a configuration missing, failed or interrupted in NEW (or failed in NEW with
    no baseline); a metric that cannot be compared on either side (missing, not a number, NaN,
    infinite, negative or 0; ``status`` ``ok`` without ``aggregates``); or nothing compared at
    all. ``ValueError`` for a threshold that is not finite in ``[0, MAX_THRESHOLD]``."""
    from collections import Counter, deque

    threshold = check_threshold(threshold)
    old_entries, new_entries = _entries(old, "OLD"), _entries(new, "NEW")

    def model(e: dict[str, Any]) -> str:
        cfg = e.get("config")
        return str(cfg.get("model")) if isinstance(cfg, dict) else "None"

    with_model = bool({model(e) for e in old_entries} & {model(e) for e in new_entries})
    pending: dict[str, deque[dict[str, Any]]] = {}
    for e in new_entries:
        pending.setdefault(_compare_key(e, with_model), deque()).append(e)
    seen: Counter[str] = Counter()
    rows: list[CompareRow] = []

    def label_of(e: dict[str, Any], key: str) -> str:
        label = e.get("label", e.get("id", key))
        label = _one_line(key if label is None else label)
        seen[key] += 1
        return label if seen[key] == 1 else f"{label} #{seen[key]}"

    for o in old_entries:
        key = _compare_key(o, with_model)
        row = CompareRow(key, label_of(o, key))
        rows.append(row)
        queue = pending.get(key)
        n = queue.popleft() if queue else None
        if o.get("status") != "ok":
            row.problem = f"no baseline (OLD {_one_line(o.get('status'), 40)})"
            continue
        if n is None:
            row.fail("missing in NEW")
            continue
        if n.get("status") != "ok":
            error = f": {_one_line(n.get('error'))}" if n.get("error") else ""
            row.fail(f"NEW {_one_line(n.get('status'), 40)}{error}")
            continue
        sides = (("OLD", o), ("NEW", n))
        missing = [side for side, e in sides if not isinstance(e.get("aggregates"), dict)]
        if missing:
            row.fail(" and ".join(missing) + " has status ok but no aggregates: cannot compare")
            continue
        for agg_key, stat, label, scale, _unit in COMPARE_METRICS:
            ov, nv = _raw_stat(o, agg_key, stat), _raw_stat(n, agg_key, stat)
            row.values[label] = (_scaled(ov, scale), _scaled(nv, scale))
            if (
                ov is None
                and nv is None
                and agg_key == "rest_token_mean_s"
                and _single_token(o)
                and _single_token(n)
            ):
                continue  # one generated token: nothing after the first to time, on both sides
            why = _unusable(ov, "OLD") or _unusable(nv, "NEW")
            if why:
                row.fail(f"cannot compare {label}: {why}")
                continue
            row.compared = True
            ratio = nv / ov
            if not math.isfinite(ratio) or ratio > 1.0 + threshold:
                row.regressed.append(label)
                row.fails = True
        po = (o.get("aggregates") or {}).get("peak_memory_bytes")
        pn = (n.get("aggregates") or {}).get("peak_memory_bytes")
        row.values["peak memory"] = (_scaled(po, 1 / GiB), _scaled(pn, 1 / GiB))
    for key, queue in pending.items():
        for n in queue:
            row = CompareRow(key, label_of(n, key))
            if n.get("status") == "ok":
                row.problem = "new in NEW (no baseline)"
            else:
                error = f": {_one_line(n.get('error'))}" if n.get("error") else ""
                row.fail(f"new in NEW and {_one_line(n.get('status'), 40)}{error}")
            rows.append(row)
    if not any(row.compared for row in rows):
        row = CompareRow("", "(nothing compared)")
        row.fail("no configuration of OLD could be compared with NEW")
        rows.append(row)
    return rows, any(row.fails for row in rows)


def compare_table(rows: list[CompareRow], threshold: float) -> Any:
    """A rich ``Table`` of :func:`compare_documents` rows (labels and reasons escaped: a file's
    text is never read as rich markup)."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(
        title=f"NEW / OLD (lower is faster; regression when > {1 + threshold:.3g}×)",
        title_justify="left",
    )
    table.add_column("configuration")
    metrics = [label for _, _, label, _, _ in COMPARE_METRICS] + ["peak memory"]
    units = {label: unit for _, _, label, _, unit in COMPARE_METRICS}
    units["peak memory"] = "GB"
    for m in metrics:
        table.add_column(f"{m}\nold → new ({units[m]})", justify="right")
        table.add_column("ratio", justify="right")
    table.add_column("verdict")
    for row in rows:
        cells = []
        for m in metrics:
            if m not in row.values:
                cells += ["", ""]
                continue
            old, new = row.values[m]
            digits = 3 if m != "first token median" else 2
            cells.append(f"{_cell_number(old, digits)} → {_cell_number(new, digits)}")
            r = row.ratio(m)
            text = "" if r is None else f"{r:.3f}×"
            if m in row.regressed:
                text = f"[bold red]{text or 'slower'}[/bold red]"
            cells.append(text)
        if row.problem:
            color = "bold red" if row.fails else "yellow"
            verdict = f"[{color}]{escape(row.problem)}[/{color}]"
            if row.regressed:
                verdict = f"[bold red]slower;[/bold red] {verdict}"
        elif row.regressed:
            verdict = "[bold red]slower[/bold red]"
        else:
            verdict = "[green]ok[/green]"
        table.add_row(escape(row.label), *cells, verdict)
    return table


def _cell_number(value: float | None, digits: int) -> str:
    if value is None:
        return "?"
    if math.isnan(value):
        return "NaN"
    return _fmt(value, digits)
