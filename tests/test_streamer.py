"""TimingStreamer on real tiny models through the unmodified generate()."""

from __future__ import annotations

import copy
import json
import re

import pytest
import torch
from conftest import Recorder, assisted, gen_kwargs

import streambench.streamer as streamer_mod
from streambench import NoTokensError, TimingStreamer


def test_basic_run(llama, prompt):
    s = TimingStreamer(device="cpu")
    out = llama.generate(prompt, streamer=s, **gen_kwargs(8))
    r = s.summary()
    assert out.shape[-1] - prompt.shape[-1] == 8
    assert (r.new_tokens, r.batch_size, r.prompt_tokens) == (8, 1, 12)
    assert len(r.token_latencies_s) == 8 and r.step_tokens == (1,) * 8
    assert r.complete and r.reference == "prompt" and r.pre_prompt_s is None
    assert r.first_token_s == r.token_latencies_s[0] > 0
    assert r.rest_token_mean_s == pytest.approx(sum(r.token_latencies_s[1:]) / 7)
    assert r.memory_kind == "rss" and len(r.memory_per_token_bytes) == 8
    readings = [m for m in r.memory_per_token_bytes if m is not None]  # where affordable
    assert r.memory_per_token_bytes[0] is not None and r.memory_per_token_bytes[-1] is not None
    assert r.peak_memory_bytes == max(readings) > 10 * 2**20
    assert r.device == "cpu"
    st = r.rest_token_stats
    assert st.n == 7 and st.min <= st.median <= st.p90 <= st.p99 <= st.max
    assert r.decode_tokens_per_s == pytest.approx(1 / r.rest_token_mean_s)
    d = json.loads(json.dumps(r.to_dict()))
    assert d["new_tokens"] == 8 and len(d["token_latencies_s"]) == 8
    assert d["rest_token_stats_s"]["n"] == 7


def test_accuracy_against_known_latency(llama, prompt, known_latency):
    """First token ~50 ms, then ~10 ms per token: agree with the forward hooks within 2 % / 4 ms."""
    truth = known_latency(llama, prefill_s=0.050, decode_s=0.010)
    inner = Recorder()
    s = TimingStreamer(device="cpu", inner=inner)
    llama.generate(prompt, streamer=s, **gen_kwargs(10))
    r = s.summary()
    assert len(truth.ends) == 10
    t_prompt = inner.puts[0][1]
    true_first = truth.ends[0] - t_prompt
    true_rest = [b - a for a, b in zip(truth.ends, truth.ends[1:])]

    def close(measured, true):
        # the truth is the end of the forward pass; the put comes after generate()'s own work
        # for the step (logits processors, stopping criteria): 0.2-3 ms on this 2-core VM, more
        # when its host is busy; a step is 10 ms, so a token stamped a step off still fails
        assert abs(measured - true) <= max(0.02 * true, 0.004), (measured, true)

    assert true_first >= 0.050
    close(r.first_token_s, true_first)
    close(r.rest_token_mean_s, sum(true_rest) / len(true_rest))
    for measured, true in zip(r.token_latencies_s[1:], true_rest):
        close(measured, true)


def test_mark_start_counts_from_the_call(llama, prompt, known_latency):
    truth = known_latency(llama, prefill_s=0.030, decode_s=0.002)
    s = TimingStreamer(device="cpu")
    s.mark_start()
    llama.generate(prompt, streamer=s, **gen_kwargs(3))
    r = s.summary()
    assert r.reference == "generate"
    assert r.pre_prompt_s is not None and 0 <= r.pre_prompt_s < r.first_token_s
    assert r.first_token_s >= 0.030
    assert len(truth.ends) == 3


def test_batch_counts_per_sequence(llama):
    ids = torch.randint(3, 259, (3, 9))
    s = TimingStreamer(device="cpu")
    llama.generate(ids, attention_mask=torch.ones_like(ids), streamer=s, **gen_kwargs(6))
    r = s.summary()
    assert (r.batch_size, r.new_tokens, r.prompt_tokens) == (3, 6, 9)
    assert r.decode_throughput_tokens_per_s == pytest.approx(3 * r.decode_tokens_per_s)


def test_reuse_over_many_calls(llama, prompt):
    s = TimingStreamer(device="cpu")
    for n in (5, 2, 7):
        llama.generate(prompt, streamer=s, **gen_kwargs(n))
        assert s.summary().new_tokens == n
    assert [r.new_tokens for r in s.runs] == [5, 2, 7]
    assert all(r.complete for r in s.runs)
    st = s.stats(warmup=1)
    assert st.runs == 2 and st.first_token_s.n == 2 and st.new_tokens is None
    s.reset()
    assert s.runs == []
    with pytest.raises(RuntimeError, match="no generate"):
        s.summary()


def test_one_and_two_tokens(llama, prompt):
    s = TimingStreamer(device="cpu", do_print=True, print_fn=lambda *_: None)
    llama.generate(prompt, streamer=s, **gen_kwargs(1))
    one = s.summary()
    assert one.new_tokens == 1 and one.rest_token_mean_s is None
    assert one.decode_tokens_per_s is None and one.rest_token_stats is None
    assert one.to_dict()["rest_token_mean_s"] is None
    llama.generate(prompt, streamer=s, **gen_kwargs(2))
    two = s.summary()
    assert two.new_tokens == 2 and two.rest_token_mean_s == two.token_latencies_s[1]


def test_interrupted_run_is_kept_and_next_is_clean(llama, prompt, known_latency):
    boom = known_latency(llama, prefill_s=0, decode_s=0, raise_at=4)
    s = TimingStreamer(device="cpu")
    with pytest.raises(RuntimeError, match="boom"):
        llama.generate(prompt, streamer=s, **gen_kwargs(8))
    r = s.summary()
    assert not r.complete and r.new_tokens == 3
    boom.remove()
    llama.generate(prompt[:, :5], streamer=s, **gen_kwargs(4))
    runs = s.runs
    assert [(x.complete, x.new_tokens, x.prompt_tokens) for x in runs] == [
        (False, 3, 12),
        (True, 4, 5),
    ]


def test_interrupted_before_first_token_then_batch1_prompt(llama, prompt, known_latency):
    """A [1, L] prompt after a run that died before its first token starts a new run."""
    boom = known_latency(llama, prefill_s=0, decode_s=0, raise_at=1)
    s = TimingStreamer(device="cpu")
    with pytest.raises(RuntimeError):
        llama.generate(prompt, streamer=s, **gen_kwargs(4))
    boom.remove()
    llama.generate(prompt, streamer=s, **gen_kwargs(4))
    assert [(r.complete, r.new_tokens) for r in s.runs] == [(False, 0), (True, 4)]


def test_beam_sampling_never_makes_up_a_latency(llama, prompt):
    s = TimingStreamer(device="cpu")
    try:  # < 4.57 raises; >= 4.57 silently gives the streamer only the prompt
        llama.generate(
            prompt, streamer=s, num_beams=2, do_sample=True, max_new_tokens=4, pad_token_id=0
        )
    except ValueError as exc:
        assert "beam" in str(exc)
    with pytest.raises(NoTokensError, match="beam"):
        s.summary()
    (r,) = s.runs
    assert r.new_tokens == 0 and r.first_token_s is None and r.rest_token_mean_s is None


def test_assisted_decoding_counts_k_tokens_per_put(llama, prompt):
    """An identical assistant gets every candidate accepted: puts of [1, k], k > 1."""
    model, kw = assisted(llama, 12)
    assistant = copy.deepcopy(model)
    s = TimingStreamer(device="cpu")
    out = model.generate(prompt, streamer=s, assistant_model=assistant, **kw)
    r = s.summary()
    assert r.new_tokens == out.shape[-1] - prompt.shape[-1] == 12
    assert sum(r.step_tokens) == 12 and max(r.step_tokens) > 1
    assert len(r.token_latencies_s) == 12 == len(r.memory_per_token_bytes)
    assert r.rest_token_mean_s == pytest.approx(
        sum(r.step_latencies_s[1:]) / 11 + (r.step_latencies_s[0] - r.first_token_s) / 11
    )


def test_k_token_steps_are_split_evenly(monkeypatch):
    """Exact semantics with a controlled clock: the first step's first token takes the whole
    step, its other tokens 0; later steps are split evenly over their tokens."""
    # the prompt reads the clock twice (its timestamp, then its own time); a step without
    # memory reading or inner streamer reads it once
    clock = iter([0.0, 0.0, 0.5, 0.7, 1.3, 1.4, 1.4])
    monkeypatch.setattr(streamer_mod, "perf_counter", lambda: next(clock))
    s = TimingStreamer(device="cpu", memory=False)
    s.put(torch.zeros(1, 4, dtype=torch.long))  # prompt
    s.put(torch.zeros(1, 2, dtype=torch.long))  # 2 tokens at 0.5 s
    s.put(torch.zeros(1, 1, dtype=torch.long))  # 1 token at 0.7 s
    s.put(torch.zeros(1, 3, dtype=torch.long))  # 3 tokens at 1.3 s
    s.end()
    r = s.summary()
    assert r.step_tokens == (2, 1, 3) and r.new_tokens == 6
    assert r.token_latencies_s == pytest.approx((0.5, 0.0, 0.2, 0.2, 0.2, 0.2))
    assert r.first_token_s == pytest.approx(0.5)
    assert r.rest_token_mean_s == pytest.approx((1.3 - 0.5) / 5)


def test_inner_streamer_gets_everything_and_its_time_is_excluded(llama, prompt, known_latency):
    """The inner streamer sleeps 100 ms per put. Each wall-clock interval between two forward
    passes holds one such sleep; the reported latency must leave it out (whatever the load)."""
    truth = known_latency(llama, prefill_s=0.0, decode_s=0.0)  # records when forwards end
    inner = Recorder(sleep_s=0.1)
    s = TimingStreamer(device="cpu", inner=inner)
    llama.generate(prompt, streamer=s, **gen_kwargs(6))
    r = s.summary()
    assert [shape for shape, _ in inner.puts] == [(1, 12)] + [(1,)] * 6 and inner.ended == 1
    assert r.streamer_overhead_s >= 7 * 0.1
    walls = [truth.ends[0] - inner.puts[0][1]]
    walls += [b - a for a, b in zip(truth.ends, truth.ends[1:])]
    for measured, wall in zip(r.token_latencies_s, walls):
        assert wall >= 0.1 and 0 <= measured <= wall - 0.095, (measured, wall)


def test_text_streamer_as_inner(llama, capsys):
    from transformers import TextStreamer

    from streambench.tiny import build_tokenizer

    tok = build_tokenizer()
    ids = tok("hello", return_tensors="pt").input_ids
    s = TimingStreamer(device="cpu", inner=TextStreamer(tok))
    llama.generate(ids, streamer=s, **gen_kwargs(5))
    assert "hello" in capsys.readouterr().out
    assert s.summary().new_tokens == 5


SEED_FIRST = re.compile(r"^=========First token cost \d+\.\d{4} s( and [\d.]+ GB)?=========$")
SEED_REST = re.compile(
    r"^=========Rest tokens cost average \d+\.\d{4} s \((\d+) tokens in all\)( and [\d.]+ GB)?"
    r"=========$"
)


def test_do_print_prints_the_seed_lines(llama, prompt, capsys):
    s = TimingStreamer(device="cpu", do_print=True)
    llama.generate(prompt, streamer=s, **gen_kwargs(32))
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    assert SEED_FIRST.match(lines[0]) and " GB" in lines[0]
    m = SEED_REST.match(lines[1])
    assert m and m.group(1) == "31"
    s2 = TimingStreamer(device="cpu", do_print=True, memory=False)
    llama.generate(prompt, streamer=s2, **gen_kwargs(3))
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].endswith(" s=========") and SEED_REST.match(lines[1])


# memory where it was read (the probe is rate-limited: a token may have none)
TOKEN_LINE = r"token \d+: \d+\.\d{3} ms(, RSS \d+\.\d MiB)?"


def test_verbose_prints_every_token(llama, prompt, capsys):
    s = TimingStreamer(device="cpu", verbose=True)
    llama.generate(prompt, streamer=s, **gen_kwargs(5))
    out = capsys.readouterr().out.strip().splitlines()
    rows = out[2:]  # one line per token, as documented: "token 1: 0.123 ms, RSS 456.7 MiB"
    assert len(rows) == 5 and all(re.fullmatch(TOKEN_LINE, r) for r in rows), rows
    assert any(r.endswith(" MiB") for r in rows)
    assert [int(r.split()[1][:-1]) for r in rows] == [1, 2, 3, 4, 5]
    assert sum(float(r.split()[2]) for r in rows) / 1e3 == pytest.approx(
        sum(s.summary().token_latencies_s), abs=1e-5
    )


def test_encoder_decoder(t5, known_latency):
    known_latency(t5, prefill_s=0.0, decode_s=0.0)
    enc = known_latency(t5.encoder, prefill_s=0.040, decode_s=0.040)
    ids = torch.randint(3, 259, (2, 10))
    s = TimingStreamer(device="cpu")
    s.mark_start()
    t5.generate(ids, streamer=s, **gen_kwargs(4))
    r = s.summary()
    assert r.batch_size == 2 and r.new_tokens == 4
    assert r.prompt_tokens == 1  # the decoder start ids: what generate() puts for seq2seq
    assert r.pre_prompt_s >= 0.040 and len(enc.ends) == 1
    assert r.first_token_s >= r.pre_prompt_s


def test_stats_over_runs_exclude_warmup(llama, prompt):
    s = TimingStreamer(device="cpu")
    for _ in range(4):
        llama.generate(prompt, streamer=s, **gen_kwargs(4))
    st = s.stats(warmup=2)
    assert (st.runs, st.warmup, st.incomplete, st.new_tokens) == (2, 2, 0, 4)
    firsts = sorted(r.first_token_s for r in s.runs[2:])
    assert st.first_token_s.min == firsts[0] and st.first_token_s.max == firsts[1]
    assert st.peak_memory_bytes == max(r.peak_memory_bytes for r in s.runs[2:])
    json.dumps(st.to_dict())
    with pytest.raises(ValueError, match="warmup=4"):
        s.stats(warmup=4)


def test_failing_memory_probe_degrades_to_warning(llama, prompt):
    # every-token: the default reads only where affordable, maybe just twice in 5 fast tokens
    s = TimingStreamer(device="cpu", memory="every-token")
    calls = {"n": 0}

    def broken():
        calls["n"] += 1
        if calls["n"] > 2:
            raise OSError("probe gone")
        return 123

    s._read_memory = broken
    with pytest.warns(RuntimeWarning, match="memory probe"):
        llama.generate(prompt, streamer=s, **gen_kwargs(5))
    r = s.summary()
    assert r.complete and r.new_tokens == 5 and r.memory_per_token_bytes == ()
    assert r.peak_memory_bytes is None


def test_memory_off(llama, prompt):
    s = TimingStreamer(device="cpu", memory=False)
    llama.generate(prompt, streamer=s, **gen_kwargs(3))
    r = s.summary()
    assert r.memory_per_token_bytes == () and r.memory_kind is None and r.peak_memory_bytes is None


def test_on_prompt_and_on_step_feed_the_same_core(llama, prompt):
    """The tensor-free entry points (used by logits-processor timing) make the same records."""
    s = TimingStreamer(device="cpu")
    with pytest.raises(RuntimeError, match="on_prompt"):
        s.on_step()
    s.mark_start()
    s.on_prompt(batch_size=2, prompt_tokens=7)
    for _ in range(4):
        s.on_step()
    s.on_step(tokens=3)
    s.end()
    r = s.summary()
    assert (r.batch_size, r.prompt_tokens, r.new_tokens, r.reference) == (2, 7, 7, "generate")
    assert r.step_tokens == (1, 1, 1, 1, 3) and len(r.memory_per_token_bytes) == 7
