"""The workload options of ``streambench run`` and ``streambench endpoint``: one set of
cross-option checks for both. Their flags, help, parsers and YAML keys are entries of
:data:`streambench.spec.keys.TABLE` (values typed through it by :mod:`streambench.spec.run` for
``run``, by :func:`coerce` for ``endpoint``)."""

from __future__ import annotations

from typing import Any

from ..errors import UsageError
from ..spec.keys import TABLE
from ..spec.keys import add_arguments as add_keys
from .spec import WorkloadSpec

__all__ = ["DESTS", "PARSERS", "add_arguments", "coerce", "workload_from"]


def add_arguments(parser: Any, command: str) -> None:
    """The workload options of ``command`` (``run`` or ``endpoint``), from
    :data:`streambench.spec.keys.TABLE`; every default is ``None`` (not given), so ``--config``
    values and the checks can tell."""
    add_keys(parser, command, only=["workload"])


#: argparse destinations of the workload options
DESTS = tuple(k.dest for k in TABLE if k.group == "workload")
#: parser of each destination: (raw value, where) -> typed value
PARSERS: dict[str, Any] = {k.dest: k.parse for k in TABLE if k.group == "workload"}


def coerce(args: Any) -> dict[str, Any]:
    """The workload options given in ``args`` (argparse), typed; ``{dest: value}``."""
    out = {}
    for k in (k for k in TABLE if k.group == "workload"):
        value = getattr(args, k.dest, None)
        if value is not None:
            out[k.dest] = k.coerce(value, k.option)
    return out


def workload_from(values: dict[str, Any], in_out_given: bool) -> WorkloadSpec | None:
    """A :class:`WorkloadSpec` from typed values (``None`` when no workload option is set), after
    the checks between options (one line naming them: exit 2)."""
    given = {k: v for k, v in values.items() if k in DESTS and v is not None}
    if not given:
        return None
    w = WorkloadSpec(**given)
    if w.uses_file:
        if in_out_given:
            raise UsageError(
                "--in-out does not combine with --prompts (input lengths come from "
                "the data): use --output-len N to set the output length"
            )
        if w.length_spread:
            raise UsageError(
                "--length-spread draws synthetic lengths around --in-out; with "
                "--prompts the lengths come from the data: drop one"
            )
    else:
        need = [
            k
            for k in ("output_len", "max_prompts", "shuffle", "apply_chat_template", "skip_invalid")
            if given.get(k) not in (None, False)
        ]
        if need:
            name = "--" + need[0].replace("_", "-")
            raise UsageError(
                f"{name} works with --prompts FILE only (synthetic prompts: --in-out IN-OUT)"
            )
    if "max_output_len" in given and w.output_len != "natural":
        raise UsageError("--max-output-len caps --output-len natural: add --output-len natural")
    return w
