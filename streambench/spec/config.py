"""How the settings of ``streambench run`` are typed and bounded: one coercion per type, used by
the one table of settings (:mod:`streambench.spec.keys`) for the command line and ``--config`` YAML
alike, so that every value is checked the same way and every error names its source (``--seed``
or ``config c.yaml: key 'seed'``) and the expected type and range.

Rules (the class of the hostile-input fixes):

- booleans are booleans: YAML ``true``/``false`` only; the string ``'false'`` is an error, never
  true (it once turned ``trust_remote_code`` on);
- whole numbers are whole numbers within bounds (no floats, no booleans, no ``1e23``);
- a key that takes one value refuses a list (it never silently takes the first item);
- sweep axes (``in_out``, ``batch_size``) take a comma-separated string or a list.

>>> seed = bounded("seed")
>>> seed(7, "--seed")
7
>>> seed("abc", "--seed")
Traceback (most recent call last):
...
streambench.errors.UsageError: --seed: 'abc' is not a whole number (expected 0 to 4294967295)
>>> boolean("no", "ipex")
Traceback (most recent call last):
...
streambench.errors.UsageError: ipex: 'no' is not a boolean (expected true or false, unquoted)
"""

from __future__ import annotations

import json
import math
import reprlib
from typing import Any, Callable, Optional

from ..errors import UsageError
from ..numtext import int_text, real, whole

__all__ = [
    "BOUNDS",
    "COMPILE_MODES",
    "parse_in_out_text",
    "parse_int_axis",
]

#: (low, high) of every whole-number setting; outside them a run is a mistake or never finishes
BOUNDS: dict[str, tuple[int, int]] = {
    "prompt_tokens": (1, 1_048_576),
    "new_tokens": (1, 1_048_576),
    "batch_size": (1, 4096),
    "warmup": (0, 1000),
    "trials": (1, 100_000),
    "num_beams": (1, 64),
    "num_layers": (1, 256),
    "seed": (0, 2**32 - 1),
    "top_k": (1, 1_000_000),
    "prompt_lookup": (1, 1024),
}
#: (low, high] of every real-number setting
REAL_BOUNDS: dict[str, tuple[float, float]] = {"temperature": (0.0, 100.0), "top_p": (0.0, 1.0)}

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def _show(value: Any) -> str:
    if isinstance(value, int):  # YAML 0xfff...: repr() refuses more than 4,300 digits
        return int_text(value)
    # reprlib: bounded even for a YAML alias bomb (nested lists that share references)
    return reprlib.Repr().repr(value) if not isinstance(value, str) else repr(value[:60])


def _whole(value: Any, where: str, low: int, high: int) -> int:
    """An int in ``[low, high]`` from an int, an integral float, or a string of the digits 0-9
    (:func:`streambench.numtext.whole`: not ``'²'`` or ``'٣'``, at most 100 characters)."""
    expected = f"expected {low} to {high}"
    number: int | None = None
    if isinstance(value, bool):
        pass
    elif isinstance(value, int):
        number = value
    elif isinstance(value, str):
        try:
            number = whole(value)
        except ValueError as exc:
            raise UsageError(f"{where}: {exc} ({expected})") from None
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    if number is None:
        raise UsageError(f"{where}: {_show(value)} is not a whole number ({expected})")
    if not (low <= number <= high):
        raise UsageError(f"{where}: {_show(value)} is out of range ({expected})")
    return number


def parse_int_axis(value: Any, where: str, low: int, high: int) -> list[int]:
    """``"1,4"`` / ``4`` / ``[1, 4]`` -> ``[1, 4]``, each in ``[low, high]``."""
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    out = [_whole(v.strip() if isinstance(v, str) else v, where, low, high) for v in items]
    if not out:
        raise UsageError(f"{where}: no value given")
    return out


def parse_in_out_text(value: Any, where: str = "--in-out") -> list[tuple[int, int]]:
    """``"32-32,1024-128"`` (or a list of ``"32-32"``) -> ``[(32, 32), (1024, 128)]``."""
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    lo_in, hi_in = BOUNDS["prompt_tokens"]
    lo_out, hi_out = BOUNDS["new_tokens"]
    pairs: list[tuple[int, int]] = []
    for raw in items:
        if not isinstance(raw, (str, int)) or isinstance(raw, bool):
            raise UsageError(f"{where}: {_show(raw)} is not an INPUT-OUTPUT pair, e.g. 32-32")
        item = str(raw).strip()
        if not item:
            continue
        parts = item.split("-")
        try:
            if len(parts) != 2 or not all(p.strip()[:1].isdigit() for p in parts):
                raise ValueError("")
            n_in, n_out = whole(parts[0]), whole(parts[1])
        except ValueError as exc:
            why = f" ({exc})" if str(exc) and not str(exc).endswith("whole number") else ""
            raise UsageError(
                f"malformed input/output pair {item[:40]!r} in {where}{why}: write INPUT-OUTPUT "
                "token counts, e.g. --in-out 32-32,1024-128"
            ) from None
        if n_in < 1 or n_out < 1:
            raise UsageError(f"input/output pair {item!r}: both token counts must be >= 1")
        if n_in > hi_in or n_out > hi_out:
            raise UsageError(
                f"input/output pair {item!r} in {where}: token counts go up to {hi_in} "
                f"(input) and {hi_out} (output)"
            )
        pairs.append((max(n_in, lo_in), max(n_out, lo_out)))
    if not pairs:
        raise UsageError(f"no input/output pair given in {where}: e.g. --in-out 32-32,1024-128")
    return pairs


def boolean(value: Any, where: str) -> bool:
    """A YAML boolean (never the text ``'false'``)."""
    if isinstance(value, bool):
        return value
    raise UsageError(f"{where}: {_show(value)} is not a boolean (expected true or false, unquoted)")


def text(value: Any, where: str) -> str:
    """A non-empty text, stripped."""
    if isinstance(value, str) and value.strip() and "\0" not in value:
        return value.strip()
    raise UsageError(f"{where}: {_show(value)} is not a text (expected a non-empty string)")


def lower_text(value: Any, where: str) -> str:
    """:func:`text`, lower-cased (``--dtype BFloat16`` is ``bfloat16``)."""
    return text(value, where).lower()


def hub(value: Any, where: str) -> Optional[str]:
    """``local_model_hub``: empty (or null) means no hub, the repo ids used as they are, as in
    ipex-llm's all-in-one ``run.py``."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return text(value, where)


def text_or_list(value: Any, where: str) -> list[str]:
    """A text or a list of texts -> a list of texts."""
    items = value if isinstance(value, (list, tuple)) else [value]
    if not items:
        raise UsageError(f"{where}: empty list")
    return [text(v, where) for v in items]


def _choice(value: Any, where: str, choices: tuple[str, ...]) -> str:
    text_ = text(value, where).lower()
    if text_ not in choices:
        raise UsageError(f"{where}: {_show(value)} is not one of {', '.join(choices)}")
    return text_


def choice_of(choices: tuple[str, ...]) -> Callable[[Any, str], str]:
    """One of ``choices`` (case-insensitive)."""
    return lambda v, where: _choice(v, where, choices)


def optional_text(value: Any, where: str) -> Optional[str]:
    """A text, or ``None`` for empty, ``none``, ``null`` or ``false``."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
        return None
    if value is False:
        return None
    return text(value, where)


def real_in(name: str) -> Callable[[Any, str], float]:
    """A finite real number within :data:`REAL_BOUNDS` ``[name]``."""
    low, high = REAL_BOUNDS[name]

    def parse(value: Any, where: str) -> float:
        expected = f"expected a number > {low:g} and <= {high:g}"
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:  # a YAML int too large for a float
                number = math.inf
        elif isinstance(value, str):
            try:
                number = real(value)
            except ValueError as exc:
                raise UsageError(f"{where}: {exc} ({expected})") from None
        if number is None or not math.isfinite(number):
            raise UsageError(f"{where}: {_show(value)} is not a number ({expected})")
        if not low < number <= high:
            raise UsageError(f"{where}: {_show(value)} is out of range ({expected})")
        return number

    return parse


def json_object(value: Any, where: str) -> dict[str, Any]:
    """A JSON object given as text (the command line) or as a mapping (YAML)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except RecursionError:
            raise UsageError(f"{where}: not valid JSON (nested too deeply)") from None
        except ValueError as exc:
            reason = getattr(exc, "msg", None) or "a number of more than 4,300 digits"
            raise UsageError(
                f"{where}: not valid JSON ({reason}); write an object, e.g. "
                "'{\"repetition_penalty\": 1.1}'"
            ) from None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise UsageError(f"{where}: {_show(value)} is not a JSON object of name: value")
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError, RecursionError):
        raise UsageError(f"{where}: values must be JSON (text, numbers, booleans, lists)") from None


def values(parse: Callable[[Any, str], Any], axis: bool) -> Callable[[Any, str], list[Any]]:
    """A list of values: a YAML list, a comma-separated text (``axis``), or one value."""

    def coerce(value: Any, where: str) -> list[Any]:
        if isinstance(value, (list, tuple)):
            items = list(value)
        elif axis and isinstance(value, str):
            items = [v for v in value.split(",") if v.strip()]
        else:
            items = [value]
        if not items:
            raise UsageError(f"{where}: no value given")
        return [parse(v, where) for v in items]

    return coerce


def bounded(name: str) -> Callable[[Any, str], int]:
    """A whole number within :data:`BOUNDS` ``[name]``."""
    low, high = BOUNDS[name]
    return lambda v, where: _whole(v, where, low, high)


def threads(value: Any, where: str) -> int:
    """``--threads N``: a whole number of CPU threads from 1 to this machine's ``os.cpu_count()``
    (more would oversubscribe the cores and measure the scheduler)."""
    import os

    cpus = os.cpu_count() or 1
    try:
        return _whole(value, where, 1, cpus)
    except UsageError as exc:
        raise UsageError(f"{exc}: this machine has {cpus} CPUs") from None


def trials(value: Any, where: str) -> int | str:
    """``auto`` (``--trials auto``: until the answer is clear) or a bounded whole number."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    low, high = BOUNDS["trials"]
    try:
        return _whole(value, where, low, high)
    except UsageError as exc:  # the usual message, and that auto is the other choice
        raise UsageError(f"{exc}; or auto") from None


def percent(low: float, high: float) -> Callable[[Any, str], float]:
    """``"5%"``, ``"5"`` or ``5`` -> ``0.05``: a percentage in ``(low, high]`` as a fraction."""

    def parse(value: Any, where: str) -> float:
        raw = str(value).strip().removesuffix("%").strip() if not isinstance(value, bool) else ""
        try:
            number = float(raw)
        except ValueError:
            number = math.nan
        if not low < number <= high:  # NaN fails too
            raise UsageError(
                f"{where}: {_show(value)} is not a percentage above {low:g}% and at most "
                f"{high:g}% (e.g. 5%)"
            )
        return number / 100.0

    return parse


def seconds(value: Any, where: str) -> float:
    """A positive, finite number of seconds."""
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not 0 < number < math.inf:
        raise UsageError(f"{where}: {_show(value)} is not a positive number of seconds")
    return number


def axis(name: str) -> Callable[[Any, str], list[int]]:
    """A sweep axis of whole numbers within :data:`BOUNDS` ``[name]``."""
    low, high = BOUNDS[name]
    return lambda v, where: parse_int_axis(v, where, low, high)


def compile_mode(value: Any, where: str) -> str:
    """One of :data:`COMPILE_MODES`."""
    return _choice(value, where, COMPILE_MODES)


def _engine(value: Any, where: str) -> str:
    """An ``--engine`` name of the registry (:mod:`streambench.engines`: imported only here)."""
    from ..engines import engine_names

    return _choice(value, where, engine_names())


# -- the workload options (:mod:`streambench.workloads`): shared with ``streambench endpoint``,
# whose messages they keep
def workload_whole(low: int, high: int) -> Any:
    """A parser of whole numbers from ``low`` to ``high``."""
    return lambda v, where: _workload_whole(v, where, low, high)


def _workload_whole(value: Any, where: str, low: int, high: int) -> int:
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


def workload_flag(value: Any, where: str) -> bool:
    """A boolean (YAML ``true``/``false``; the command line's flags are booleans already)."""
    if isinstance(value, bool):
        return value
    raise UsageError(f"{where}: {str(value)[:40]!r} is not a boolean (expected true or false)")


def workload_path(value: Any, where: str) -> str:
    """A non-empty file name, stripped."""
    if isinstance(value, str) and value.strip() and "\0" not in value:
        return value.strip()
    raise UsageError(f"{where}: {str(value)[:40]!r} is not a file name")
