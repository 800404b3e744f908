"""Multi-turn sessions (``--prompts FILE --multi-turn``): each conversation of the file is played
as one session, turn after turn, and turn ``k`` is sent with the whole history before it: the
file's user turns and the server's *actual* replies (not the file's), so a server with prefix
caching reuses the earlier turns' KV cache and the TTFT of later turns shows it.

- :func:`read_conversations`: ShareGPT (``.json``: ``{"conversations": [{"from", "value"}]}``)
  or JSON Lines (``.jsonl``: ``{"messages": [{"role", "content"}]}`` with several user turns),
  typed and bounded (one-line errors naming the file and the item or line: exit 2).
- :func:`with_sessions`: the spec of a multi-turn run (its warm-up sends first turns).
- :func:`session_sender`: the measured phase's ``send``: one call plays one whole session, so
  ``--concurrency`` is the number of sessions in flight and ``--request-rate`` their arrivals.
- :func:`sessions_summary`, :func:`turn_table`: TTFT by turn (``aggregates.sessions``).

A failed turn ends its session (there is no reply to carry on with): its later turns are not
sent and are counted in ``turns_not_sent``. The history kept per session is bounded
(:data:`MAX_HISTORY_CHARS`); a session whose history grows past it stops there too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ..errors import UsageError
from ..reading import read_bounded
from ..stats import describe
from ..workloads.build import Request, stream
from ..workloads.files import MAX_FILE_BYTES, MAX_PROMPT_CHARS, lines_of
from ..workloads.spec import DEFAULT_FORCED_OUTPUT, MAX_TOKENS

if TYPE_CHECKING:
    from .records import RequestRecord
    from .spec import EndpointSpec

__all__ = [
    "Conversation",
    "Conversations",
    "read_conversations",
    "session_sender",
    "sessions_summary",
    "turn_table",
    "with_sessions",
]

#: the most conversations read from a file, and user turns in one conversation
MAX_CONVERSATIONS = 1_000_000
MAX_TURNS = 1_000
#: the most characters of history (every message's content) a session keeps; the server's
#: replies are each bounded by the client already (characters per asked token)
MAX_HISTORY_CHARS = MAX_PROMPT_CHARS
#: turns shown one per row in the table; later turns share one row
TABLE_TURNS = 16
_USER = ("human", "user")
_ASSISTANT = ("gpt", "assistant", "chatgpt", "bard", "bing")
_SYSTEM = ("system",)
#: the roles a JSON Lines message may have (``tool`` and ``developer`` messages are not sent)
_ROLES = ("system", "user", "assistant", "tool", "developer")


@dataclass(frozen=True)
class Turn:
    """One user turn: its text, the file's reply to it (``reference``: its length is the
    from-data output length; never sent), and the output length asked (``None``: natural)."""

    user: str
    reference: str | None = None
    output_tokens: int | None = None


@dataclass(frozen=True)
class Conversation:
    """One conversation: ``index`` in the file, ``where`` (``"item 3"``, ``"line 4"``), the
    system messages sent before the first turn, and its user turns."""

    index: int
    where: str
    system: tuple[str, ...]
    turns: tuple[Turn, ...]


@dataclass(frozen=True)
class Conversations:
    """The conversations of a multi-turn run (selected: ``--max-prompts``, ``--shuffle``), read
    from ``path`` (``format``: ``sharegpt`` or ``jsonl``; ``sha256`` of its bytes).
    ``max_output_len``: the cap of natural turns."""

    path: str
    format: str
    sha256: str
    items: tuple[Conversation, ...]
    max_output_len: int = 512
    #: the turns before each conversation (running sums), for :meth:`first_index`
    starts: tuple[int, ...] = ()

    @property
    def total_turns(self) -> int:
        return sum(len(c.turns) for c in self.items)

    @property
    def max_turns(self) -> int:
        return max(len(c.turns) for c in self.items)

    def first_index(self, session: int) -> int:
        """The index in its phase of the first turn of ``session`` (session ``i`` plays
        conversation ``i`` modulo their number): turns of all sessions get different indices."""
        n = len(self.items)
        starts = self.starts or _running_sums(self.items)
        return (session // n) * self.total_turns + starts[session % n]

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "sha256": self.sha256,
            "conversations": len(self.items),
            "turns": self.total_turns,
            "max_turns": self.max_turns,
        }

    def identity(self) -> dict[str, Any]:
        return {"multi_turn": True}


def _running_sums(items: tuple[Conversation, ...]) -> tuple[int, ...]:
    out, total = [], 0
    for c in items:
        out.append(total)
        total += len(c.turns)
    return tuple(out)


def _fail(path: str, where: str, what: str) -> UsageError:
    at = f" ({where})" if where else ""
    return UsageError(f"--prompts {path}{at}: {what}")


def _text(path: str, where: str, value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise _fail(path, where, f"{what} is not a text")
    if len(value) > MAX_PROMPT_CHARS:
        raise _fail(path, where, f"{what} longer than {MAX_PROMPT_CHARS} characters")
    return value


def _conversation(path: str, where: str, pairs: list[tuple[str, Any]], index: int) -> Conversation:
    """A conversation from ``(role, text)`` pairs: leading system messages, then user turns,
    each with the assistant reply that follows it (if any) as its reference."""
    system: list[str] = []
    turns: list[Turn] = []
    for n, (role, value) in enumerate(pairs):
        text = _text(path, where, value, f"turn {n}")
        if role in _SYSTEM and not turns:
            system.append(text)
        elif role in _USER:
            if not text.strip():
                raise _fail(path, where, f"turn {n} is an empty user turn")
            turns.append(Turn(text))
        elif role in _ASSISTANT and turns and turns[-1].reference is None:
            turns[-1] = Turn(turns[-1].user, text)
        # an assistant turn before any user turn, a second reply, a later system message:
        # not part of what is sent (the replies sent are the server's own)
    if not turns:
        raise _fail(path, where, "no user turn with text")
    if len(turns) > MAX_TURNS:
        raise _fail(path, where, f"{len(turns)} user turns; at most {MAX_TURNS}")
    return Conversation(index, where, tuple(system), tuple(turns))


def _sharegpt(path: str, text: str) -> list[Conversation]:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise _fail(path, "", "not valid JSON") from None
    if not isinstance(data, list):
        raise _fail(path, "", 'not the ShareGPT layout: a list of {"conversations": [...]}')
    if len(data) > MAX_CONVERSATIONS:
        raise _fail(path, "", f"{len(data)} conversations; at most {MAX_CONVERSATIONS}")
    out = []
    for i, item in enumerate(data):
        where = f"item {i}"
        turns = item.get("conversations") if isinstance(item, dict) else None
        if not isinstance(turns, list):
            raise _fail(path, where, 'not an object with a "conversations" list')
        pairs = []
        for n, turn in enumerate(turns):
            if not isinstance(turn, dict) or not isinstance(turn.get("from"), str):
                raise _fail(path, where, f'turn {n} is not an object with "from" and "value"')
            pairs.append((turn["from"].lower(), turn.get("value")))
        out.append(_conversation(path, where, pairs, len(out)))
    return out


def _jsonl(path: str, text: str) -> list[Conversation]:
    out = []
    for n, line in enumerate(lines_of(text), 1):
        if not line.strip():
            continue
        where = f"line {n}"
        if len(out) >= MAX_CONVERSATIONS:
            raise _fail(path, where, f"more than {MAX_CONVERSATIONS} conversations")
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):
            raise _fail(path, where, "not valid JSON") from None
        msgs = obj.get("messages") if isinstance(obj, dict) else None
        if not isinstance(msgs, list) or not msgs:
            raise _fail(path, where, 'needs "messages": a list of {"role", "content"}')
        pairs = []
        for i, msg in enumerate(msgs):
            if not isinstance(msg, dict) or msg.get("role") not in _ROLES:
                raise _fail(
                    path, where, f"messages[{i}] is not an object with a role ({', '.join(_ROLES)})"
                )
            pairs.append((msg["role"], msg.get("content")))
        out.append(_conversation(path, where, pairs, len(out)))
    return out


def read_conversations(path: str) -> tuple[str, str, list[Conversation]]:
    """``(format, sha256, conversations)`` of a ``.json`` (ShareGPT) or ``.jsonl`` file;
    :class:`UsageError` (one line naming the file and the item or line) otherwise."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".json", ".jsonl"):
        raise _fail(path, "", "--multi-turn reads .json (ShareGPT) or .jsonl (messages) files")
    raw = read_bounded(path, "prompts", "--prompts", MAX_FILE_BYTES)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise _fail(path, f"line {line}", "not UTF-8 text") from None
    items = _sharegpt(path, text) if ext == ".json" else _jsonl(path, text)
    if not items:
        raise _fail(path, "", "no conversations in it (empty file)")
    return ("sharegpt" if ext == ".json" else "jsonl"), hashlib.sha256(raw).hexdigest(), items


def _output_mode(w: Any, fmt: str) -> int | str:
    mode = w.output_len
    return ("from-data" if fmt == "sharegpt" else DEFAULT_FORCED_OUTPUT) if mode is None else mode


def _lengths(c: Conversation, mode: int | str, tokenizer: Any) -> Conversation:
    """``c`` with each turn's asked output: forced ``mode``, natural (``None``), or the token
    count of the file's reply (from-data; natural for a turn without one)."""
    turns = []
    for t in c.turns:
        if isinstance(mode, int):
            out: int | None = mode
        elif mode == "from-data" and t.reference:
            ids = tokenizer(t.reference, add_special_tokens=False, verbose=False)["input_ids"]
            out = min(max(len(ids), 1), MAX_TOKENS)
        else:
            out = None
        turns.append(Turn(t.user, None, out))  # the reference text is not kept
    return dataclasses.replace(c, turns=tuple(turns))


def with_sessions(spec: EndpointSpec, requests_given: int | None, tokenizer: Any) -> EndpointSpec:
    """``spec`` with its conversations read and selected, every turn's output length set, the
    warm-up's requests (first turns) built, and ``requests`` = sessions (every selected
    conversation once unless ``--requests`` says otherwise)."""
    from .spec import EndpointError

    w = spec.workload
    if not spec.chat:
        raise EndpointError("--multi-turn sends the history as chat messages: add --chat")
    for name in ("shared_prefix", "apply_chat_template", "skip_invalid", "length_spread"):
        if getattr(w, name):
            flag = "--" + name.replace("_", "-")
            raise EndpointError(f"{flag} does not combine with --multi-turn")
    path = str(w.prompts)
    fmt, sha, items = read_conversations(path)
    if w.shuffle:
        stream("shuffle", spec.seed).shuffle(items)
    items = items[: w.max_prompts] if w.max_prompts else items
    mode = _output_mode(w, fmt)
    if mode == "from-data" and tokenizer is None:
        raise EndpointError(
            f"--output-len from-data on {os.path.basename(path)} counts the file's replies in "
            "tokens: give --tokenizer DIR, or --output-len N"
        )
    items = [_lengths(c, mode, tokenizer) for c in items]
    conv = Conversations(
        os.path.abspath(path), fmt, sha, tuple(items), w.max_output_len, _running_sums(tuple(items))
    )
    w = dataclasses.replace(w, prompts=conv.path, prompts_sha256=sha, output_len=mode)
    w.counts = {spec.model: len(items), "skipped": 0}
    firsts = tuple(_first_turn(c) for c in items)
    cap = max(t.output_tokens or w.max_output_len for c in items for t in c.turns)
    return dataclasses.replace(
        spec,
        workload=w,
        multi_turn=conv,
        workload_requests=firsts,
        requests=len(items) if requests_given is None else requests_given,
        output_tokens=cap,
    ).validate()


def _first_turn(c: Conversation) -> Request:
    msgs = [{"role": "system", "content": s} for s in c.system]
    msgs.append({"role": "user", "content": c.turns[0].user})
    return Request(c.index, c.where, messages=tuple(msgs), output_tokens=c.turns[0].output_tokens)


@dataclass(frozen=True)
class SessionOutcome:
    """What the load loop counts of one session: ``ok`` when every turn succeeded."""

    ok: bool
    sent: int


def session_sender(bench: Any, session: Any) -> Callable[[int, int, bool, float], Any]:
    """``send(i, prompt_i, warmup, start)`` of the measured phase of ``bench``
    (:class:`~streambench.endpoint.runner.EndpointBenchmark`): plays session ``i`` turn by turn,
    each turn's messages holding the history with the server's replies, and records every turn
    with its ``session`` and ``turn``."""
    spec = bench.spec
    conv: Conversations = spec.multi_turn

    async def send(i: int, prompt_i: int, warm: bool, start: float) -> SessionOutcome:
        c = conv.items[i % len(conv.items)]
        first = conv.first_index(i)
        history = [{"role": "system", "content": s} for s in c.system]
        chars = sum(len(s) for s in c.system)
        for k, turn in enumerate(c.turns, 1):
            history.append({"role": "user", "content": turn.user})
            chars += len(turn.user)
            natural = turn.output_tokens is None
            asked = conv.max_output_len if natural else int(turn.output_tokens or 0)
            body = bench.backend.body(spec, None, asked, bench.level, list(history), natural)
            req = Request(c.index, c.where, output_tokens=turn.output_tokens)

            def mark(rec: RequestRecord, k: int = k) -> RequestRecord:
                return dataclasses.replace(rec, session=i, turn=k)

            rec = await bench._post(session, first + k - 1, body, warm, start, None, req, mark)
            if not rec.ok:
                return SessionOutcome(False, k)
            reply = "".join(rec.texts)
            chars += len(reply)
            if chars > MAX_HISTORY_CHARS:  # the next turn could not be sent
                return SessionOutcome(k == len(c.turns), k)
            history.append({"role": "assistant", "content": reply})
        return SessionOutcome(True, len(c.turns))

    return send


def sessions_summary(spec: EndpointSpec, records: Any) -> dict[str, Any]:
    """``aggregates.sessions``: sessions played, turns sent and not sent, and per turn the
    requests, failures and TTFT statistics (seconds; one value per successful request).
    ``prefix_cache_hit_rate``: the server's prefix-cache hit rate over the point, set from
    ``--server-metrics`` when it is scraped (:func:`set_prefix_cache_hit_rate`), else ``None``."""
    from ..results.trial_intervals import add_interval

    conv: Conversations = spec.multi_turn
    measured = [r for r in records if not r.warmup and r.session is not None]
    sessions = sorted({r.session for r in measured})
    expected = sum(len(conv.items[s % len(conv.items)].turns) for s in sessions)
    by_turn: dict[int, list[Any]] = {}
    for r in measured:
        by_turn.setdefault(min(r.turn, TABLE_TURNS + 1), []).append(r)
    rows = []
    for turn in sorted(by_turn):
        recs = by_turn[turn]
        values = [r.ttft_s for r in recs if r.ok and r.ttft_s is not None]
        st = describe(values)
        ttft = None if st is None else st.to_dict()
        add_interval(ttft, values)  # the median's 95 % interval over requests
        ptoks = describe(r.prompt_tokens for r in recs if r.ok and r.prompt_tokens is not None)
        rows.append(
            {
                "turn": turn if turn <= TABLE_TURNS else f"{TABLE_TURNS + 1}+",
                "requests": len(recs),
                "failed": sum(1 for r in recs if not r.ok),
                "ttft_s": ttft,
                "prompt_tokens_median": None if ptoks is None else ptoks.median,
            }
        )
    return {
        "sessions": len(sessions),
        "turns_sent": len(measured),
        "turns_not_sent": max(0, expected - len(measured)),
        "ttft_by_turn": rows,
        "prefix_cache_hit_rate": None,
    }


def set_prefix_cache_hit_rate(entry: dict[str, Any], rate: float | None) -> None:
    """The hook for ``--server-metrics``: the server's prefix-cache hit rate (a fraction from
    its counters over the point) written beside the TTFT by turn of a multi-turn entry."""
    sessions = (entry.get("aggregates") or {}).get("sessions")
    if isinstance(sessions, dict):
        sessions["prefix_cache_hit_rate"] = rate


def turn_table(sessions: dict[str, Any]) -> list[Any]:
    """The console's part for a multi-turn entry: a line about the sessions, the TTFT by turn
    (ms: median, p90, mean, ±95 %, n) and the prefix-cache hit rate when scraped."""
    from rich.table import Table
    from rich.text import Text

    from ..results.percentiles import Statistics
    from ..results.trial_intervals import half_width

    def _ms(x: float | None) -> str:
        return "-" if x is None else f"{x * 1e3:.2f}"

    def _pm_ms(st: dict[str, Any]) -> str:
        h = half_width(Statistics.from_dict(st))
        return "-" if h is None else "±" + _ms(h)

    line = f"{sessions.get('sessions')} sessions · {sessions.get('turns_sent')} turns sent" + (
        f" · {sessions['turns_not_sent']} not sent (a failed turn ends its session)"
        if sessions.get("turns_not_sent")
        else ""
    )
    hit = sessions.get("prefix_cache_hit_rate")
    if isinstance(hit, (int, float)):
        line += f" · prefix-cache hit rate {hit:.1%} (server metrics)"
    table = Table(title="TTFT by turn (ms)", min_width=60)
    for name in ("turn", "median", "p90", "mean", "±95%", "n", "failed", "prompt tokens"):
        table.add_column(name, justify="right")
    for row in sessions.get("ttft_by_turn") or []:
        st = row.get("ttft_s") or {}
        ptok = row.get("prompt_tokens_median")
        table.add_row(
            str(row.get("turn")),
            *(_ms(st.get(k)) for k in ("median", "p90", "mean")),
            _pm_ms(st) if st else "-",
            str(st.get("n", 0)),
            str(row.get("failed", 0)),
            "-" if ptok is None else f"{ptok:g}",
        )
    return [Text(line, style="dim"), table]
