"""The commands that read results files: ``streambench plot``, ``compare`` and ``report``
(argparse in :mod:`streambench.cli.run`). ``compare``: ``--ignore`` read against both files, and
everything the command prints (the table, or wrapped lines when it does not fit, then one line
per verdict), in one place."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from ..errors import EXIT_FAILED, EXIT_OK, UsageError
from ..results.outputs import write_error
from ..terminal import inert

__all__ = [
    "cmd_compare",
    "cmd_plot",
    "cmd_report",
    "parse_ignore",
    "parse_threshold",
    "print_comparison",
]


def parse_ignore(text: str, old: Any, new: Any) -> tuple[str, ...]:
    """``--ignore a,b`` -> ``("a", "b")``; :class:`UsageError` for a name no configuration of
    either file has (a typo would silently pair nothing)."""
    from ..results.compare import known_settings
    from ..results.schema import ResultsDocument

    names = tuple(dict.fromkeys(n.strip() for n in str(text).split(",") if n.strip()))
    if not names:
        return ()
    known = known_settings(ResultsDocument.from_dict(old), ResultsDocument.from_dict(new))
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(
            f"--ignore {unknown[0]}: no such setting in either file; settings: "
            + ", ".join(sorted(known))
        )
    return names


def print_comparison(
    rows: Any, failed: bool, threshold: float, ignore: Any, strict: bool, written: str | None
) -> None:
    """Everything ``compare`` prints, in one place: the table, then one line per verdict."""
    from .. import terminal
    from ..results.compare import verdict_text
    from ..results.report.tables import compare_fits, compare_table, compare_text
    from ..terminal import inert
    from ..terminal import inert_markup as escape  # a file's text is shown, never obeyed

    console = terminal.console(highlight=False)
    table = compare_table(rows, threshold, ignore)
    if compare_fits(console, table):
        console.print(table)
    else:  # a narrow terminal, a file or a CI log: wrapped lines, no cell cut short
        console.print(inert(compare_text(rows, threshold, ignore, console.width)), markup=False)
    if written:
        console.print(f"comparison written to {escape(written)}")
    slower = [escape(r.label) for r in rows if r.regressed]
    unsure = [escape(r.label) for r in rows if r.fails and not r.regressed and r.problem]
    unclear = [r for r in rows if r.verdict == "unclear"]
    if slower:
        console.print(f"[bold red]regression[/bold red]: {', '.join(slower)}")
    for r in (r for r in rows if r.worse):
        console.print(
            f"[bold red]quality drop[/bold red]: {escape(r.label)}: {escape(verdict_text(r))}"
        )
    if unsure:
        console.print(
            f"[bold red]could not compare[/bold red] (the gate fails closed): {', '.join(unsure)}"
        )
    for r in unclear:
        word = "[bold red]unclear (--strict)[/bold red]" if strict else "[yellow]unclear[/yellow]"
        console.print(f"{word}: {escape(r.label)}: {escape(verdict_text(r))}")
    if unclear and not strict:
        console.print("unclear passes the gate (--strict fails on it); run more --trials")
    if not failed:
        console.print(f"[green]no regression beyond {threshold:.1%}[/green]")


def cmd_plot(args: argparse.Namespace) -> int:
    from ..errors import UsageError
    from ..results.report.load_plot import plot_figures
    from ..results.schema import ResultsDocument
    from ..results.validate import load_document

    if not args.output.lower().endswith((".png", ".svg", ".pdf")):
        raise UsageError(f"-o {args.output}: use a .png (or .svg, .pdf) file name")
    from ..results.outputs import RunInputs

    RunInputs([("results file", args.results)]).check(args.output, "-o")
    doc = load_document(args.results)  # UsageError (exit 2) naming the file
    try:
        written = plot_figures(ResultsDocument.coerce(doc), args.output)
    except ValueError as exc:  # e.g. nothing to plot
        raise UsageError(f"{args.results}: {exc}") from None
    except RuntimeError as exc:  # matplotlib missing
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise write_error(exc, "-o", args.output) from None
    print(inert(f"plot written to {', '.join(str(p) for p in written)}"))
    return EXIT_OK


def parse_threshold(text: str, option: str = "--threshold") -> float:
    """``"5%"`` or ``"5"`` -> ``0.05`` (a fraction). A finite percentage from 0% to 1000%, else
    :class:`UsageError`: ``nan`` or ``inf`` would switch the regression gate off."""
    from ..errors import UsageError
    from ..numtext import real
    from ..results.compare import MAX_THRESHOLD

    raw = str(text).strip().removesuffix("%").strip()
    try:
        value = real(raw)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}; write a percentage, e.g. 5%") from None
    if not 0 <= value <= MAX_THRESHOLD * 100:  # NaN fails both comparisons
        raise UsageError(
            f"{option} {text!r}: must be a finite percentage from 0% to "
            f"{MAX_THRESHOLD * 100:g}%, e.g. 5%"
        )
    return value / 100.0


def _check_output(
    path: str, option: str, formats: tuple[str, ...], reads: Sequence[str] = ()
) -> None:
    """``-o`` checked before work: a known format, writable, none of the files it ``reads``."""
    from ..results.outputs import RunInputs, check_output_targets
    from ..results.report.html import check_html_outputs

    check_output_targets([path], option, formats, RunInputs(("results file", r) for r in reads))
    check_html_outputs([path], option)


def cmd_compare(args: argparse.Namespace) -> int:
    """Exit 0 when NEW is not slower; 1 on a regression, anything that could not be compared (the
    gate fails closed) or, with ``--strict``, an unclear verdict; 2 for a bad file or option
    (UsageError, one line). The verdicts: :mod:`streambench.results.compare`."""
    from ..results.compare import check_threshold, compare_documents
    from ..results.schema import ResultsDocument
    from ..results.validate import load_document

    threshold = parse_threshold(args.threshold)
    drop = getattr(args, "max_quality_drop", None)
    drop = None if drop is None else parse_threshold(drop, "--max-quality-drop")
    if args.output:
        _check_output(args.output, "-o", (".md", ".html"), [args.old, args.new])
    old = load_document(args.old)  # UsageError (exit 2) naming the file
    new = load_document(args.new)
    ignore = parse_ignore(args.ignore, old, new)
    check_threshold(threshold)
    rows, failed = compare_documents(
        ResultsDocument.coerce(old, "OLD"),
        ResultsDocument.coerce(new, "NEW"),
        threshold,
        frozenset(ignore),
        args.strict,
        drop,
    )
    if args.output:
        _write_comparison(args, rows, failed, threshold, ignore)
    print_comparison(rows, failed, threshold, ignore, args.strict, args.output)
    _nodes_notes(args, {"OLD": old, "NEW": new})
    return EXIT_FAILED if failed else EXIT_OK


def _nodes_notes(args: argparse.Namespace, docs: dict[str, Any]) -> None:
    """A file whose rows ran on unlike nodes of a cluster (``run --ray``/``--slurm``) says so:
    its rows differ by machine as well as by setting."""
    from ..results.nodes import unlike_nodes

    speaker = getattr(args, "speaker", None)
    for side, doc in docs.items():
        text = unlike_nodes(doc.get("configurations") or [])
        if text and speaker is not None:
            speaker.note(f"{side}: {text}")


def _write_comparison(
    args: argparse.Namespace, rows: Any, failed: bool, threshold: float, ignore: Any = ()
) -> None:
    from ..results import load_results
    from ..results.outputs import atomic_write_text
    from ..results.report.compare_markdown import compare_markdown

    if args.output.lower().endswith(".html"):
        from ..results.report.html import render_report

        docs = [load_results(args.old), load_results(args.new)]
        text = render_report(
            docs, _names([args.old, args.new]), threshold, args.output, ignore, args.strict
        )
    else:
        text = compare_markdown(rows, failed, threshold, args.old, args.new, ignore)
    try:
        atomic_write_text(args.output, text)
    except OSError as exc:
        raise write_error(exc, "-o", args.output) from None


def _names(paths: list[str]) -> list[str]:
    """Short names of results files for the report: the file names, or the paths when two
    share a name."""
    import os

    names = [os.path.basename(p) for p in paths]
    return names if len(set(names)) == len(names) else list(paths)


def cmd_report(args: argparse.Namespace) -> int:
    """``streambench report``: the HTML page of one or several results files (exit 2 for a bad
    file or option, with plotly missing too)."""
    from ..results import load_results
    from ..results.outputs import atomic_write_text
    from ..results.report.html import render_report

    threshold = parse_threshold(args.threshold)
    _check_output(args.output, "-o", (".html",), list(args.results))
    docs = [load_results(p) for p in args.results]  # UsageError (exit 2) naming the file
    text = render_report(docs, _names(list(args.results)), threshold, args.output)
    try:
        atomic_write_text(args.output, text)
    except OSError as exc:
        raise write_error(exc, "-o", args.output) from None
    size = len(text.encode("utf-8"))
    print(inert(f"report written to {args.output} ({size / 1e6:.1f} MB)"))
    return EXIT_OK
