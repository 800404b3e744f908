"""Small helpers on JSON values shared by the results modules: type tests that treat ``bool`` as
not a number, a description of a value for one-line messages, and number formatting."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

#: bytes in a GiB (the console and Markdown say GiB; the CSV's column names and the ipex-llm
#: ``do_print`` lines keep all-in-one's "GB" for compatibility)
GiB = 1024**3


def is_number(value: Any) -> bool:
    """A JSON number (``true``/``false`` are not numbers, although Python's bool is an int)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def finite_number(value: Any) -> bool:
    """A number that is neither NaN nor infinite."""
    return is_number(value) and math.isfinite(value)


def is_int(value: Any) -> bool:
    """A whole JSON number (not ``true``/``false``)."""
    return isinstance(value, int) and not isinstance(value, bool)


def kind(value: Any) -> str:
    """How a JSON value looks, for messages: ``a string ('fast')``, ``a list``, ``null``.

    >>> kind("fast"), kind(None), kind(True), kind([1])
    ("a string ('fast')", 'null', 'true', 'a list')
    """
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


#: from this magnitude on, :func:`fmt` writes numbers in scientific notation (``1.00e+15``):
#: fixed-point would be a cell of hundreds of digits (a float goes up to 1.8e308)
SCIENTIFIC_FROM = 1e15


class Overflowed(float):
    """A finite value whose scaling (:func:`scaled`: seconds to ms, ...) is beyond a float: it
    computes and compares as the infinity the product became, but :func:`fmt` shows the true
    number (``exact``, a :class:`decimal.Decimal`), never ``inf``."""

    exact: Decimal

    def __new__(cls, value: float, scale: float) -> Overflowed:
        exact = Decimal(value) * Decimal(scale)
        out = super().__new__(cls, math.copysign(math.inf, exact))
        out.exact = exact
        return out


def scaled(value: Any, scale: float) -> float | None:
    """``value * scale`` for a number (NaN and infinities kept, to be shown), else ``None``; a
    finite value whose product overflows is an :class:`Overflowed` (shown as the true number)."""
    if not is_number(value):
        return None
    out = float(value) * scale
    if math.isinf(out) and math.isfinite(value):
        return Overflowed(float(value), scale)
    return out


def ms(value: Any) -> float | None:
    """Seconds to milliseconds; ``None`` for anything that is not a number."""
    return scaled(value, 1e3)


def fmt(value: Any, digits: int = 2) -> str:
    """A cell: ``""`` for ``None`` and NaN, floats with ``digits`` decimals — in scientific
    notation from :data:`SCIENTIFIC_FROM` on, and the true number of an :class:`Overflowed` —
    others as ``str``.

    >>> fmt(12.3456, 2), fmt(1e308, 2), fmt(scaled(1e308, 1e3), 2), fmt(float("inf"))
    ('12.35', '1.00e+308', '1.00e+311', 'inf')
    """
    if value is None:
        return ""
    if isinstance(value, Overflowed):
        return f"{value.exact:.{digits}e}"
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if math.isfinite(value) and abs(value) >= SCIENTIFIC_FROM:
            return f"{value:.{digits}e}"
        return f"{value:.{digits}f}"
    return str(value)


def finite(value: Any) -> Any:
    """A copy of a JSON value with NaN and infinities (not JSON) as ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def one_line(value: Any, limit: int = 200) -> str:
    """``value`` as one line of at most ``limit`` characters (whitespace runs become a space)."""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
