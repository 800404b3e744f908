"""Hostile input for TimingStreamer and BenchmarkWrapper: threads, odd put() values, beam search
with a caller's streamer, empty error messages. Real tiny models and real threads throughout."""

from __future__ import annotations

import threading
import warnings

import pytest
import torch
from conftest import Recorder, gen_kwargs
from transformers.generation.streamers import BaseStreamer

from streambench import BenchmarkWrapper, TimingStreamer
from streambench.streamer import InterleavedRunsError
from streambench.timing import exception_text

FIX = "one TimingStreamer per concurrent generate()"


class Signal(Recorder):
    """An inner streamer that sets ``event`` once the run in progress has its first token."""

    def __init__(self):
        super().__init__()
        self.event = threading.Event()

    def put(self, value):
        super().put(value)
        if value.dim() == 1:
            self.event.set()


def run_in_thread(fn, name):
    """Run ``fn`` in a thread; return (thread, outcome) where outcome gets "ok" or the exception."""
    outcome = {}

    def target():
        try:
            fn()
            outcome["result"] = "ok"
        except BaseException as exc:  # handed to the test
            outcome["result"] = exc

    th = threading.Thread(target=target, name=name)
    th.start()
    return th, outcome


# -- 1. interleaved runs ----------------------------------------------------------------------
def test_two_threads_sharing_one_streamer_are_refused_never_merged(llama, prompt, known_latency):
    """The audit's reproduction: two threads, three generate() calls each, one streamer. Before,
    this gave runs of 68/58/26/9 tokens, all "complete". Now every recorded run is exactly one
    call's tokens, and every call that overlapped another is refused with the cause and the fix."""
    known_latency(llama, prefill_s=0.005, decode_s=0.006)
    inner = Signal()
    s = TimingStreamer(device="cpu", inner=inner)
    counts = {"a": 9, "b": 6}
    errors: dict[str, list] = {"a": [], "b": []}
    done: dict[str, list] = {"a": [], "b": []}

    def calls(who):
        if who == "b":  # start while a's first call is surely in progress
            assert inner.event.wait(10)
        for _ in range(3):
            try:
                out = llama.generate(prompt, streamer=s, **gen_kwargs(counts[who]))
                done[who].append(out.shape[-1] - prompt.shape[-1])
            except InterleavedRunsError as exc:
                errors[who].append(exc)

    threads = [threading.Thread(target=calls, args=(w,), name=f"gen-{w}") for w in "ab"]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert errors["b"], "b's first call overlapped a's run and must have been refused"
    for exc in errors["a"] + errors["b"]:
        msg = str(exc)
        assert FIX in msg and "at the same time" in msg and "gen-" in msg
    runs = s.runs
    # never merged: each run is one call's tokens, and only the calls that got through are runs
    assert sorted(r.new_tokens for r in runs) == sorted(done["a"] + done["b"])
    assert all(r.complete and r.new_tokens in (9, 6) and r.batch_size == 1 for r in runs)
    assert len(runs) + len(errors["a"]) + len(errors["b"]) == 6
    assert done["a"] == [9] * len(done["a"]) and done["b"] == [6] * len(done["b"])


def test_generate_in_a_worker_thread_with_text_iterator_streamer(llama):
    """The chat-app pattern: generate() in a worker thread, text read in the main thread."""
    from transformers import TextIteratorStreamer

    from streambench.tiny import build_tokenizer

    tok = build_tokenizer()
    ids = tok("hello", return_tensors="pt").input_ids
    text = TextIteratorStreamer(tok, skip_prompt=True)
    s = TimingStreamer(device="cpu", inner=text)
    for n in (5, 7):  # a fresh worker thread per request, marked from the main thread
        s.mark_start()
        th, outcome = run_in_thread(
            lambda n=n: llama.generate(ids, streamer=s, **gen_kwargs(n)), "worker"
        )
        pieces = list(text)  # the main thread consumes while the worker generates
        th.join(60)
        assert outcome["result"] == "ok" and pieces
    assert [(r.new_tokens, r.complete, r.reference) for r in s.runs] == [
        (5, True, "generate"),
        (7, True, "generate"),
    ]


def test_a_run_left_open_by_a_failed_call_does_not_block_other_threads(
    llama, prompt, known_latency
):
    """Thread 1's generate() raises mid-run (no end()) and the thread stays alive; thread 2's
    call is not an overlap: the stale run is closed incomplete and thread 2 is timed."""
    boom = known_latency(llama, prefill_s=0, decode_s=0, raise_at=3)
    s = TimingStreamer(device="cpu")
    failed, release = threading.Event(), threading.Event()

    def fail_then_idle():
        with pytest.raises(RuntimeError, match="boom"):
            llama.generate(prompt, streamer=s, **gen_kwargs(6))
        failed.set()
        release.wait(30)  # alive, but no longer feeding the streamer

    t1, out1 = run_in_thread(fail_then_idle, "failed")
    assert failed.wait(30)
    boom.remove()
    t2, out2 = run_in_thread(lambda: llama.generate(prompt, streamer=s, **gen_kwargs(4)), "next")
    t2.join(60)
    release.set()
    t1.join(60)
    assert out2["result"] == "ok" and out1["result"] == "ok"
    assert [(r.complete, r.new_tokens) for r in s.runs] == [(False, 2), (True, 4)]


def test_an_engine_that_streams_from_its_own_thread(llama, prompt):
    """An engine puts the prompt from the caller's thread, the tokens from its own decode thread
    (the caller blocked meanwhile) and ends from the caller: one run, nothing refused."""
    s = TimingStreamer(device="cpu")

    def engine_generate(ids, n):
        s.put(ids)

        def decode():
            cur = ids
            with torch.no_grad():
                for _ in range(n):
                    tok = llama(cur).logits[:, -1].argmax(-1)
                    s.put(tok)
                    cur = torch.cat([cur, tok[:, None]], dim=-1)

        th, outcome = run_in_thread(decode, "engine")
        th.join(60)
        assert outcome["result"] == "ok"
        s.end()

    engine_generate(prompt, 5)
    engine_generate(prompt[:, :4], 3)
    assert [(r.complete, r.new_tokens, r.prompt_tokens) for r in s.runs] == [
        (True, 5, 12),
        (True, 3, 4),
    ]


def test_mark_start_from_another_thread_during_a_run_is_refused(llama, prompt, known_latency):
    """mark_start() used to close the run in progress and replace it, so the worker's next token
    started a bogus one-token 'prompt' run. Now it is refused and the worker's run is intact."""
    known_latency(llama, prefill_s=0, decode_s=0.01)
    inner = Signal()
    s = TimingStreamer(device="cpu", inner=inner)
    th, outcome = run_in_thread(lambda: llama.generate(prompt, streamer=s, **gen_kwargs(8)), "w")
    assert inner.event.wait(10)
    with pytest.raises(InterleavedRunsError, match="mark_start") as err:
        s.mark_start()
    assert FIX in str(err.value)
    th.join(60)
    assert outcome["result"] == "ok"
    (r,) = s.runs
    assert (r.complete, r.new_tokens, r.prompt_tokens, r.reference) == (True, 8, 12, "prompt")
    s.mark_start()  # after the run: fine, from any thread
    llama.generate(prompt, streamer=s, **gen_kwargs(2))
    assert s.summary().reference == "generate" and s.summary().new_tokens == 2


def test_alternating_feeders_mark_the_run_interleaved(llama, prompt):
    """Backstop for prompts that cannot be recognised as prompts (a [1, L] put from outside
    generate()): a second feeder takes the run over, and when the first one puts again both are
    refused and the run is kept as complete=False with extra['interleaved']."""
    s = TimingStreamer(device="cpu")
    a_go, b_go, a_done, b_done = (threading.Event() for _ in range(4))
    token = torch.tensor([5])
    seen: dict[str, list] = {"a": [], "b": []}

    def feeder(who, first, go, done, other_done):
        def attempt(value):
            try:
                s.put(value)
                seen[who].append("ok")
            except InterleavedRunsError as exc:
                seen[who].append(exc)

        go.wait(10)
        attempt(first)
        attempt(token)
        done.set()
        if who == "a":
            b_go.set()
            other_done.wait(10)
            attempt(token)  # a fed the run before and b took it over: two runs take turns

    ta, _ = run_in_thread(lambda: feeder("a", prompt, a_go, a_done, b_done), "feed-a")
    tb, _ = run_in_thread(lambda: feeder("b", prompt[:, :3], b_go, b_done, None), "feed-b")
    a_go.set()
    ta.join(30)
    tb.join(30)
    assert seen["a"][:2] == ["ok", "ok"] and seen["b"] == ["ok", "ok"]
    assert isinstance(seen["a"][2], InterleavedRunsError) and FIX in str(seen["a"][2])
    with pytest.raises(InterleavedRunsError):  # every further token of that run too
        s.put(token)
    (r,) = s.runs
    assert not r.complete and "at the same time" in r.extra["interleaved"]
    llama.generate(prompt, streamer=s, **gen_kwargs(3))  # the next generate() starts clean
    assert [(x.complete, x.new_tokens) for x in s.runs][-1] == (True, 3)
    assert not s.runs[0].complete


def test_sequential_calls_from_many_threads_are_all_timed(llama, prompt):
    s = TimingStreamer(device="cpu")
    for i, n in enumerate((3, 5, 2, 4)):
        th, outcome = run_in_thread(
            lambda n=n: llama.generate(prompt, streamer=s, **gen_kwargs(n)), f"t{i}"
        )
        th.join(60)
        assert outcome["result"] == "ok"
    assert [(r.complete, r.new_tokens) for r in s.runs] == [(True, n) for n in (3, 5, 2, 4)]


def test_wrapper_refuses_a_concurrent_call_and_keeps_the_first(llama, prompt, known_latency):
    known_latency(llama, prefill_s=0, decode_s=0.01)
    w = BenchmarkWrapper(llama)
    inner = Signal()
    th, outcome = run_in_thread(
        lambda: w.generate(prompt, streamer=inner, **gen_kwargs(8)), "first"
    )
    assert inner.event.wait(10)
    with pytest.raises(InterleavedRunsError, match=r"BenchmarkWrapper\.generate.*'first'"):
        w.generate(prompt, **gen_kwargs(3))
    th.join(60)
    assert outcome["result"] == "ok"
    assert w.last_result.new_tokens == 8 and inner.ended == 1 and len(inner.puts) == 9
    th, outcome = run_in_thread(lambda: w.generate(prompt, **gen_kwargs(3)), "second")
    th.join(60)  # one after another, from another thread: fine
    assert outcome["result"] == "ok" and w.last_result.new_tokens == 3
    assert [(r.complete, r.new_tokens) for r in w.runs] == [(True, 8), (True, 3)]


# -- 2. put() values --------------------------------------------------------------------------
@pytest.mark.parametrize("value", [[1, 2], (1, 2), [[1, 2, 3]]], ids=["list", "tuple", "nested"])
def test_put_of_a_non_tensor_is_a_clear_type_error(llama, prompt, value):
    s = TimingStreamer(device="cpu")
    with pytest.raises(TypeError, match=r"torch\.Tensor of token ids.*got (list|tuple)"):
        s.put(value)  # no run yet: the general path
    assert s.runs == []
    s.put(prompt)
    s.put(torch.tensor([4]))
    with pytest.raises(TypeError, match=r"torch\.Tensor of token ids"):
        s.put(value)  # during a run: the per-token fast path
    s.end()
    assert s.summary().new_tokens == 1  # the bad put left the run untouched


def test_an_inner_streamers_own_error_is_not_taken_for_a_bad_put(llama, prompt):
    """put()'s TypeError is about the value only: an AttributeError raised by the inner streamer
    (a tensor put, the fast path) reaches the caller unchanged."""

    class Broken(Recorder):
        def put(self, value):
            super().put(value)
            if len(self.puts) == 3:
                raise AttributeError("inner streamer bug")

    s = TimingStreamer(device="cpu", inner=Broken())
    with pytest.raises(AttributeError, match="inner streamer bug"):
        llama.generate(prompt, streamer=s, **gen_kwargs(5))
    assert not s.summary().complete


class WithEmptyPuts(BaseStreamer):
    """Forwards generate()'s puts and adds empty ones around each token."""

    def __init__(self, target):
        self.target = target

    def put(self, value):
        self.target.put(torch.zeros((0,), dtype=torch.long))
        self.target.put(value)
        if value.dim() == 1:
            self.target.put(torch.zeros((1, 0), dtype=torch.long))
            self.target.put(torch.zeros((0, 3), dtype=torch.long))

    def end(self):
        self.target.end()


def test_empty_puts_are_ignored_never_a_run_of_batch_zero(llama, prompt):
    s = TimingStreamer(device="cpu")
    s.put(torch.zeros((0,), dtype=torch.long))
    s.put(torch.zeros((0, 5), dtype=torch.long))
    assert s.runs == []  # before: a run of batch 0
    with pytest.raises(RuntimeError, match="no generate"):
        s.summary()
    inner = Recorder()
    s = TimingStreamer(device="cpu", inner=inner)
    llama.generate(prompt, streamer=WithEmptyPuts(s), **gen_kwargs(5))
    (r,) = s.runs
    assert (r.batch_size, r.prompt_tokens, r.new_tokens, r.step_tokens) == (1, 12, 5, (1,) * 5)
    assert len(inner.puts) == 6  # the empty puts were not even forwarded


def test_an_empty_prompt_from_inputs_embeds_is_still_the_prompt(llama, prompt):
    """generate(inputs_embeds=...) puts a [batch, 0] prompt (transformers >= 4.38; 4.37 puts a
    [batch, 1] start token instead): one complete run of batch 1, never an empty run."""
    s = TimingStreamer(device="cpu")
    embeds = llama.get_input_embeddings()(prompt)
    llama.generate(inputs_embeds=embeds, streamer=s, **gen_kwargs(4))
    (r,) = s.runs
    assert (r.batch_size, r.new_tokens, r.complete) == (1, 4, True)
    assert r.prompt_tokens in (0, 1)


# -- 3. beam search with the caller's streamer --------------------------------------------------
@pytest.mark.parametrize("do_sample", [False, True], ids=["beam_search", "beam_sample"])
def test_wrapper_refuses_streamer_with_beam_search_before_running(llama, prompt, do_sample):
    """README: under beam search a streamer= is refused with the wrapper's own ValueError,
    whatever transformers would do (raise, or for beam sampling silently stream the prompt only),
    before anything runs or is recorded."""
    caller = Recorder()
    w = BenchmarkWrapper(llama)
    kw = gen_kwargs(4, num_beams=2)
    kw["do_sample"] = do_sample
    with pytest.raises(
        ValueError, match=r"streamer= cannot be used with beam search \(num_beams=2"
    ):
        w.generate(prompt, streamer=caller, **kw)
    assert caller.puts == [] and caller.ended == 0 and w.runs == [] and w.last_result is None
    out = w.generate(prompt, streamer=None, **kw)  # streamer=None is no streamer: timed as usual
    assert w.timed_by == "logits_processor" and w.last_result.new_tokens == 4
    assert out.shape[-1] == 16 and [r.complete for r in w.runs] == [True]


# -- 4. error messages ---------------------------------------------------------------------------
def test_exception_text_never_empty_nor_repeated():
    assert exception_text(MemoryError()) == "MemoryError (out of memory)"
    assert exception_text(MemoryError("MemoryError")) == "MemoryError (out of memory)"
    assert exception_text(OSError()) == "OSError (no message)"
    assert exception_text(RuntimeError("RuntimeError")) == "RuntimeError (no message)"
    assert exception_text(ValueError("bad device")) == "ValueError: bad device"


def test_memory_probe_failing_with_an_empty_memory_error_says_so(llama, prompt):
    s = TimingStreamer(device="cpu")

    def broken():
        raise MemoryError()

    s._read_memory = broken
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        llama.generate(prompt, streamer=s, **gen_kwargs(3))
    (w,) = [c for c in caught if "memory probe" in str(c.message)]
    assert "failed (MemoryError (out of memory))" in str(w.message)
    assert s.summary().new_tokens == 3 and s.summary().memory_per_token_bytes == ()


# -- per-token memory where affordable (memory=True) -----------------------------------------------
def test_fast_tokens_skip_the_memory_reading_but_keep_first_last_and_peak():
    """Puts microseconds apart: a reading at the first token and (at end()) the last one, None in
    between; memory="every-token" reads them all; a slow step always gets one."""
    import time

    s = TimingStreamer(device="cpu")
    s.put(torch.ones(1, 4, dtype=torch.long))
    for _ in range(20):
        s.put(torch.ones(1, dtype=torch.long))
    s.end()
    mem = s.summary().memory_per_token_bytes
    assert len(mem) == 20 and mem[0] is not None and mem[-1] is not None
    assert sum(m is None for m in mem) >= 15
    assert s.summary().peak_memory_bytes == max(m for m in mem if m is not None)

    every = TimingStreamer(device="cpu", memory="every-token")
    every.put(torch.ones(1, 4, dtype=torch.long))
    for _ in range(20):
        every.put(torch.ones(1, dtype=torch.long))
    every.end()
    assert all(m is not None for m in every.summary().memory_per_token_bytes)

    slow = TimingStreamer(device="cpu")
    slow.put(torch.ones(1, 4, dtype=torch.long))
    for _ in range(3):
        time.sleep(0.03)  # 30 ms a step: far above the gap (1,000 x a read's ~2-15 us cost)
        slow.put(torch.ones(1, dtype=torch.long))
    slow.end()
    assert all(m is not None for m in slow.summary().memory_per_token_bytes)


def test_memory_setting_is_checked():
    with pytest.raises(ValueError, match="every-token"):
        TimingStreamer(device="cpu", memory="sometimes")
