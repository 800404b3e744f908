"""What a workload asks for: :class:`WorkloadSpec` (plain JSON values, so it travels to the
isolation workers and into the results file as it is) and the typed option parsers shared by
``streambench run`` (through :mod:`streambench.spec.config`) and ``streambench endpoint``.

>>> parse_output_len("from-data", "--output-len"), parse_output_len("64", "--output-len")
('from-data', 64)
>>> WorkloadSpec(length_spread=0.25, shared_prefix=16).identity()
{'length_spread': 0.25, 'shared_prefix': 16}
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Union

from ..errors import UsageError
from ..numtext import int_text, real, whole

__all__ = [
    "DEFAULT_FORCED_OUTPUT",
    "DEFAULT_MAX_OUTPUT_LEN",
    "MAX_PROMPTS",
    "OUTPUT_MODES",
    "WorkloadSpec",
    "parse_output_len",
    "parse_spread",
]

OUTPUT_MODES = ("from-data", "natural")
#: output tokens forced for a prompt file without ``--output-len`` (ShareGPT: from-data)
DEFAULT_FORCED_OUTPUT = 128
#: the cap of ``--output-len natural``
DEFAULT_MAX_OUTPUT_LEN = 512
MAX_PROMPTS = 10_000_000
MAX_TOKENS = 1_048_576
MAX_SPREAD = 0.99

OutputLen = Union[int, str, None]


def parse_output_len(value: Any, where: str) -> int | str:
    """``--output-len``: a whole number of forced tokens, ``from-data`` or ``natural``."""
    if isinstance(value, str) and value.strip().lower() in OUTPUT_MODES:
        return value.strip().lower()
    number, why = None, ""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str):
        try:
            number = whole(value)
        except ValueError as exc:
            why = f" ({exc})"
    if number is None or not 1 <= number <= MAX_TOKENS:
        shown = int_text(value) if isinstance(value, int) else str(value)[:40]
        raise UsageError(
            f"{where}: {shown!r} is not a token count from 1 to {MAX_TOKENS}, "
            f"'from-data' or 'natural'{why}"
        )
    return number


def parse_spread(value: Any, where: str) -> float:
    """``--length-spread``: a fraction from 0 to 0.99 (``0.25``: lengths within ±25 %); ``25%``
    is read as 0.25."""
    text = str(value).strip() if isinstance(value, (str, float)) else ""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() < 64:
        text = str(value)
    percent = text.endswith("%")
    try:
        number = real(text.rstrip("%")) / (100.0 if percent else 1.0)
    except ValueError:  # '٠.٢', 'abc', 5,000 digits
        number = math.nan
    if not 0.0 <= number <= MAX_SPREAD:  # NaN fails too
        raise UsageError(
            f"{where}: {str(value)[:40]!r} is not a fraction from 0 to {MAX_SPREAD} "
            "(e.g. 0.25 for ±25 %)"
        )
    return number


@dataclass
class WorkloadSpec:
    """The workload of a sweep beside its ``--in-out`` pairs and batch sizes.

    ``prompts``: a local prompt file (:mod:`streambench.workloads.files`), ``prompts_sha256``
    its hash when read; ``output_len``: forced tokens (int), ``"from-data"`` (the file's
    reference lengths) or ``"natural"`` (stop at EOS, capped at ``max_output_len``); ``None``:
    from-data for ShareGPT, else :data:`DEFAULT_FORCED_OUTPUT`. ``max_prompts``, ``shuffle``
    (seeded by the sweep's seed): which prompts. ``length_spread``: synthetic lengths drawn
    within ±spread of each ``--in-out`` pair; ``shared_prefix``: the same N-token prefix before
    every prompt (counted in the input length). ``apply_chat_template``: text prompts through
    the tokenizer's chat template (``run``). ``save_outputs``: keep each generated text (an MD5 is
    always kept). ``skip_invalid``: skip prompts that cannot run (too long) with a count instead
    of failing. ``counts``: prompts selected per model (filled by the pre-flight check)."""

    prompts: str | None = None
    prompts_sha256: str | None = None
    output_len: OutputLen = None
    max_output_len: int = DEFAULT_MAX_OUTPUT_LEN
    max_prompts: int | None = None
    shuffle: bool = False
    length_spread: float = 0.0
    shared_prefix: int = 0
    apply_chat_template: bool = False
    save_outputs: bool = False
    skip_invalid: bool = False
    counts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_value(cls, value: Any) -> WorkloadSpec | None:
        """``value`` itself, or one rebuilt from :meth:`to_dict` / ``asdict`` (a worker's JSON)."""
        if value is None or isinstance(value, cls):
            return value
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in dict(value).items() if k in known})

    @property
    def active(self) -> bool:
        """Whether anything differs from the fixed synthetic prompts of ``--in-out``."""
        return bool(self.prompts or self.length_spread or self.shared_prefix or self.save_outputs)

    @property
    def uses_file(self) -> bool:
        return self.prompts is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def identity(self) -> dict[str, Any]:
        """What selects the workload (a configuration's ``settings.further``): only what differs
        from the default, so results without a workload keep their identity."""
        out: dict[str, Any] = {}
        if self.prompts:
            sha = (self.prompts_sha256 or "")[:12]
            out["prompts"] = f"{os.path.basename(self.prompts)}#{sha}"
            out["output_len"] = self.output_len
            if self.max_prompts is not None:
                out["max_prompts"] = self.max_prompts
            if self.shuffle:
                out["shuffle"] = True
            if self.output_len == "natural":
                out["max_output_len"] = self.max_output_len
            if self.apply_chat_template:
                out["chat_template"] = True
        if self.length_spread:
            out["length_spread"] = self.length_spread
        if self.shared_prefix:
            out["shared_prefix"] = self.shared_prefix
        return out

    def tag(self) -> str:
        """A short label part, e.g. ``"prompts.jsonl out=from-data"``."""
        ident = self.identity()
        parts = []
        if "prompts" in ident:
            parts.append(os.path.basename(self.prompts or ""))
            parts.append(f"out={self.output_len}")
        if self.length_spread:
            parts.append(f"spread{self.length_spread:g}")
        if self.shared_prefix:
            parts.append(f"prefix{self.shared_prefix}")
        return " ".join(parts)
