"""BenchmarkWrapper on real tiny models, through each model's own generate().

Runs on every transformers of the nox matrix (4.37 ... 5.x); version-dependent behaviour is
asserted per version, never skipped silently.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import transformers
from conftest import Recorder, assisted, gen_kwargs
from packaging.version import Version

from streambench import BenchmarkWrapper, TimingStreamer
from streambench.timing import GiB

TV = Version(transformers.__version__)
ROOT = Path(__file__).resolve().parents[1]

FIRST = re.compile(r"^=========First token cost (\d+\.\d{4}) s( and [\d.]+ GB)?=========$")
REST = re.compile(
    r"^=========Rest tokens cost average (\d+\.\d{4}) s \((\d+) tokens in all\)( and [\d.]+ GB)?"
    r"=========$"
)
ENCODER = re.compile(
    r"^=====================encoder cost (\d+\.\d+(e-\d+)?) s=======================$"
)


def lines(capsys):
    return capsys.readouterr().out.strip().splitlines()


def attrs(w):
    return (w.first_cost, w.rest_cost_mean, w.encoder_time, w.peak_memory)


def test_drop_in_greedy_prints_the_seed_lines(llama, prompt, capsys):
    w = BenchmarkWrapper(llama, do_print=True)
    expected = llama.generate(prompt, **gen_kwargs(32))
    capsys.readouterr()
    out = w.generate(prompt, **gen_kwargs(32))
    assert torch.equal(out, expected)  # the model's own generate(), output unchanged
    first, rest = lines(capsys)
    m1, m2 = FIRST.match(first), REST.match(rest)
    assert m1 and m2 and m2.group(2) == "31"
    assert float(m1.group(1)) == pytest.approx(w.first_cost, abs=6e-5)
    assert float(m2.group(1)) == pytest.approx(w.rest_cost_mean, abs=6e-5)
    r = w.last_result
    assert w.timed_by == "streamer" and r.new_tokens == 32 and r.reference == "generate"
    assert w.first_cost == r.first_token_s > 0 and w.rest_cost_mean == r.rest_token_mean_s
    assert w.encoder_time is None  # decoder-only
    assert w.peak_memory == pytest.approx(r.peak_memory_bytes / GiB) and w.peak_memory > 0.01


def test_first_and_rest_cost_agree_with_the_forward_passes(llama, prompt, known_latency):
    truth = known_latency(llama, prefill_s=0.050, decode_s=0.010)
    w = BenchmarkWrapper(llama)
    t0 = time.perf_counter()
    w.generate(prompt, **gen_kwargs(8))
    true_rest = [b - a for a, b in zip(truth.ends, truth.ends[1:])]
    assert len(truth.ends) == 8
    # tolerances allow for a machine shared with other work; an off-by-one-step error is 40 ms
    assert w.first_cost >= 0.050
    assert abs(w.first_cost - (truth.ends[0] - t0)) <= max(0.1 * w.first_cost, 0.005)
    assert abs(w.rest_cost_mean - sum(true_rest) / 7) <= max(0.1 * sum(true_rest) / 7, 0.002)


def test_attributes_describe_this_call_never_a_previous_one(llama, prompt, known_latency):
    w = BenchmarkWrapper(llama, do_print=True, print_fn=lambda *_: None)
    w.generate(prompt, **gen_kwargs(6))
    assert None not in (w.first_cost, w.rest_cost_mean, w.peak_memory)
    w.generate(prompt, **gen_kwargs(1))  # the original kept the previous rest cost here
    assert w.first_cost is not None and w.rest_cost_mean is None
    assert w.last_result.new_tokens == 1
    w.generate(prompt, **gen_kwargs(2))
    assert w.rest_cost_mean == w.last_result.token_latencies_s[1]
    boom = known_latency(llama, prefill_s=0, decode_s=0, raise_at=3)
    with pytest.raises(RuntimeError, match="boom"):
        w.generate(prompt, **gen_kwargs(6))
    boom.remove()
    assert attrs(w) == (None, None, None, None) and w.last_result is None
    assert [(r.complete, r.new_tokens) for r in w.runs] == [
        (True, 6),
        (True, 1),
        (True, 2),
        (False, 2),
    ]


@pytest.mark.parametrize("do_sample", [False, True], ids=["beam_search", "beam_sample"])
def test_beam_search_is_timed_through_a_logits_processor(llama, known_latency, do_sample):
    ids = torch.randint(3, 259, (2, 9))
    truth = known_latency(llama, prefill_s=0.030, decode_s=0.008)
    caller = Recorder()
    w = BenchmarkWrapper(llama)
    kw = dict(max_new_tokens=6, min_new_tokens=6, pad_token_id=0, num_beams=3, do_sample=do_sample)
    if not do_sample or TV < Version("4.57"):
        # transformers refuses streamers with beam search: the caller's streamer makes it raise
        # exactly as without the wrapper, and nothing is half-recorded.
        with pytest.raises(ValueError, match="beam"):
            w.generate(ids, attention_mask=torch.ones_like(ids), streamer=caller, **kw)
        assert attrs(w) == (None, None, None, None)
    t0 = time.perf_counter()
    out = w.generate(ids, attention_mask=torch.ones_like(ids), **kw)
    r = w.last_result
    assert w.timed_by == "logits_processor"
    assert out.shape[-1] - 9 == r.new_tokens == 6 == len(truth.ends[-6:])
    assert r.step_tokens == (1,) * 6 and (r.batch_size, r.prompt_tokens) == (2, 9)
    assert r.complete and r.reference == "generate"
    ends = truth.ends[-6:]
    true_rest = [b - a for a, b in zip(ends, ends[1:])]
    assert w.first_cost >= 0.030
    assert abs(w.first_cost - (ends[0] - t0)) <= max(0.1 * w.first_cost, 0.005)
    assert abs(w.rest_cost_mean - sum(true_rest) / 5) <= max(0.1 * sum(true_rest) / 5, 0.002)
    assert len(r.memory_per_token_bytes) == 6 and w.peak_memory > 0


def test_user_logits_processor_is_kept_in_beam_search(llama, prompt):
    from transformers import LogitsProcessor, LogitsProcessorList

    class Count(LogitsProcessor):
        calls = 0

        def __call__(self, input_ids, scores):
            Count.calls += 1
            return scores

    w = BenchmarkWrapper(llama)
    user = LogitsProcessorList([Count()])
    w.generate(prompt, logits_processor=user, num_beams=2, **gen_kwargs(5))
    assert Count.calls == 5 and w.last_result.new_tokens == 5
    assert len(user) == 1  # the caller's list is not modified


def test_caller_streamer_receives_every_token(llama, prompt):
    caller = Recorder()
    w = BenchmarkWrapper(llama)
    w.generate(prompt, streamer=caller, **gen_kwargs(6))
    assert [shape for shape, _ in caller.puts] == [(1, 12)] + [(1,)] * 6 and caller.ended == 1
    assert w.last_result.new_tokens == 6 and w.streamer.inner is None


def test_text_streamer_still_prints(llama, capsys):
    from transformers import TextStreamer

    from streambench.tiny import build_tokenizer

    tok = build_tokenizer()
    ids = tok("hello", return_tensors="pt").input_ids
    w = BenchmarkWrapper(llama, do_print=True)
    w.generate(ids, streamer=TextStreamer(tok), **gen_kwargs(5))
    out = capsys.readouterr().out
    assert out.startswith("hello") and "First token cost" in out


@pytest.mark.parametrize("num_beams", [1, 2], ids=["greedy", "beam_search"])
def test_encoder_decoder(t5, known_latency, capsys, num_beams):
    known_latency(t5, prefill_s=0.0, decode_s=0.0)
    enc = known_latency(t5.encoder, prefill_s=0.040, decode_s=0.040)
    ids = torch.randint(3, 259, (2, 10))
    caller = Recorder()  # stamps the prompt and token hand-overs (greedy only: beams refuse it)
    w = BenchmarkWrapper(t5, do_print=True)
    t0 = time.perf_counter()
    w.generate(
        ids, num_beams=num_beams, streamer=caller if num_beams == 1 else None, **gen_kwargs(4)
    )
    r = w.last_result
    assert w.timed_by == ("streamer" if num_beams == 1 else "logits_processor")
    assert (r.batch_size, r.new_tokens, r.prompt_tokens) == (2, 4, 1) and len(enc.ends) == 1
    assert w.encoder_time >= 0.040  # the encoder sleeps 40 ms: it is inside encoder_time
    # as in the original: encoder time apart, first_cost = prompt hand-over -> first token
    assert w.first_cost + w.encoder_time == pytest.approx(r.first_token_s) and w.first_cost > 0
    if num_beams == 1:  # bounds from the hand-over times, whatever the machine's speed
        (_, t_prompt), (_, t_first) = caller.puts[:2]
        assert t0 + w.encoder_time <= t_prompt and enc.ends[0] <= t_prompt
        assert w.first_cost <= t_first - enc.ends[0]
    out = lines(capsys)
    assert len(out) == 3 and ENCODER.match(out[0]) and FIRST.match(out[1]) and REST.match(out[2])
    assert float(ENCODER.match(out[0]).group(1)) == w.encoder_time


def test_assisted_decoding(llama, prompt):
    model, kw = assisted(llama, 16)
    w = BenchmarkWrapper(model)
    out = w.generate(prompt, assistant_model=copy.deepcopy(model), **kw)
    r = w.last_result
    assert w.timed_by == "streamer" and r.new_tokens == out.shape[-1] - 12 == 16
    assert sum(r.step_tokens) == 16 and max(r.step_tokens) > 1
    assert w.first_cost == r.first_token_s and w.rest_cost_mean == r.rest_token_mean_s


def test_contrastive_search(llama, prompt):
    w = BenchmarkWrapper(llama)
    kw = dict(penalty_alpha=0.6, top_k=4, **gen_kwargs(6))
    if TV < Version("4.56"):  # in the library, streamer supported: timed
        out = w.generate(prompt, **kw)
        assert w.last_result.new_tokens == out.shape[-1] - 12 == 6
        assert w.timed_by == "streamer" and w.rest_cost_mean is not None
    else:  # moved to the hub: transformers' own message (4.57+), no half-written attributes
        with pytest.raises(ValueError, match="trust_remote_code"):
            w.generate(prompt, **kw)
        assert attrs(w) == (None, None, None, None)


class StreamerDroppingModel(torch.nn.Module):
    """A custom generate() that ignores streamer= (as 4.56's hub-code contrastive search did)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def generate(self, input_ids, streamer=None, **kw):
        return self.inner.generate(input_ids, **kw)


def test_bypassed_streamer_gives_a_clear_warning_not_numbers(llama, prompt, capsys):
    w = BenchmarkWrapper(StreamerDroppingModel(llama), do_print=True)
    with pytest.warns(RuntimeWarning, match="bypassed the streamer"):
        out = w.generate(prompt, **gen_kwargs(4))
    assert out.shape[-1] == 16 and attrs(w) == (None, None, None, None)
    assert "No token generated" in capsys.readouterr().out


class FailThenDrop(torch.nn.Module):
    """First call: puts the prompt, then raises. Later calls: generate without the streamer."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, 0

    def generate(self, input_ids, streamer=None, **kw):
        self.calls += 1
        if self.calls == 1:
            streamer.put(input_ids)
            raise RuntimeError("boom after the prompt")
        return self.inner.generate(input_ids, **kw)


def test_a_failed_call_never_leaks_into_the_next(llama, prompt):
    w = BenchmarkWrapper(FailThenDrop(llama))
    with pytest.raises(RuntimeError, match="boom"):
        w.generate(prompt, **gen_kwargs(3))
    with pytest.warns(RuntimeWarning, match="bypassed the streamer"):
        w.generate(prompt, **gen_kwargs(3))
    assert w.last_result is None and attrs(w) == (None, None, None, None)
    assert [(r.complete, r.new_tokens) for r in w.runs] == [(False, 0)]
    with pytest.raises(TypeError, match="by keyword"):
        w.generate(*([prompt] + [None] * 8))


def test_continuous_batching_is_refused_clearly(llama, prompt):
    w = BenchmarkWrapper(llama)
    w.generate(prompt, **gen_kwargs(2))
    with pytest.raises(NotImplementedError, match="Drop cache_implementation='paged'"):
        w.generate(prompt, cache_implementation="paged", **gen_kwargs(4))
    assert attrs(w) == (None, None, None, None) and len(w.runs) == 1


def test_wrapping_something_without_generate_is_a_type_error(llama):
    with pytest.raises(TypeError, match="generate"):
        BenchmarkWrapper(llama.lm_head)  # a torch module without generate()
    with pytest.raises(TypeError, match="str"):
        BenchmarkWrapper("path/to/model")


def test_unknown_device_is_refused_with_what_to_do(prompt):
    from streambench.tiny import build_model, tiny_llama_config

    meta = build_model(tiny_llama_config()).to("meta")
    with pytest.raises(ValueError, match=r"'meta'.*Move the model"):
        BenchmarkWrapper(meta)
    model = build_model(tiny_llama_config())
    w = BenchmarkWrapper(model)
    w.generate(prompt, **gen_kwargs(3))
    model.to("meta")  # moved after wrapping: refused at the call, before generate() starts
    with pytest.raises(ValueError, match="Move the model"):
        w.generate(prompt, **gen_kwargs(3))
    assert attrs(w) == (None, None, None, None) and len(w.runs) == 1
    w2 = BenchmarkWrapper(model, device="cpu")  # explicit device: what the message suggests
    assert w2.streamer.device == "cpu"


def test_attributes_and_calls_are_forwarded(llama, prompt):
    w = BenchmarkWrapper(llama)
    assert w.config is llama.config and w.device == llama.device
    assert w.generation_config is llama.generation_config
    assert w.model is llama  # as in the original: .model is the wrapped model
    logits = w(prompt).logits
    assert logits.shape == (1, 12, llama.config.vocab_size)
    assert w.to("cpu") is w and w.eval() is w and w.float() is w
    assert w.num_parameters() == llama.num_parameters()
    w.some_flag = 3  # attributes that are not the wrapper's own go to the model
    assert llama.some_flag == 3
    del llama.some_flag
    assert "generate" in dir(w) and "first_cost" in dir(w) and "BenchmarkWrapper(" in repr(w)


def test_positional_generation_config(llama, prompt):
    from transformers import GenerationConfig

    cfg = GenerationConfig(max_new_tokens=5, min_new_tokens=5, do_sample=False, pad_token_id=0)
    w = BenchmarkWrapper(llama)
    w.generate(prompt, cfg)
    assert w.last_result.new_tokens == 5
    cfg.num_beams = 2
    w.generate(prompt, cfg)
    assert w.timed_by == "logits_processor" and w.last_result.new_tokens == 5


def test_verbose_prints_every_token(llama, prompt, capsys):
    w = BenchmarkWrapper(llama, verbose=True)
    w.generate(prompt, **gen_kwargs(5))
    out = lines(capsys)
    assert FIRST.match(out[0]) and REST.match(out[1])
    assert out[2].startswith("Peak memory for every token: [") and out[2].count(",") == 4
    assert len(out[3:]) == 5 and all(x.startswith(f"token {i}: ") for i, x in enumerate(out[3:], 1))
    assert any(x.endswith(" MiB") for x in out[3:])  # one line per token, latency and memory


def test_runs_stats_and_reset(llama, prompt):
    w = BenchmarkWrapper(llama)
    for _ in range(4):
        w.generate(prompt, **gen_kwargs(4))
    w.generate(prompt, num_beams=2, **gen_kwargs(4))
    assert len(w.runs) == 5 and isinstance(w.streamer, TimingStreamer)
    st = w.stats(warmup=2)
    assert (st.runs, st.incomplete, st.new_tokens) == (3, 0, 4)
    assert st.first_token_s.n == 3
    w.reset()
    assert w.runs == [] and w.first_cost is None


# The seed document's CPU example, verbatim (its "CPU Usage" section; chatglm-6b from the hub).
SEED_CPU_CODE = """import torch
from ipex_llm.transformers import AutoModel
from transformers import AutoTokenizer
from ipex_llm.utils import BenchmarkWrapper

model_path ='THUDM/chatglm-6b'
model = AutoModel.from_pretrained(model_path, trust_remote_code=True, load_in_4bit=True)
model = BenchmarkWrapper(model, do_print=True)
tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=True)
prompt = "今天睡不着怎么办"

with torch.inference_mode():
    input_ids = tokenizer.encode(prompt, return_tensors="pt")
    output = model.generate(input_ids, do_sample=False, max_new_tokens=32)
    output_str = tokenizer.decode(output[0], skip_special_tokens=True)
"""


def tiny_remote_code_model(path):
    """A tiny random Llama packaged as remote code like chatglm-6b (``AutoModel`` +
    ``trust_remote_code=True`` loads its causal-LM class); no EOS: always 32 new tokens."""
    import json

    from streambench.tiny import save_tiny_model

    folder = save_tiny_model(path, eos_token_id=None)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_tiny.TinyLlamaForCausalLM"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "modeling_tiny.py").write_text(
        "from transformers.models.llama import modeling_llama\n"
        "globals().update({k: v for k, v in vars(modeling_llama).items() if k[:2] != '__'})\n\n\n"
        "class TinyLlamaForCausalLM(modeling_llama.LlamaForCausalLM):\n    pass\n"
    )
    return folder


def run_seed_cpu_code(tmp_path, with_ipex_llm):
    """Run the seed's CPU code with only the import line(s) and the model path changed; returns
    (number of changed lines, printed lines)."""
    import difflib

    model = tiny_remote_code_model(tmp_path / "model")
    code = SEED_CPU_CODE.replace(
        "from ipex_llm.utils import BenchmarkWrapper", "from streambench import BenchmarkWrapper"
    ).replace("'THUDM/chatglm-6b'", repr(str(model)))
    if not with_ipex_llm:  # ipex-llm does not import on transformers >= 4.54: no int4 there
        code = code.replace("from ipex_llm.transformers import", "from transformers import")
        code = code.replace(", load_in_4bit=True", "")
    changed = [
        d
        for d in difflib.ndiff(SEED_CPU_CODE.splitlines(), code.splitlines())
        if d.startswith("+ ")
    ]
    script = tmp_path / "seed_cpu.py"
    script.write_text(code)
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf")}  # remote code is cached there
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=240, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return len(changed), [x for x in proc.stdout.splitlines() if x.startswith("=========")]


def test_the_seed_cpu_code_runs_with_the_import_line_changed(tmp_path):
    changed, out = run_seed_cpu_code(tmp_path, with_ipex_llm=False)
    assert changed == 4  # BenchmarkWrapper import, model path; AutoModel import, load_in_4bit
    assert len(out) == 2 and FIRST.match(out[0]) and REST.match(out[1]).group(2) == "31"


def run_example(name, *args, timeout=240):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.splitlines()


def test_seed_cpu_example_prints_the_two_lines():
    out = run_example("seed_cpu.py")
    found = [x for x in out if x.startswith("=========")]
    assert len(found) == 2 and FIRST.match(found[0]) and REST.match(found[1])
    assert REST.match(found[1]).group(2) == "31"


def test_seed_cpu_example_on_an_ordinary_llama_folder(tmp_path):
    """``seed_cpu.py MODEL_DIR`` with a plain Llama folder (no remote code): AutoModel would
    give the backbone, which cannot generate; the example loads the causal LM."""
    from streambench.tiny import save_tiny_model

    folder = save_tiny_model(tmp_path / "llama", eos_token_id=None)
    assert "auto_map" not in json.loads((folder / "config.json").read_text())
    found = [x for x in run_example("seed_cpu.py", str(folder)) if x.startswith("=========")]
    assert len(found) == 2 and FIRST.match(found[0]) and REST.match(found[1]).group(2) == "31"


def test_seed_gpu_example_runs_warmups_then_measured_runs():
    out = run_example("seed_gpu.py", "--max-new-tokens", "8")
    assert sum(1 for x in out if FIRST.match(x)) == 7  # 2 warm-ups + 5 measured runs
    tail = "\n".join(out[-6:])
    assert "5 measured runs" in tail and "median" in tail


@pytest.mark.distributed
@pytest.mark.slow
def test_deepspeed_autotp_example_two_ranks():
    """The seed's DeepSpeed AutoTP patch on 2 CPU ranks (gloo), launched with torchrun."""
    pytest.importorskip("deepspeed", reason="deepspeed not installed")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         str(ROOT / "examples" / "deepspeed_autotp.py"), "--n-predict", "6"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    out = proc.stdout.splitlines()
    seed = [x for x in out if x.startswith("=========")]
    assert len(seed) == 4 and all(FIRST.match(x) or REST.match(x) for x in seed)  # rank 0 only
    assert any(x.startswith("rank 0 of 2: first_cost") for x in out)
