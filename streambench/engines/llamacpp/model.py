"""``--engine llama.cpp``: a GGUF model behind a ``generate()`` that takes the timing streamer.

:class:`LlamaCppModel` drives llama.cpp through llama-cpp-python's C API (``llama_decode`` on
batches it fills itself), so it decodes exactly the token ids streambench hands it and batches
several sequences in one ``llama_decode`` (one sequence id each, one KV cache shared by all).
Its ``generate()`` follows transformers' convention as
:class:`~streambench.engines.genai.GenAIModel` does: ``streamer.on_prompt(batch,
prompt_tokens)`` just before the prompt's first ``llama_decode``, ``streamer.on_step(1)`` once
per step as soon as every sequence's next token is chosen (before the next ``llama_decode``:
the last token needs none, as in transformers), ``streamer.end()`` after the last; the same
timing core as transformers, no timing code here.

Tokens are chosen here, from llama.cpp's logits: the largest (greedy, the default) or drawn
with ``temperature``/``top_k``/``top_p`` from torch's generator (which ``--seed`` seeds). EOS
never ends a measured run early: until ``min_new_tokens`` tokens the EOS logits are masked
(streambench asks ``min_new_tokens = max_new_tokens``); after that a sequence that chose EOS
gets the pad token and the call stops when all have.

llama.cpp's own counters of each call (``llama_perf_context``, milliseconds from its clock) are
kept beside ours, as a cross-check (:attr:`LlamaCppModel.perf`): ``prompt_eval_ms`` and
``prompt_eval_tokens`` (decodes of more than one token: the prompt, and with batch > 1 every
step too), ``eval_ms`` and ``eval_runs`` (single-token decodes: the steps of batch 1; llama.cpp
reports at least 1), and ``generate_ms`` (ours: the call's wall time).

    >>> model = LlamaCppModel("tiny.gguf")                                # doctest: +SKIP
    >>> model.generate(input_ids, max_new_tokens=8, min_new_tokens=8,
    ...                streamer=TimingStreamer("cpu"))                    # doctest: +SKIP
"""

from __future__ import annotations

import ctypes
import sys
import time
from pathlib import Path
from typing import Any

from ...errors import UsageError

__all__ = ["MAX_BATCH", "LlamaCppModel", "LlamaCppRefused"]

#: the most sequences one llama.cpp context decodes together (``LLAMA_MAX_SEQ``)
MAX_BATCH = 256
#: generate() keywords LlamaCppModel takes; others are transformers-only
_TAKEN = {
    "attention_mask",
    "max_new_tokens",
    "min_new_tokens",
    "do_sample",
    "num_beams",
    "pad_token_id",
    "eos_token_id",
    "temperature",
    "top_p",
    "top_k",
    "streamer",
    "use_cache",
    "disable_compile",  # transformers' own compile switch: nothing to disable here
}
#: the most prompt tokens one llama_decode takes (llama.cpp's default logical batch)
_MAX_CHUNK = 2048
#: the positions scored per ``llama_decode`` by ``--quality`` (its logits: this many rows of
#: the vocabulary, 64 MiB at 32k tokens)
_SCORE_CHUNK = 512


class LlamaCppRefused(ValueError):
    """A request llama.cpp cannot run here (beam search, a transformers-only keyword, a batch
    over :data:`MAX_BATCH`)."""


class LlamaCppModel:
    """A GGUF file loaded by llama.cpp on the CPU, with transformers' ``generate()`` calling
    convention for what streambench passes.

    ``n_threads``: llama.cpp's threads for the prompt and the steps (default: torch's thread
    count, ``torch.get_num_threads()``). ``config``/``generation_config``: transformers' of the
    source directory; for a ``.gguf`` given as it is, built from the file (vocabulary size,
    training context, BOS/EOS/PAD ids). Attributes: ``n_vocab``, ``n_threads``, ``perf`` (one
    dict of llama.cpp's counters per call, see the module doc).
    """

    def __init__(
        self,
        path: str | Path,
        n_threads: int | None = None,
        config: Any = None,
        generation_config: Any = None,
    ) -> None:
        import llama_cpp
        import torch

        quiet_llama_log(llama_cpp)
        llama_cpp.llama_backend_init()
        self._ll = llama_cpp
        self.path = Path(path)
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = 0  # a CPU build; a GPU build would otherwise offload
        self._model = llama_cpp.llama_model_load_from_file(str(self.path).encode(), params)
        if not self._model:
            raise UsageError(
                f"model {self.path}: llama.cpp cannot load this GGUF file (its reason is above); "
                "pass a transformers directory to convert instead"
            )
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self._vocab))
        self.n_threads = int(n_threads or torch.get_num_threads())
        self.config = config if config is not None else self._config_from_file()
        if generation_config is None:
            from transformers import GenerationConfig

            generation_config = GenerationConfig.from_model_config(self.config)
        self.generation_config = generation_config
        self.perf: list[dict[str, float]] = []
        self._ctx: Any = None
        self._batch: Any = None
        self._capacity = (0, 0, 0)  # (sequences, KV cells, tokens per llama_decode)

    # -- set-up ---------------------------------------------------------------------------------
    def _config_from_file(self) -> Any:
        """A transformers config for a ``.gguf`` given as it is (what streambench reads)."""
        from transformers import PretrainedConfig

        ll, vocab = self._ll, self._vocab

        def token(fn: Any) -> int | None:
            value = int(fn(vocab))
            return value if 0 <= value < self.n_vocab else None

        return PretrainedConfig(
            vocab_size=self.n_vocab,
            max_position_embeddings=int(ll.llama_model_n_ctx_train(self._model)),
            bos_token_id=token(ll.llama_vocab_bos),
            eos_token_id=token(ll.llama_vocab_eos),
            pad_token_id=token(ll.llama_vocab_pad),
        )

    def describe(self) -> dict[str, Any]:
        """What llama.cpp says of the model: ``desc`` (architecture, size, type), ``size_bytes``,
        ``parameters``, ``system_info`` (the CPU features its build uses)."""
        ll = self._ll
        buf = ctypes.create_string_buffer(256)
        ll.llama_model_desc(self._model, buf, len(buf))
        return {
            "desc": buf.value.decode(errors="replace"),
            "size_bytes": int(ll.llama_model_size(self._model)),
            "parameters": int(ll.llama_model_n_params(self._model)),
            "system_info": ll.llama_print_system_info().decode(errors="replace").strip(),
        }

    def _context(self, sequences: int, cells: int, chunk: int) -> Any:
        """A context holding ``sequences`` sequences of ``cells`` KV cells in all, decoding
        ``chunk`` tokens per call: the current one when it is large enough, else a new one (a
        configuration's first, warm-up, call makes it; its measured calls reuse it)."""
        have = self._capacity
        if self._ctx is not None and all(h >= w for h, w in zip(have, (sequences, cells, chunk))):
            return self._ctx
        self._free_context()
        ll = self._ll
        cp = ll.llama_context_default_params()
        cp.n_ctx = max(cells, have[1])
        cp.n_batch = cp.n_ubatch = max(chunk, have[2])
        cp.n_seq_max = max(sequences, have[0])
        cp.n_threads = cp.n_threads_batch = self.n_threads
        cp.no_perf = False
        if hasattr(cp, "kv_unified"):
            cp.kv_unified = True  # one cache for all sequences: n_ctx cells in all
        self._ctx = ll.llama_init_from_model(self._model, cp)
        if not self._ctx:
            raise MemoryError(f"llama.cpp could not make a context of {cp.n_ctx} tokens")
        self._batch = ll.llama_batch_init(cp.n_batch, 0, 1)
        self._capacity = (cp.n_seq_max, cp.n_ctx, cp.n_batch)
        return self._ctx

    def _free_context(self) -> None:
        if self._batch is not None:
            self._ll.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx is not None:
            self._ll.llama_free(self._ctx)
            self._ctx = None
        self._capacity = (0, 0, 0)

    def close(self) -> None:
        """Free llama.cpp's context and model (also done when the object is collected)."""
        self._free_context()
        if getattr(self, "_model", None):
            self._ll.llama_model_free(self._model)
            self._model = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown: nothing left to free
            pass

    # -- decoding -------------------------------------------------------------------------------
    def _decode(self, entries: list[tuple[int, int, int, bool]]) -> list[Any]:
        """``llama_decode`` of ``(token, position, sequence, wants_logits)`` entries, in chunks
        of the context's batch; returns a copy of the logits of each entry that wants them."""
        import numpy as np

        ll, batch, ctx = self._ll, self._batch, self._ctx
        size = self._capacity[2]
        out = []
        for start in range(0, len(entries), size):
            chunk = entries[start : start + size]
            for i, (token, pos, seq, logits) in enumerate(chunk):
                batch.token[i] = token
                batch.pos[i] = pos
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = seq
                batch.logits[i] = logits
            batch.n_tokens = len(chunk)
            failed = ll.llama_decode(ctx, batch)
            if failed:
                raise RuntimeError(f"llama_decode failed (code {failed})")
            for i, entry in enumerate(chunk):
                if entry[3]:  # copied now: the next llama_decode overwrites them
                    view = ll.llama_get_logits_ith(ctx, i)
                    out.append(np.ctypeslib.as_array(view, shape=(self.n_vocab,)).copy())
        return out

    def _clear(self) -> None:
        """An empty KV cache and zeroed counters: every call starts from the prompt."""
        ll = self._ll
        if hasattr(ll, "llama_memory_clear"):
            ll.llama_memory_clear(ll.llama_get_memory(self._ctx), True)
        else:  # llama.cpp before its llama_memory API
            ll.llama_kv_self_clear(self._ctx)
        ll.llama_perf_context_reset(self._ctx)

    def logits(self, token_ids: list[int]) -> Any:
        """llama.cpp's logits after each of ``token_ids`` (one sequence, from an empty cache): a
        ``[len, n_vocab]`` float32 array, to check a conversion against transformers."""
        import numpy as np

        n = len(token_ids)
        self._context(1, n, n)
        self._clear()
        return np.stack(self._decode([(t, i, 0, True) for i, t in enumerate(token_ids)]))

    def forced_scores(self, token_ids: list[int]) -> tuple[list[float], list[int]]:
        """``--quality``: ``token_ids`` teacher-forced (one sequence, from an empty cache): each
        later token's negative log-likelihood (nats) and the greedy token before it
        (:func:`~streambench.engines.scoring.next_token_scores` of llama.cpp's logits).

        In a context of its own, freed before it returns: the timed context keeps its size
        (its KV cells and batch are what the trials measured, in time and memory), and only
        this one asks llama.cpp for every position's logits, :data:`_SCORE_CHUNK` rows at a
        time, scored as they come (a text's logits are never held at once)."""
        from ..scoring import next_token_scores

        ll, n = self._ll, len(token_ids)
        chunk = min(n, _SCORE_CHUNK)
        cp = ll.llama_context_default_params()
        cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_seq_max = n, chunk, chunk, 1
        cp.n_threads = cp.n_threads_batch = self.n_threads
        ctx = ll.llama_init_from_model(self._model, cp)
        if not ctx:
            raise MemoryError(f"llama.cpp could not make a context of {n} tokens to score")
        batch = ll.llama_batch_init(chunk, 0, 1)
        nll: list[float] = []
        greedy: list[int] = []
        try:
            for start in range(0, n - 1, chunk):  # the last token predicts nothing scored
                part = token_ids[start : start + chunk]
                for i, token in enumerate(part):
                    batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, start + i, 1
                    batch.seq_id[i][0], batch.logits[i] = 0, True
                batch.n_tokens = len(part)
                failed = ll.llama_decode(ctx, batch)
                if failed:
                    raise RuntimeError(f"llama_decode failed (code {failed}) while scoring")
                rows = self._all_logits(ctx, len(part))
                targets = token_ids[start + 1 : start + 1 + len(part)]
                losses, picks = next_token_scores(rows[: len(targets)], targets)
                nll += losses
                greedy += picks
        finally:
            ll.llama_batch_free(batch)
            ll.llama_free(ctx)
        return nll, greedy

    def _all_logits(self, ctx: Any, rows: int) -> Any:
        """The ``[rows, n_vocab]`` logits of the last ``llama_decode`` (every entry asked)."""
        import numpy as np

        view = self._ll.llama_get_logits(ctx)
        return np.ctypeslib.as_array(view, shape=(rows, self.n_vocab))

    def take_perf(self, last: int) -> dict[str, float] | None:
        """The medians of :attr:`perf` over the ``last`` calls (``None`` if none), then forget
        them all: the next configuration starts afresh."""
        import statistics

        measured = self.perf[-last:] if last > 0 else []
        self.perf.clear()
        if not measured:
            return None
        return {key: statistics.median(p[key] for p in measured) for key in measured[0]}

    def _counters(self, wall_s: float) -> dict[str, float]:
        """llama.cpp's counters of the call just made (ms from its clock) and ours (wall)."""
        data = self._ll.llama_perf_context(self._ctx)
        return {
            "prompt_eval_ms": float(data.t_p_eval_ms),
            "prompt_eval_tokens": float(data.n_p_eval),
            "eval_ms": float(data.t_eval_ms),
            "eval_runs": float(data.n_eval),
            "generate_ms": wall_s * 1e3,
        }

    def generate(self, input_ids: Any, **kwargs: Any) -> Any:
        """Generate from ``input_ids`` (a ``[batch, n]`` tensor; ``attention_mask`` zeros mark
        padding, left out) and feed ``streamer`` per step; returns the token ids as a
        ``[batch, n + new]`` tensor, as transformers does."""
        import torch

        _check_request(kwargs, int(input_ids.shape[0]))
        ids = input_ids.detach().cpu().tolist()
        mask = kwargs.get("attention_mask")
        keep = mask.detach().cpu().tolist() if mask is not None else [[1] * len(r) for r in ids]
        prompts = [[t for t, m in zip(row, ms) if m] for row, ms in zip(ids, keep)]
        max_new = int(kwargs.get("max_new_tokens") or 20)
        min_new = min(int(kwargs.get("min_new_tokens") or 0), max_new)
        batch = len(prompts)
        longest = max(len(p) for p in prompts)
        self._context(batch, batch * (longest + max_new), min(_MAX_CHUNK, batch * longest))
        self._clear()
        choose = _chooser(kwargs)
        stops = self._stop_ids(kwargs)
        pad = _first(kwargs.get("pad_token_id"), self.generation_config.pad_token_id, 0)
        timer = kwargs.get("streamer")
        t0 = time.perf_counter()
        if timer is not None:
            timer.on_prompt(batch, int(input_ids.shape[-1]))
        entries = [
            (tok, pos, seq, pos == len(p) - 1) for seq, p in enumerate(prompts) for pos, tok in
            enumerate(p)
        ]  # fmt: skip
        logits = self._decode(entries)
        new: list[list[int]] = [[] for _ in prompts]
        done = [False] * batch
        for step in range(max_new):
            if step:
                last = [(row[-1], len(p) + step - 1, s, True) for s, (row, p) in
                        enumerate(zip(new, prompts))]  # fmt: skip
                logits = self._decode(last)
            for seq in range(batch):
                token = pad if done[seq] else choose(logits[seq], stops if step < min_new else ())
                done[seq] = done[seq] or (step >= min_new and token in stops)
                new[seq].append(token)
            if timer is not None:
                timer.on_step(1)
            if all(done) and step + 1 >= min_new:
                break
        if timer is not None:
            timer.end()
        self.perf.append(self._counters(time.perf_counter() - t0))
        out = torch.tensor(new, dtype=input_ids.dtype)
        return torch.cat([input_ids.detach().cpu(), out], dim=-1)

    def _stop_ids(self, kwargs: dict[str, Any]) -> frozenset[int]:
        """The ids that end a sequence: the call's or the generation config's EOS, and
        llama.cpp's own EOS/EOT of the file."""
        ids: set[int] = set()
        for value in (kwargs.get("eos_token_id"), self.generation_config.eos_token_id):
            if value is not None:
                ids.update(value if isinstance(value, (list, tuple)) else [value])
        for fn in (self._ll.llama_vocab_eos, self._ll.llama_vocab_eot):
            token = int(fn(self._vocab))
            if 0 <= token < self.n_vocab:
                ids.add(token)
        return frozenset(int(i) for i in ids)


#: llama.cpp's log callback (kept referenced: llama.cpp calls it from C)
_LOG_CALLBACK: Any = None
#: ggml's ``GGML_LOG_LEVEL_ERROR`` (NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5)
_ERROR = 4


def quiet_llama_log(llama_cpp: Any) -> None:
    """llama.cpp's log on stderr: its errors only (why a file does not load). Its warnings
    include one about the converter's minimal tokenizer (no newline token), harmless here."""
    global _LOG_CALLBACK
    if _LOG_CALLBACK is not None:
        return

    def log(level: int, text: bytes, _: Any) -> None:
        if level == _ERROR and text:
            sys.stderr.write(text.decode(errors="replace"))

    _LOG_CALLBACK = llama_cpp.llama_log_callback(log)
    llama_cpp.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(0))


def _first(*values: Any) -> int:
    return next(int(v[0] if isinstance(v, (list, tuple)) else v) for v in values if v is not None)


def _check_request(kwargs: dict[str, Any], batch: int) -> None:
    """:class:`LlamaCppRefused` for what this engine does not run, before anything runs."""
    unknown = sorted(set(kwargs) - _TAKEN)
    if unknown:
        raise LlamaCppRefused(
            f"--engine llama.cpp does not take {', '.join(unknown)} (transformers only)"
        )
    if int(kwargs.get("num_beams") or 1) > 1:
        raise LlamaCppRefused(
            "--engine llama.cpp runs greedy or sampled decoding only, not beam search: use "
            "--num-beams 1"
        )
    if batch > MAX_BATCH:
        raise LlamaCppRefused(
            f"batch {batch} asked: --engine llama.cpp decodes at most {MAX_BATCH} sequences "
            f"together; use --batch-size {MAX_BATCH} or less"
        )


def _chooser(kwargs: dict[str, Any]) -> Any:
    """``(logits, masked ids) -> token``: the largest logit (greedy), or a draw from
    ``softmax(logits / temperature)`` cut to ``top_k`` and ``top_p`` (torch's generator).

    >>> import numpy as np
    >>> greedy = _chooser({})
    >>> greedy(np.array([0.5, 3.0, 2.0], dtype=np.float32), frozenset({1}))  # EOS 1 masked
    2
    """
    import numpy as np

    if not kwargs.get("do_sample"):

        def greedy(logits: Any, masked: Any) -> int:
            if masked:
                logits[list(masked)] = -np.inf
            return int(logits.argmax())

        return greedy
    import torch

    temperature = float(kwargs.get("temperature") or 1.0)
    top_k = int(kwargs.get("top_k") or 0)
    top_p = float(kwargs.get("top_p") or 1.0)

    def sample(logits: Any, masked: Any) -> int:
        scores = torch.from_numpy(logits) / max(temperature, 1e-6)
        if masked:
            scores[list(masked)] = -float("inf")
        if 0 < top_k < scores.numel():
            cut = torch.topk(scores, top_k).values[-1]
            scores[scores < cut] = -float("inf")
        if top_p < 1.0:
            ordered, order = torch.sort(scores, descending=True)
            cumulative = torch.softmax(ordered, -1).cumsum(-1)
            drop = cumulative - torch.softmax(ordered, -1) > top_p  # keep the first over top_p
            scores[order[drop]] = -float("inf")
        return int(torch.multinomial(torch.softmax(scores, -1), 1))

    return sample
