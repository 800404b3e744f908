"""From a workload to requests: which prompts (``--max-prompts``, ``--shuffle``), how they become
text or token ids (chat templates, the shared prefix), and their input and output lengths.

Every random choice has its own stream, seeded from the sweep's ``--seed`` and its own name
(``random.Random("streambench.<name>.<seed>")``), so adding a feature never changes the prompts
another feature draws for the same seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError
from .files import CHARS_PER_TOKEN, MAX_PROMPT_CHARS, PromptFile, PromptItem
from .spec import DEFAULT_FORCED_OUTPUT, WorkloadSpec

__all__ = [
    "WORDS",
    "Request",
    "build_requests",
    "char_limit",
    "fit_text",
    "resolve_output_len",
    "select_items",
    "stream",
    "synthetic_requests",
]

# Words that are one token each in the common BPE vocabularies (with a leading space).
_WORD_TEXT = (
    "the of and to in is was for that on with as by at from his her are be this which have or "
    "one had not but what all were when we there can an your more if has will each about how up "
    "out them then she many some so these would other into him time two way could people my than "
    "first water been call who its now find long down day did get come made may part over new "
    "sound take only little work know place year live me back give most very after thing our just "
    "name good sentence man think say great where help through much before line right too mean "
    "old any same tell boy follow came want show also around form three small set put end does "
    "another well large must big even such because turn here why ask went men read need land"
)
WORDS = tuple(_WORD_TEXT.split())


def stream(name: str, seed: int) -> random.Random:
    """The random stream of one feature (``"shuffle"``, ``"length-spread"`` ...) for ``seed``."""
    return random.Random(f"streambench.{name}.{seed}")


@dataclass(frozen=True)
class Request:
    """One request of a workload: ``index`` (the prompt's index in the file, or the draw
    number), ``where`` (``"line 3"``), what is sent: ``text`` (a completion prompt), ``messages``
    (chat) or ``input_ids`` (a local ``generate()``), the real ``input_tokens`` (``None`` when
    unknown: an endpoint without ``--tokenizer``), and ``output_tokens``: the forced or reference
    output length, ``None`` for a natural one."""

    index: int
    where: str
    text: str | None = None
    messages: tuple[dict[str, str], ...] | None = None
    input_ids: tuple[int, ...] | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None


def resolve_output_len(spec: WorkloadSpec, file: PromptFile) -> int | str:
    """``--output-len`` for ``file``: as given, else from-data for ShareGPT and
    :data:`DEFAULT_FORCED_OUTPUT` otherwise; from-data on a file without reference lengths is a
    :class:`UsageError`."""
    mode = spec.output_len
    if mode is None:
        mode = "from-data" if file.format == "sharegpt" else DEFAULT_FORCED_OUTPUT
    if mode == "from-data" and not file.has_references:
        raise UsageError(
            f"--output-len from-data: --prompts {file.path} has no reference output lengths "
            "(a ShareGPT gpt turn, or an output_tokens field); use --output-len N or natural"
        )
    return mode


def select_items(file: PromptFile, spec: WorkloadSpec, seed: int) -> list[PromptItem]:
    """The prompts used: all, shuffled with the ``shuffle`` stream when asked, then the first
    ``max_prompts``."""
    items = list(file.items)
    if spec.shuffle:
        stream("shuffle", seed).shuffle(items)
    return items[: spec.max_prompts] if spec.max_prompts else items


def _count(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


def fit_text(tokenizer: Any, n: int, rng: random.Random) -> str:
    """Random common words that encode to exactly ``n`` tokens with ``tokenizer`` (where the
    vocabulary allows), or ``n`` words without one."""
    words = " ".join(rng.choice(WORDS) for _ in range(n))
    if tokenizer is None:
        return words
    for _ in range(8):
        ids = tokenizer(words, add_special_tokens=False, verbose=False)["input_ids"]
        if len(ids) == n:
            break
        if len(ids) > n:
            words = tokenizer.decode(ids[:n])
        else:
            words += " " + " ".join(rng.choice(WORDS) for _ in range(n - len(ids)))
    return words


def _prefix_ids(tokenizer: Any, n: int, seed: int, vocab: int) -> list[int]:
    rng = stream("shared-prefix", seed)
    if tokenizer is None:
        return [rng.randrange(min(10, vocab - 1), vocab) for _ in range(n)]
    ids: list[int] = []
    while len(ids) < n:
        more = " ".join(rng.choice(WORDS) for _ in range(n))
        ids += tokenizer(more, add_special_tokens=False, verbose=False)["input_ids"]
    return ids[:n]


def _template(tokenizer: Any, messages: Any, file: str, where: str) -> str:
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise UsageError(
            f"--prompts {file} ({where}): chat messages need a tokenizer with a chat template "
            "(the model's, or --tokenizer DIR; endpoint: or --chat to send them as they are)"
        )
    try:
        text = tokenizer.apply_chat_template(
            list(messages), add_generation_prompt=True, tokenize=False
        )
    except Exception as exc:  # noqa: BLE001 - a chat template is the model's own Jinja code:
        # what it raises (TemplateError "roles must alternate", TypeError ...) refuses the messages
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise UsageError(
            f"--prompts {file} ({where}): the chat template refused these messages ({reason}); "
            "fix them, or --skip-invalid skips such prompts"
        ) from None
    return str(text)


def char_limit(context: int | None) -> int:
    """The most characters a prompt may have for a model of ``context`` tokens (``None``:
    unknown): :data:`~streambench.workloads.files.CHARS_PER_TOKEN` per token, at most
    :data:`~streambench.workloads.files.MAX_PROMPT_CHARS`. Longer text cannot fit whatever the
    tokenizer, and is refused before it is tokenized (a 44 MB line once took 67 s and 8.8 GB)."""
    if context is None or context <= 0:
        return MAX_PROMPT_CHARS
    return min(context * CHARS_PER_TOKEN, MAX_PROMPT_CHARS)


def _check_chars(item: PromptItem, limit: int, path: str) -> None:
    if item.messages is not None:
        n = sum(len(m["content"]) for m in item.messages)
    else:
        n = len(item.text or "")
    if n > limit:
        raise UsageError(
            f"--prompts {path} ({item.where}): {n} characters, more than the {limit} that can fit "
            f"the model's context ({CHARS_PER_TOKEN} characters per token at most); shorten it, "
            "or --skip-invalid skips such prompts"
        )


class _Builder:
    """Turns selected prompt items into :class:`Request` objects (see :func:`build_requests`)."""

    def __init__(
        self,
        spec: WorkloadSpec,
        file: PromptFile,
        tokenizer: Any,
        seed: int,
        vocab: int,
        chars: int = MAX_PROMPT_CHARS,
    ) -> None:
        self.spec, self.file, self.tok, self.seed = spec, file, tokenizer, seed
        self.chars = chars
        self.output = resolve_output_len(spec, file)
        self.prefix_ids: list[int] = []
        self.prefix_text = ""
        if spec.shared_prefix:
            if tokenizer is not None:
                self.prefix_ids = _prefix_ids(tokenizer, spec.shared_prefix, seed, vocab)
                self.prefix_text = tokenizer.decode(self.prefix_ids)
            else:
                self.prefix_text = fit_text(None, spec.shared_prefix, stream("shared-prefix", seed))
                self.prefix_text += " "

    def output_tokens(self, item: PromptItem) -> int | None:
        if isinstance(self.output, int):
            return self.output
        if self.output == "natural":
            return None
        if item.reference_tokens is not None:
            return item.reference_tokens
        if item.reference_text is None:
            raise UsageError(
                f"--prompts {self.file.path} ({item.where}): no reference output (a gpt turn or "
                "output_tokens) for --output-len from-data; give --output-len N, or --skip-invalid"
            )
        if self.tok is None:
            raise UsageError(
                "--output-len from-data on a ShareGPT file counts the reference "
                "outputs in tokens: give --tokenizer DIR"
            )
        if len(item.reference_text) > self.chars:
            raise UsageError(
                f"--prompts {self.file.path} ({item.where}): the reference output has "
                f"{len(item.reference_text)} characters, more than the {self.chars} that can fit "
                "the model's context; give --output-len N, or --skip-invalid"
            )
        return max(1, _count(self.tok, item.reference_text))

    def for_run(self, item: PromptItem) -> Request:
        """Token ids for a local ``generate()``: the tokenizer's leading special tokens, the
        shared prefix, then the prompt (through the chat template when asked)."""
        tok, where = self.tok, item.where
        if tok is None:
            raise UsageError(
                f"--prompts needs the model's tokenizer, and {where!r} of "
                f"{self.file.path} has none to read it with"
            )
        messages = item.messages
        if messages is None and self.spec.apply_chat_template:
            messages = ({"role": "user", "content": item.text or ""},)
        if messages is not None:
            lead: list[int] = []
            text = _template(tok, messages, self.file.path, where)
            body = list(tok(text, add_special_tokens=False, verbose=False)["input_ids"])
        else:
            lead = list(tok("")["input_ids"])
            full = list(tok(item.text, verbose=False)["input_ids"])
            body = full[len(lead) :] if full[: len(lead)] == lead else full
        ids = tuple(lead + self.prefix_ids + body)
        return Request(
            item.index, where, item.text, messages, ids, len(ids), self.output_tokens(item)
        )

    def for_endpoint(self, item: PromptItem, chat: bool) -> Request:
        """Text (``/completions``) or messages (``--chat``, sent as they are) for a server."""
        tok, out = self.tok, self.output_tokens(item)
        if chat:
            messages = item.messages or ({"role": "user", "content": item.text or ""},)
            if self.prefix_text:
                first = dict(messages[0], content=self.prefix_text + messages[0]["content"])
                messages = (first, *messages[1:])
            n = None
            if tok is not None and getattr(tok, "chat_template", None):
                n = _count(tok, _template(tok, messages, self.file.path, item.where))
            return Request(item.index, item.where, None, tuple(messages), None, n, out)
        text = item.text
        if item.messages is not None:
            text = _template(tok, item.messages, self.file.path, item.where)
        text = self.prefix_text + (text or "")
        n = _count(tok, text) if tok is not None else None
        return Request(item.index, item.where, text, None, None, n, out)


def build_requests(
    spec: WorkloadSpec,
    file: PromptFile,
    *,
    tokenizer: Any,
    seed: int = 0,
    for_run: bool = True,
    chat: bool = False,
    context: int | None = None,
    vocab: int = 32000,
) -> tuple[list[Request], list[str]]:
    """``(requests, skipped)``: the selected prompts of ``file`` as requests, in order. A prompt
    that does not fit ``context`` (input + output tokens; natural outputs count
    ``max_output_len``) is a :class:`UsageError` naming the file and line, or with
    ``skip_invalid`` skipped (``skipped`` says where and why)."""
    limit = char_limit(context)
    builder = _Builder(spec, file, tokenizer, seed, vocab, limit)
    out: list[Request] = []
    skipped: list[str] = []
    for item in select_items(file, spec, seed):
        try:
            _check_chars(item, limit, file.path)  # before any tokenizing
            req = builder.for_run(item) if for_run else builder.for_endpoint(item, chat)
            _check_context(req, spec, context, file.path)
        except UsageError as exc:
            if not spec.skip_invalid or "(" + item.where + ")" not in str(exc):
                raise
            skipped.append(f"{item.where}: {str(exc).split('): ', 1)[-1]}")
            continue
        out.append(req)
    if not out:
        raise UsageError(f"--prompts {file.path}: no usable prompt ({len(skipped)} skipped)")
    return out, skipped


def _check_context(req: Request, spec: WorkloadSpec, context: int | None, path: str) -> None:
    if context is None or req.input_tokens is None:
        return
    out = req.output_tokens if req.output_tokens is not None else spec.max_output_len
    if req.input_tokens + out > context:
        raise UsageError(
            f"--prompts {path} ({req.where}): {req.input_tokens} prompt tokens + {out} output "
            f"tokens exceed the model's context of {context} tokens (--skip-invalid skips such "
            "prompts)"
        )


def synthetic_requests(
    spec: WorkloadSpec,
    n_in: int,
    n_out: int,
    count: int,
    *,
    tokenizer: Any,
    seed: int = 0,
    for_run: bool = True,
    vocab: int = 32000,
) -> list[Request]:
    """``count`` synthetic requests around ``n_in``-``n_out``: lengths drawn uniformly within
    ±``length_spread`` (the ``length-spread`` stream; fixed without a spread), the shared prefix
    (``shared_prefix`` tokens, the same for every request) counted in the input, a different body
    of random common words (the ``synthetic-body`` stream) after it."""
    lengths, bodies = stream("length-spread", seed), stream("synthetic-body", seed)
    r = spec.length_spread
    prefix = spec.shared_prefix
    lead = list(tokenizer("")["input_ids"]) if (tokenizer is not None and for_run) else []
    prefix_ids = _prefix_ids(tokenizer, prefix, seed, vocab) if prefix and for_run else []
    prefix_text = ""
    if prefix and not for_run:
        prefix_text = fit_text(tokenizer, prefix, stream("shared-prefix", seed)) + " "
    low_in = len(lead) + prefix + 1
    out: list[Request] = []
    for i in range(count):
        a = max(low_in, lengths.randint(max(1, round(n_in * (1 - r))), round(n_in * (1 + r))))
        b = lengths.randint(max(1, round(n_out * (1 - r))), max(1, round(n_out * (1 + r))))
        body_n = a - len(lead) - prefix
        if for_run:
            if tokenizer is None:
                body = [bodies.randrange(min(10, vocab - 1), vocab) for _ in range(body_n)]
            else:
                words = fit_text(None, body_n, bodies)
                body = list(tokenizer(words, add_special_tokens=False, verbose=False)["input_ids"])
                body = body[:body_n]
            ids = tuple(lead + prefix_ids + body)
            out.append(Request(i, f"draw {i}", None, None, ids, len(ids), b))
        else:
            text = prefix_text + fit_text(tokenizer, body_n, bodies)
            n = _count(tokenizer, text) if tokenizer is not None else None
            out.append(Request(i, f"draw {i}", text, None, None, n, b))
    return out
