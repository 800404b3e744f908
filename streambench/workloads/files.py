"""Prompt files, read locally (never downloaded): the format comes from the extension.

- ``.txt``: one prompt per line (blank lines skipped);
- ``.jsonl``: one object per line with ``"prompt"`` (text) or ``"messages"`` (an OpenAI chat list
  of ``{"role", "content"}``), optionally ``"output_tokens"`` (a reference output length);
- ``.json``: the ShareGPT layout, a list of ``{"conversations": [{"from": "human"|"gpt",
  "value": ...}, ...]}``: the first human turn is the prompt and the first gpt turn after it the
  reference output (its length in tokens, as vLLM's ``bench serve`` takes it);
- ``.csv``: a ``prompt`` column (and optionally ``output_tokens``).

Anything wrong is a :class:`~streambench.errors.UsageError` naming the file and the line or item.

>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "p.txt")
>>> _ = open(path, "w").write("Hello there\\n\\nWhat is a clock?\\n")
>>> f = read_prompt_file(path)
>>> f.format, [item.text for item in f.items], f.items[1].where
('txt', ['Hello there', 'What is a clock?'], 'line 3')
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError
from ..numtext import whole
from ..reading import LIMITS, read_bounded

__all__ = ["FORMATS", "MAX_FILE_BYTES", "PromptFile", "PromptItem", "read_prompt_file"]

#: extension -> format
FORMATS = {".txt": "txt", ".jsonl": "jsonl", ".json": "sharegpt", ".csv": "csv"}
#: the largest prompt file read (the ShareGPT V3 file is about 670 MB)
MAX_FILE_BYTES = LIMITS["prompts"]
#: the most characters a prompt may have whatever the model: :data:`CHARS_PER_TOKEN` times the
#: longest context a setting allows (1,048,576 tokens); also the CSV cell limit
MAX_PROMPT_CHARS = 32 * 1_048_576
#: a generous bound of characters per token: a prompt longer than this many characters per
#: context token cannot fit, and is refused before it is tokenized
CHARS_PER_TOKEN = 32
#: the largest reference output length taken from a file
MAX_REFERENCE_TOKENS = 1_048_576
_ROLES = ("system", "user", "assistant", "tool", "developer")
#: the keys read from a JSON Lines prompt; others are named once in :attr:`PromptFile.notes`
JSONL_KEYS = frozenset({"prompt", "messages", "output_tokens"})


@dataclass(frozen=True)
class PromptItem:
    """One prompt of a file: ``index`` (0-based among the file's prompts), ``where`` (``"line
    3"``, ``"item 2"``, ``"row 4"``), the prompt as ``text`` or as chat ``messages`` (a tuple of
    ``{"role", "content"}`` dicts), and its reference output: a token count
    (``reference_tokens``) or a text to tokenize (``reference_text``, ShareGPT)."""

    index: int
    where: str
    text: str | None = None
    messages: tuple[dict[str, str], ...] | None = None
    reference_tokens: int | None = None
    reference_text: str | None = None

    @property
    def has_reference(self) -> bool:
        return self.reference_tokens is not None or self.reference_text is not None


@dataclass(frozen=True)
class PromptFile:
    """A prompt file read: ``path``, ``format`` (``txt``, ``jsonl``, ``sharegpt``, ``csv``), its
    ``sha256`` (of the bytes read), its ``items`` in file order, and ``unknown_keys``: the JSON
    Lines keys that are not read (``(key, first line)`` pairs, sorted), said once in
    :attr:`notes`."""

    path: str
    format: str
    sha256: str
    items: tuple[PromptItem, ...]
    unknown_keys: tuple[tuple[str, str], ...] = ()

    @property
    def notes(self) -> list[str]:
        """One-line warnings about the file (unknown JSON Lines keys), to print once."""
        if not self.unknown_keys:
            return []
        shown = ", ".join(f"{k[:40]!r} ({where})" for k, where in self.unknown_keys[:8])
        more = len(self.unknown_keys) - 8
        shown += f" and {more} more" if more > 0 else ""
        return [
            f"--prompts {self.path}: unknown key(s) ignored: {shown}; a line is read from "
            '"prompt" or "messages", and "output_tokens"'
        ]

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    @property
    def has_references(self) -> bool:
        return any(item.has_reference for item in self.items)


def _fail(path: str, where: str, what: str) -> UsageError:
    at = f" ({where})" if where else ""
    return UsageError(f"--prompts {path}{at}: {what}")


def read_prompt_file(path: str) -> PromptFile:
    """Read and check a prompt file; :class:`UsageError` (one line, naming the file and the line
    or item) for an unknown extension, an unreadable, empty, non-UTF-8 or malformed file."""
    ext = os.path.splitext(path)[1].lower()
    fmt = FORMATS.get(ext)
    if fmt is None:
        raise _fail(
            path,
            "",
            f"unknown format {ext or '(no extension)'!r}: use .txt (a prompt "
            "per line), .jsonl, .json (ShareGPT) or .csv (a prompt column)",
        )
    raw = read_bounded(path, "prompts", "--prompts", MAX_FILE_BYTES)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise _fail(path, f"line {line}", "not UTF-8 text") from None
    unknown: dict[str, str] = {}
    if fmt == "jsonl":
        items = _jsonl(path, text, unknown)
    else:
        items = {"txt": _txt, "sharegpt": _sharegpt, "csv": _csv}[fmt](path, text)
    if not items:
        raise _fail(path, "", "no prompts in it (empty file)")
    digest = hashlib.sha256(raw).hexdigest()
    keys = tuple(sorted(unknown.items()))
    return PromptFile(os.path.abspath(path), fmt, digest, tuple(items), keys)


def lines_of(text: str) -> list[str]:
    """The lines of ``text``, split on ``\\n`` and ``\\r\\n`` only: ``str.splitlines()`` would
    also split on U+2028, U+2029, U+0085, form feeds, vertical tabs and ``\\x1c``-``\\x1e``, which
    are text inside a prompt (and valid inside a JSON string).

    >>> lines_of("a\\u2028b\\r\\nc\\fd\\n")
    ['a\\u2028b', 'c\\x0cd']
    """
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _txt(path: str, text: str) -> list[PromptItem]:
    out = []
    for n, line in enumerate(lines_of(text), 1):
        if line.strip():
            out.append(PromptItem(len(out), f"line {n}", text=line))
    return out


def _reference(path: str, where: str, value: Any) -> int | None:
    if value is None:
        return None
    number = value if isinstance(value, int) and not isinstance(value, bool) else None
    reason = ""
    if isinstance(value, str):
        try:
            number = whole(value)
        except ValueError as exc:  # '²', '٣', 5,000 digits: said as such
            reason = f" ({exc})"
    if number is None or not 1 <= number <= MAX_REFERENCE_TOKENS:
        raise _fail(
            path,
            where,
            f"output_tokens {str(value)[:40]!r} is not a whole number from 1 to "
            f"{MAX_REFERENCE_TOKENS}{reason}",
        )
    return number


def _messages(path: str, where: str, value: Any) -> tuple[dict[str, str], ...]:
    if not isinstance(value, list) or not value:
        raise _fail(path, where, '"messages" must be a non-empty list of {"role", "content"}')
    out = []
    for i, msg in enumerate(value):
        if (
            not isinstance(msg, dict)
            or msg.get("role") not in _ROLES
            or not isinstance(msg.get("content"), str)
        ):
            raise _fail(
                path,
                where,
                f"messages[{i}] is not an object with a role "
                f"({', '.join(_ROLES)}) and a text content",
            )
        out.append({"role": msg["role"], "content": msg["content"]})
    return tuple(out)


def _json_problem(exc: Exception) -> str:
    """What is wrong with a text that ``json.loads`` refused."""
    if isinstance(exc, RecursionError):
        return "not valid JSON (nested too deeply)"
    if not isinstance(exc, json.JSONDecodeError):  # int()'s limit of 4,300 digits
        return "not valid JSON (a number of more than 4,300 digits)"
    return "not valid JSON"


def _jsonl(path: str, text: str, unknown: dict[str, str]) -> list[PromptItem]:
    """The prompts of a JSON Lines file; ``unknown`` collects each key that is not read, with the
    first line that has it."""
    out = []
    for n, line in enumerate(lines_of(text), 1):
        if not line.strip():
            continue
        where = f"line {n}"
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise _fail(path, where, _json_problem(exc)) from None
        if not isinstance(obj, dict):
            raise _fail(
                path, where, 'not a JSON object (expected {"prompt": ...} or {"messages": [...]})'
            )
        for key in obj.keys() - JSONL_KEYS:
            unknown.setdefault(key, where)
        ref = _reference(path, where, obj.get("output_tokens"))
        if isinstance(obj.get("prompt"), str) and obj["prompt"].strip():
            out.append(PromptItem(len(out), where, text=obj["prompt"], reference_tokens=ref))
        elif "messages" in obj:
            msgs = _messages(path, where, obj["messages"])
            out.append(PromptItem(len(out), where, messages=msgs, reference_tokens=ref))
        else:
            raise _fail(path, where, 'needs "prompt" (a non-empty text) or "messages"')
    return out


def _turn_text(turn: Any) -> tuple[str | None, str | None]:
    if not isinstance(turn, dict):
        return None, None
    who, value = turn.get("from"), turn.get("value")
    return (who if isinstance(who, str) else None), (value if isinstance(value, str) else None)


def _sharegpt(path: str, text: str) -> list[PromptItem]:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        line = getattr(exc, "lineno", None)
        raise _fail(path, f"line {line}" if line else "", _json_problem(exc)) from None
    if not isinstance(data, list):
        raise _fail(
            path, "", 'not the ShareGPT layout: expected a list of {"conversations": [...]} items'
        )
    out = []
    for i, item in enumerate(data):
        where = f"item {i}"
        turns = item.get("conversations") if isinstance(item, dict) else None
        if not isinstance(turns, list):
            raise _fail(path, where, 'not an object with a "conversations" list')
        prompt, reference = None, None
        for turn in turns:
            who, value = _turn_text(turn)
            if prompt is None and who in ("human", "user") and value and value.strip():
                prompt = value
            elif prompt is not None and who in ("gpt", "assistant") and value is not None:
                reference = value
                break
        if prompt is None:
            raise _fail(path, where, "no human turn with text (the prompt)")
        out.append(PromptItem(len(out), where, text=prompt, reference_text=reference))
    return out


def _csv_rows(path: str, text: str) -> tuple[list[str], list[dict[str, Any]]]:
    """(column names, rows) of a CSV text; a cell may hold :data:`MAX_PROMPT_CHARS` characters
    (the csv module's default limit is 131,072)."""
    old = csv.field_size_limit(MAX_PROMPT_CHARS)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    except csv.Error as exc:
        line = reader.reader.line_num  # the line being read (DictReader's lags a row behind)
        at = f"line {line}" if line else ""
        if "field larger than field limit" in str(exc):
            raise _fail(
                path,
                at,
                f"a cell longer than {MAX_PROMPT_CHARS} characters, the most a prompt "
                "may have; shorten it",
            ) from None
        raise _fail(path, at, f"not valid CSV ({exc})") from None
    finally:
        csv.field_size_limit(old)
    return fields, rows


def _csv(path: str, text: str) -> list[PromptItem]:
    fields, rows = _csv_rows(path, text)
    names = [f.strip().lower() if isinstance(f, str) else f for f in fields]
    if "prompt" not in names:
        raise _fail(path, "line 1", f"no 'prompt' column (columns: {', '.join(map(str, fields))})")
    p_col = fields[names.index("prompt")]
    o_col = fields[names.index("output_tokens")] if "output_tokens" in names else None
    out = []
    for n, row in enumerate(rows, 2):
        where = f"row {n}"
        value = row.get(p_col)
        if not isinstance(value, str) or not value.strip():
            raise _fail(path, where, "empty prompt")
        cell = row.get(o_col) if o_col else None
        ref = _reference(path, where, cell) if cell not in (None, "") else None
        out.append(PromptItem(len(out), where, text=value, reference_tokens=ref))
    return out
