"""``streambench compare``'s own pieces beside :func:`streambench.cli.cmd_compare`: ``--ignore``
read against both files, and everything the command prints (the table, or wrapped lines when it
does not fit, then one line per verdict), in one place."""

from __future__ import annotations

from typing import Any

from .errors import UsageError

__all__ = ["parse_ignore", "print_comparison"]


def parse_ignore(text: str, old: Any, new: Any) -> tuple[str, ...]:
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


def print_comparison(
    rows: Any, failed: bool, threshold: float, ignore: Any, strict: bool, written: str | None
) -> None:
    """Everything ``compare`` prints, in one place: the table, then one line per verdict."""
    from . import report, terminal
    from .results.compare import verdict_text
    from .results.tables import compare_fits, compare_text
    from .terminal import inert
    from .terminal import inert_markup as escape  # a file's text is shown, never obeyed

    console = terminal.console(highlight=False)
    table = report.compare_table(rows, threshold, ignore)
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
