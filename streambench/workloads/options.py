"""The workload options of ``streambench run`` and ``streambench endpoint``: one argparse
definition and one set of cross-option checks for both (values typed by
:mod:`streambench.config` for ``run``, by :func:`coerce` for ``endpoint``)."""

from __future__ import annotations

from typing import Any

from ..errors import UsageError
from ..numtext import int_text, whole
from .spec import (
    DEFAULT_MAX_OUTPUT_LEN,
    MAX_PROMPTS,
    MAX_TOKENS,
    WorkloadSpec,
    parse_output_len,
    parse_spread,
)

__all__ = ["DESTS", "add_arguments", "coerce", "workload_from"]

#: argparse destinations of the workload options
DESTS = (
    "prompts",
    "output_len",
    "max_output_len",
    "max_prompts",
    "shuffle",
    "length_spread",
    "shared_prefix",
    "apply_chat_template",
    "save_outputs",
    "skip_invalid",
)


def add_arguments(parser: Any, command: str) -> None:
    """The workload options (``command``: ``run`` or ``endpoint``); every default is ``None``
    (not given), so ``--config`` values and the checks can tell."""
    group = parser.add_argument_group("workload (your own prompts and traffic)")
    group.add_argument(
        "--prompts",
        metavar="FILE",
        help="prompts from a local file: .txt (one per line), .jsonl (prompt or messages, "
        "optional output_tokens), .json (ShareGPT), .csv (a prompt column); input lengths come "
        "from the data",
    )
    group.add_argument(
        "--output-len",
        metavar="N|from-data|natural",
        help="with --prompts: N forced tokens (default 128), from-data (reference lengths; the "
        "default for ShareGPT), or natural (stop at EOS, up to --max-output-len)",
    )
    group.add_argument(
        "--max-output-len",
        metavar="N",
        help=f"cap of --output-len natural (default {DEFAULT_MAX_OUTPUT_LEN})",
    )
    group.add_argument(
        "--max-prompts", metavar="N", help="use the first N prompts (after --shuffle)"
    )
    group.add_argument(
        "--shuffle", action="store_true", default=None, help="shuffle the prompts (with --seed)"
    )
    group.add_argument(
        "--length-spread",
        metavar="R",
        help="draw each request's input and output lengths uniformly within ±R of --in-out "
        "(e.g. 0.25), seeded",
    )
    group.add_argument(
        "--shared-prefix",
        metavar="N",
        help="the same N-token prefix before every prompt (counted in the input length)",
    )
    if command == "run":
        group.add_argument(
            "--apply-chat-template",
            action="store_true",
            default=None,
            help="text prompts through the tokenizer's chat template (messages always are)",
        )
    group.add_argument(
        "--save-outputs",
        action="store_true",
        default=None,
        help="keep each generated text in the results (an MD5 of it is always kept)",
    )
    group.add_argument(
        "--skip-invalid",
        action="store_true",
        default=None,
        help="skip prompts that cannot run (too long for the context ...) with a count",
    )


def _whole(value: Any, where: str, low: int, high: int) -> int:
    number, why = None, ""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str):
        try:
            number = whole(value)
        except ValueError as exc:  # '²', '٣', 5,000 digits: said as such
            why = f" ({exc})"
    if number is None or not low <= number <= high:
        shown = int_text(value) if isinstance(value, int) else str(value)[:40]
        raise UsageError(f"{where}: {shown!r} is not a whole number from {low} to {high}{why}")
    return number


def _flag(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    raise UsageError(f"{where}: {str(value)[:40]!r} is not a boolean (expected true or false)")


def _path(value: Any, where: str) -> str:
    if isinstance(value, str) and value.strip() and "\0" not in value:
        return value.strip()
    raise UsageError(f"{where}: {str(value)[:40]!r} is not a file name")


#: parser of each destination: (raw value, where) -> typed value
PARSERS: dict[str, Any] = {
    "prompts": _path,
    "output_len": parse_output_len,
    "max_output_len": lambda v, w: _whole(v, w, 1, MAX_TOKENS),
    "max_prompts": lambda v, w: _whole(v, w, 1, MAX_PROMPTS),
    "shuffle": _flag,
    "length_spread": parse_spread,
    "shared_prefix": lambda v, w: _whole(v, w, 0, MAX_TOKENS),
    "apply_chat_template": _flag,
    "save_outputs": _flag,
    "skip_invalid": _flag,
}


def coerce(args: Any) -> dict[str, Any]:
    """The workload options given in ``args`` (argparse), typed; ``{dest: value}``."""
    out = {}
    for dest in DESTS:
        value = getattr(args, dest, None)
        if value is not None:
            out[dest] = PARSERS[dest](value, "--" + dest.replace("_", "-"))
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
