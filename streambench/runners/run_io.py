"""What ``streambench run`` and ``streambench endpoint`` do the same way around the sweep driver
(:mod:`streambench.runners.driver`), written once for both commands:

- :func:`check_result_targets`: every ``--output`` and ``--plot`` target checked before any work
  (a known format, writable, none of the run's inputs);
- :func:`load_resumed`: ``--resume``'s source (the first ``-o`` JSON/JSONL file) and the
  configurations kept from it;
- :func:`opening_line`: the first line a sweep prints (what is measured, how many times, where).

Imports are inside the functions: ``import streambench`` stays light.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ..errors import UsageError

#: the files ``--plot`` writes (matplotlib's formats streambench offers)
PLOT_FORMATS = (".png", ".svg", ".pdf")
#: the ``-o`` formats ``--resume`` reads back (the ones that hold every configuration)
RESUME_FORMATS = (".json", ".jsonl")


def check_result_targets(
    outputs: Sequence[str],
    plot: str | None,
    protected: Any = (),
    *,
    plot_library: bool = False,
) -> None:
    """Check the ``--output`` files and the ``--plot`` target before anything is measured:
    :class:`~streambench.errors.UsageError` (one line, naming the option) for an unknown format,
    a path that cannot be written, one that is an input of the run or inside one (``protected``:
    a :class:`~streambench.results.outputs.RunInputs` or ``(what, path)`` pairs) or one named by
    both
    options. ``plot_library``: also refuse ``--plot`` when matplotlib is not installed (``run``
    says so up front; ``endpoint`` reports it when it plots, as it always has)."""
    from ..results.outputs import RunInputs, check_output_targets
    from ..results.report.html import check_html_outputs
    from ..results.writers import OUTPUT_FORMATS

    # one RunInputs for both checks: a generator of pairs would be spent by the first one
    inputs = protected if isinstance(protected, RunInputs) else RunInputs(protected)
    check_output_targets(list(outputs), "--output", tuple(OUTPUT_FORMATS), inputs)
    check_html_outputs(list(outputs), "--output")
    if plot is None:
        return
    check_output_targets([plot], "--plot", PLOT_FORMATS, inputs)
    if plot_library:
        import importlib.util

        from ..extras import install_hint

        if importlib.util.find_spec("matplotlib") is None:
            raise UsageError(
                f"--plot needs matplotlib, which is not installed: {install_hint('plot')}"
            )
    if any(os.path.realpath(plot) == os.path.realpath(o) for o in outputs):
        raise UsageError(f"--plot {plot}: also named by --output; use another file name")


def resume_source(outputs: Sequence[str]) -> str:
    """The file ``--resume`` reads: the first ``-o`` JSON or JSONL file (the formats that hold
    every configuration); :class:`~streambench.errors.UsageError` when there is none."""
    sources = [o for o in outputs if str(o).lower().endswith(RESUME_FORMATS)]
    if not sources:
        raise UsageError("--resume needs an -o FILE.json or FILE.jsonl to resume from")
    return str(sources[0])


def load_resumed(
    outputs: Sequence[str], settings: dict[str, Any], environment: dict[str, Any], command: str
) -> dict[str, Any]:
    """``--resume``: the configurations, by id, of :func:`resume_source`'s file, written by the
    same ``command`` (``"run"``, ``"endpoint"``) with the same ``settings`` apart from the
    sweep's axes, in the same ``environment`` (machine, versions): see
    :func:`streambench.runners.driver.load_resume`. A file that does not exist yet resumes
    nothing."""
    from .driver import load_resume

    return load_resume(resume_source(outputs), settings, environment, command=command)


def opening_line(
    command: str, configurations: int, warmup: int, measured: str, where: str, times: str = "×"
) -> str:
    """The sweep's first line (rich markup): ``streambench COMMAND: N configuration(s) × (W
    warm-up + MEASURED) WHERE``. ``measured``: what each configuration measures (``6 trials``,
    ``10 requests``); ``where``: the device or the endpoint and its load; ``times``: the sign
    between them (``endpoint`` has always printed a plain ``x``). Text in ``where`` that is not
    markup must be escaped by the caller (:func:`streambench.terminal.inert_markup`)."""
    return (
        f"[bold]streambench {command}[/bold]: {configurations} configuration(s) {times} "
        f"({warmup} warm-up + {measured}) {where}"
    )
