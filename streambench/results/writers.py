"""Writers of a :class:`~streambench.results.schema.ResultsDocument`: CSV, JSON, JSON Lines and
Markdown, chosen by file extension (:data:`OUTPUT_FORMATS`), each written atomically.

The JSON keeps the core's units (seconds, bytes); the CSV and the Markdown table show
milliseconds and GiB (the CSV's columns say "GB", as the ipex-llm all-in-one benchmark wrote; the
Markdown says GiB). CSV columns come in a
fixed order: :data:`ALL_IN_ONE_COLUMNS`, then :data:`EXTRA_COLUMNS`, then a command's own
(``csv_extra``); a new column is only ever appended.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from .outputs import atomic_write_text
from .quality import quality_columns
from .schema import ConfigurationResult, ResultsDocument
from .trial_intervals import half_width
from .values import GiB, finite, fmt, is_number, ms

__all__ = [
    "ALL_IN_ONE_COLUMNS",
    "CSV_COLUMNS",
    "EXTRA_COLUMNS",
    "MD_COLUMNS",
    "OUTPUT_FORMATS",
    "actual_tokens",
    "check_output_paths",
    "csv_row",
    "csv_rows",
    "md_text",
    "render_csv",
    "render_html",
    "render_json",
    "render_jsonl",
    "render_markdown",
    "write_outputs",
]

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

#: streambench's own columns, after the all-in-one ones (new ones are appended here)
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
    *(
        SETTING_COLUMNS := [
            "attn_implementation",
            "cache_implementation",
            "compile",
            "compile_mode",
            "do_sample",
            "temperature",
            "top_p",
            "top_k",
            "assistant_model",
            "prompt_lookup",
            "generate_kwargs",
            "model_kwargs",
            "test_api",
        ]
    ),
    "tokens/step",
    "compile time (s)",
    "inductor cache",
    "recompiled trials",
    *(
        CI_COLUMNS := [
            "1st token median ci95 low (ms)",
            "1st token median ci95 high (ms)",
            "2+ median ci95 low (ms/token)",
            "2+ median ci95 high (ms/token)",
        ]
    ),
]

#: every fixed CSV column, in order
CSV_COLUMNS = ALL_IN_ONE_COLUMNS + EXTRA_COLUMNS


def actual_tokens(entry: ConfigurationResult, sep: str = "-") -> str:
    """The actual input/output tokens of an entry, e.g. ``"32-32"``; ``"?"`` for an unknown side
    (``"?-8"``), ``""`` when neither is known.

    >>> actual_tokens(ConfigurationResult(actual_output_tokens=8), "/")
    '?/8'
    """
    counts = [entry.actual_input_tokens, entry.actual_output_tokens]
    if all(c is None for c in counts):
        return ""
    return sep.join("?" if c is None else str(c) for c in counts)


def _stat(entry: ConfigurationResult, name: str, stat: str = "mean") -> float | None:
    """A statistic of ``entry.aggregates`` (``stat``: ``mean``, ``median``, ``stdev``, or
    ``pNN`` for a percentile) when it is a number, else ``None``."""
    stats = entry.aggregates.statistic(name) if entry.aggregates is not None else None
    if stats is None:
        return None
    value = stats.percentile(stat[1:]) if stat.startswith("p") else getattr(stats, stat)
    return value if is_number(value) else None


def _peak_gib(entry: ConfigurationResult) -> float | None:
    peak = entry.aggregates.peak_memory_bytes if entry.aggregates is not None else None
    return peak / GiB if is_number(peak) else None


def csv_row(entry: ConfigurationResult) -> dict[str, Any]:
    """One CSV row: the all-in-one columns (means over trials, ms) then the extra columns."""
    s, cfg = entry.settings, entry.config
    pre = ms(_stat(entry, "pre_prompt_s"))
    enc = pre if entry.encoder_decoder else (0.0 if pre is not None else None)
    first = ms(_stat(entry, "first_token_s"))
    if entry.encoder_decoder and first is not None and pre is not None:
        # As all-in-one (BenchmarkWrapper's first_cost): the encoder is its own column, so the
        # first token counts from the end of the encoder; mean(a - b) = mean(a) - mean(b).
        first -= pre
    io_tokens = "" if s.input_tokens is None else f"{s.input_tokens}-{s.output_tokens}"
    row = {
        "model": "" if s.model is None else s.model,
        "1st token avg latency (ms)": fmt(first, 3),
        "2+ avg latency (ms/token)": fmt(ms(_stat(entry, "rest_token_mean_s")), 3),
        "encoder time (ms)": fmt(enc, 3),
        "input/output tokens": io_tokens,
        "batch_size": "" if s.batch_size is None else s.batch_size,
        "actual input/output tokens": actual_tokens(entry),
        "num_beams": s.num_beams,
        "low_bit": cfg.low_bit or "none",
        "cpu_embedding": cfg.cpu_embedding,
        "model loading time (s)": fmt(entry.model_loading_time_s, 3),
        "peak mem (GB)": fmt(_peak_gib(entry), 4),
        "status": entry.status or "",
        "error": entry.error or "",
        "device": _text(cfg.device),
        "dtype": _text(cfg.dtype),
        "trials": len(entry.trials),
        "warmup": _text(cfg.warmup),
        "1st token median (ms)": fmt(ms(_stat(entry, "first_token_s", "median")), 3),
        "1st token p90 (ms)": fmt(ms(_stat(entry, "first_token_s", "p90")), 3),
        "1st token stdev (ms)": fmt(ms(_stat(entry, "first_token_s", "stdev")), 3),
        "2+ median (ms/token)": fmt(ms(_stat(entry, "rest_token_mean_s", "median")), 3),
        "2+ p90 (ms/token)": fmt(ms(_stat(entry, "rest_token_mean_s", "p90")), 3),
        "2+ stdev (ms/token)": fmt(ms(_stat(entry, "rest_token_mean_s", "stdev")), 3),
        "decode tokens/s": fmt(_stat(entry, "decode_tokens_per_s"), 1),
        "pre-prompt time (ms)": fmt(pre, 3),
        "memory kind": (entry.aggregates.memory_kind if entry.aggregates else None) or "",
    }
    row.update(_setting_cells(entry))
    row.update(_ci_cells(entry))
    row.update(entry.csv_extra)  # command-specific columns
    row.update(hardware_columns(entry.extra))  # appended last, only where measured
    row.update(quality_columns(entry))  # --quality: after those, only where measured
    return row


#: columns of ``run``'s memory per configuration and telemetry, after every other column
HARDWARE_COLUMNS = [
    "RSS after load (GB)",
    "peak RSS (GB)",
    "peak RSS source",
    "prefill energy (J)",
    "decode energy (J/token)",
    "telemetry",
]


def hardware_columns(extra: dict[str, Any]) -> dict[str, Any]:
    """The :data:`HARDWARE_COLUMNS` of an entry that has ``memory`` or ``telemetry``; energy
    from the first telemetry source that has it; ``telemetry`` names the sources, or says
    ``unavailable: ...``."""
    memory, telemetry = extra.get("memory"), extra.get("telemetry")
    if not isinstance(memory, dict) and not isinstance(telemetry, dict):
        return {}
    memory = memory if isinstance(memory, dict) else {}
    telemetry = telemetry if isinstance(telemetry, dict) else {}
    sources = telemetry.get("sources") or {}
    first = next(iter(sources.values()), {}) if isinstance(sources, dict) else {}
    unavailable = sorted((telemetry.get("unavailable") or {}).keys())
    described = ", ".join(sources) if sources else ""
    if unavailable:
        described = (
            (described + "; " if described else "") + "unavailable: " + ", ".join(unavailable)
        )
    gib = lambda v: fmt(v / GiB, 4) if is_number(v) else ""  # noqa: E731
    return {
        "RSS after load (GB)": gib(memory.get("rss_after_load_bytes")),
        "peak RSS (GB)": gib(memory.get("peak_rss_bytes")),
        "peak RSS source": memory.get("peak_source") or "",
        "prefill energy (J)": fmt(first.get("prefill_energy_j"), 3),
        "decode energy (J/token)": fmt(first.get("decode_energy_j_per_token"), 4),
        "telemetry": described,
    }


def _ci_cells(entry: ConfigurationResult) -> dict[str, Any]:
    """:data:`CI_COLUMNS`: the 95 % interval of the first-token and later-token medians over
    trials (ms; empty with fewer than 6 trials: ``ci95_note`` in the JSON says why)."""
    cells: dict[str, Any] = {}
    for name, columns in (("first_token_s", CI_COLUMNS[:2]), ("rest_token_mean_s", CI_COLUMNS[2:])):
        stats = entry.aggregates.statistic(name) if entry.aggregates is not None else None
        ci = stats.ci95 if stats is not None and isinstance(stats.ci95, list) else [None, None]
        ends = ci if len(ci) == 2 else [None, None]
        for column, value in zip(columns, ends):
            cells[column] = fmt(ms(value if is_number(value) else None), 3)
    return cells


def _setting_cells(entry: ConfigurationResult) -> dict[str, Any]:
    """The generation settings (empty: the default), mean tokens per decoding step, and what
    ``--compile`` recorded."""
    further = entry.settings.further
    cells: dict[str, Any] = {name: _text(further.get(name)) for name in SETTING_COLUMNS}
    cells.update((k, v) for k, v in further.items() if k not in cells)  # newer settings
    compiled = entry.extra.get("compile")
    compiled = compiled if isinstance(compiled, dict) else {}
    recompiled = compiled.get("recompiled_trials")
    cells["tokens/step"] = fmt(_stat(entry, "tokens_per_step"), 3)
    cells["compile time (s)"] = fmt(compiled.get("compile_time_s"), 3)
    cells["inductor cache"] = _text(compiled.get("inductor_cache"))
    cells["recompiled trials"] = len(recompiled) if isinstance(recompiled, list) else ""
    return cells


def _text(value: Any) -> Any:
    return "" if value is None else value


def csv_rows(doc: ResultsDocument) -> list[dict[str, Any]]:
    """One row per configuration, in order."""
    return [csv_row(e) for e in doc.configurations]


def render_csv(doc: ResultsDocument) -> str:
    rows = csv_rows(doc)
    columns = list(CSV_COLUMNS)
    for row in rows:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def render_json(doc: ResultsDocument) -> str:
    """The results/2 document, NaN and infinities as ``null``."""
    return json.dumps(finite(doc.to_dict()), indent=1, allow_nan=False, default=str) + "\n"


def render_jsonl(doc: ResultsDocument) -> str:
    """One JSON object per configuration, with ``schema``, ``command`` and ``environment``."""
    lines = [json.dumps(finite(d), allow_nan=False, default=str) for d in doc.line_dicts()]
    return "".join(line + "\n" for line in lines)


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


def _median_pm(entry: ConfigurationResult, name: str, digits: int) -> str:
    """``"12.34 ±0.56"`` (ms): the median over trials and the distance to the far end of its 95 %
    interval; the median alone with fewer than 6 trials."""
    median = ms(_stat(entry, name, "median"))
    stats = entry.aggregates.statistic(name) if entry.aggregates is not None else None
    h = half_width(stats)
    return fmt(median, digits) + (f" ±{fmt(h * 1e3, digits)}" if h is not None else "")


#: the Markdown table: column name and cell of a configuration (medians over trials, as the
#: terminal and ``compare``)
MD_COLUMNS: list[tuple[str, Callable[[ConfigurationResult], Any]]] = [
    ("configuration", lambda e: e.name),
    ("status", lambda e: e.status or ""),
    ("1st token median ±95% (ms)", lambda e: _median_pm(e, "first_token_s", 2)),
    ("1st token p90 (ms)", lambda e: fmt(ms(_stat(e, "first_token_s", "p90")))),
    ("2+ median ±95% (ms/token)", lambda e: _median_pm(e, "rest_token_mean_s", 3)),
    ("2+ p90 (ms/token)", lambda e: fmt(ms(_stat(e, "rest_token_mean_s", "p90")), 3)),
    ("decode tokens/s (median)", lambda e: fmt(_stat(e, "decode_tokens_per_s", "median"), 1)),
    ("trials", lambda e: len(e.trials)),
    ("peak mem (GiB)", lambda e: fmt(_peak_gib(e), 3)),
    ("actual in/out", lambda e: actual_tokens(e)),
]


def render_markdown(doc: ResultsDocument) -> str:
    env = doc.environment
    lines = [
        f"# streambench {md_text(doc.command)} results",
        "",
        md_text(
            f"streambench {_known(env.streambench)}, torch {_known(env.torch)}, "
            f"transformers {_known(env.transformers)}; device {_known(env.device)} "
            f"({_known(env.device_name)}); {env.date or ''}"
        ),
        "",
        "| " + " | ".join(name for name, _ in MD_COLUMNS) + " |",
        "|" + "|".join("---" for _ in MD_COLUMNS) + "|",
    ]
    for entry in doc.configurations:
        cells = [md_text(cell(entry)) for _, cell in MD_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    failed = [e for e in doc.configurations if e.error]
    if failed:
        lines += ["", "Failures:", ""]
        lines += [f"- {md_text(e.name)}: {md_text(e.error)}" for e in failed]
    return "\n".join(lines) + "\n"


def _known(value: Any) -> str:
    return "?" if value is None else str(value)


def render_html(doc: ResultsDocument, where: str | None = None) -> str:
    """The self-contained HTML report (:mod:`.html`; needs plotly, ``streambench[report]``);
    ``where``: the file it goes to, for links to profiler traces."""
    from .report.html import render_html as _render

    return _render(doc, where)


#: output format by file extension
OUTPUT_FORMATS: dict[str, Callable[[ResultsDocument], str]] = {
    ".csv": render_csv,
    ".json": render_json,
    ".jsonl": render_jsonl,
    ".md": render_markdown,
    ".html": render_html,
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


def write_outputs(paths: Sequence[str], doc: ResultsDocument) -> None:
    """Write ``doc`` to every path, the format chosen by extension; each write atomic."""
    for path in paths:
        ext = Path(path).suffix.lower()
        text = render_html(doc, str(path)) if ext == ".html" else OUTPUT_FORMATS[ext](doc)
        atomic_write_text(path, text)
