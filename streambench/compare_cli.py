"""``streambench compare OLD NEW``: the command around :mod:`streambench.results.compare` — read
both files, pair their configurations (``--ignore``), print the verdicts (all printing in
:func:`_print_comparison`) and write ``-o FILE.md`` or ``.html``; the exit code of the gate."""

from __future__ import annotations

import argparse
from typing import Any

from .errors import EXIT_FAILED, EXIT_OK, UsageError

__all__ = ["parse_threshold", "run_compare"]


def run_compare(args: argparse.Namespace) -> int:
    """Exit 0 when NEW is not slower; 1 on a regression, anything that could not be compared (the
    gate fails closed) or, with ``--strict``, an unclear verdict; 2 for a bad file or option
    (UsageError, one line)."""
    from . import report

    threshold = parse_threshold(args.threshold)
    if args.output:
        _check_output(args.output, "-o", (".md", ".html"))
    old = report.load_document(args.old)  # UsageError (exit 2) naming the file
    new = report.load_document(args.new)
    ignore = _parse_ignore(args.ignore, old, new)
    rows, failed = report.compare_documents(old, new, threshold, ignore, args.strict)
    written = None
    if args.output:
        _write_comparison(args, rows, failed, threshold, ignore)
        written = args.output
    _print_comparison(rows, failed, threshold, ignore, args.strict, written)
    return EXIT_FAILED if failed else EXIT_OK


def _parse_ignore(text: str, old: Any, new: Any) -> tuple[str, ...]:
    """``--ignore a,b`` -> ``("a", "b")``; :class:`UsageError` for a name no configuration of
    either file has (a typo would silently pair nothing)."""
    from .results.compare import known_settings
    from .results.schema import ResultsDocument

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


def _print_comparison(
    rows: Any, failed: bool, threshold: float, ignore: Any, strict: bool, written: str | None
) -> None:
    """Everything ``compare`` prints, in one place: the table, then one line per verdict."""
    from rich.console import Console
    from rich.markup import escape

    from . import report
    from .results.compare import verdict_text
    from .results.tables import compare_fits, compare_text

    console = Console(highlight=False)
    table = report.compare_table(rows, threshold, ignore)
    if compare_fits(console, table):
        console.print(table)
    else:  # a narrow terminal, a file or a CI log: wrapped lines, no cell cut short
        console.print(compare_text(rows, threshold, ignore, console.width), markup=False)
    if written:
        console.print(f"comparison written to {escape(written)}")
    slower = [escape(r.label) for r in rows if r.regressed]
    unsure = [escape(r.label) for r in rows if r.fails and not r.regressed and r.problem]
    unclear = [r for r in rows if r.verdict == "unclear"]
    if slower:
        console.print(f"[bold red]regression[/bold red]: {', '.join(slower)}")
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


def _write_comparison(
    args: argparse.Namespace, rows: Any, failed: bool, threshold: float, ignore: Any = ()
) -> None:
    from .outputs import atomic_write_text
    from .results import load_results
    from .results.compare_markdown import compare_markdown

    if args.output.lower().endswith(".html"):
        from .results.html import render_report

        docs = [load_results(args.old), load_results(args.new)]
        text = render_report(
            docs, _names([args.old, args.new]), threshold, args.output, ignore, args.strict
        )
    else:
        text = compare_markdown(rows, failed, threshold, args.old, args.new, ignore)
    try:
        atomic_write_text(args.output, text)
    except OSError as exc:
        raise UsageError(f"cannot write -o {args.output}: {exc.strerror or exc}") from None


def parse_threshold(text: str) -> float:
    """``"5%"`` or ``"5"`` -> ``0.05`` (a fraction). A finite percentage from 0% to 1000%, else
    :class:`UsageError`: ``nan`` or ``inf`` would switch the regression gate off."""
    from .errors import UsageError
    from .report import MAX_THRESHOLD

    raw = str(text).strip().removesuffix("%").strip()
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"--threshold {text!r}: write a percentage, e.g. 5%") from None
    if not 0 <= value <= MAX_THRESHOLD * 100:  # NaN fails both comparisons
        raise UsageError(
            f"--threshold {text!r}: must be a finite percentage from 0% to "
            f"{MAX_THRESHOLD * 100:g}%, e.g. 5%"
        )
    return value / 100.0


def _check_output(path: str, option: str, formats: tuple[str, ...]) -> None:
    from .outputs import check_output_targets
    from .results.html import check_html_outputs

    check_output_targets([path], option, formats)
    check_html_outputs([path], option)


def _names(paths: list[str]) -> list[str]:
    """Short names of results files for the report: the file names, or the paths when two
    share a name."""
    import os

    names = [os.path.basename(p) for p in paths]
    return names if len(set(names)) == len(names) else list(paths)
