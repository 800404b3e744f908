"""BenchmarkWrapper on a model loaded by ipex-llm in 4-bit (the seed's stack: transformers 4.37,
ipex-llm 2.2.0). Skipped where ipex-llm is not installed (it does not import on transformers >=
4.54); the nox session ``matrix(4.37-ipex-llm)`` installs it and runs this file."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ipex_transformers = pytest.importorskip(
    "ipex_llm.transformers",
    reason="ipex-llm not installed (nox -s 'matrix(4.37-ipex-llm)' installs it)",
)

from streambench import BenchmarkWrapper  # noqa: E402
from streambench.tiny import build_tokenizer, save_tiny_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIRST = re.compile(r"^=========First token cost \d+\.\d{4} s( and [\d.]+ GB)?=========$")
REST = re.compile(
    r"^=========Rest tokens cost average \d+\.\d{4} s \((\d+) tokens in all\)( and [\d.]+ GB)?"
    r"=========$"
)


@pytest.fixture(scope="module")
def int4_path(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama"), eos_token_id=None)


@pytest.fixture(scope="module")
def int4_model(int4_path):
    model = ipex_transformers.AutoModelForCausalLM.from_pretrained(
        str(int4_path), load_in_4bit=True
    )
    return model.eval()


def test_the_model_really_is_int4(int4_model):
    from ipex_llm.transformers.low_bit_linear import LowBitLinear

    assert isinstance(int4_model.lm_head, LowBitLinear)
    assert int4_model.lm_head.qtype is not None
    assert sum(isinstance(m, LowBitLinear) for m in int4_model.modules()) >= 8


def test_wrapper_on_int4_greedy(int4_model, capsys):
    ids = build_tokenizer()("今天睡不着怎么办", return_tensors="pt").input_ids
    expected = int4_model.generate(ids, do_sample=False, max_new_tokens=8)
    capsys.readouterr()
    model = BenchmarkWrapper(int4_model, do_print=True)
    out = model.generate(ids, do_sample=False, max_new_tokens=8)
    assert torch.equal(out, expected)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and FIRST.match(lines[0]) and REST.match(lines[1]).group(1) == "7"
    assert model.timed_by == "streamer" and model.last_result.new_tokens == 8
    assert model.first_cost > 0 and model.rest_cost_mean > 0 and model.peak_memory > 0
    assert model.encoder_time is None


def test_wrapper_on_int4_beam_search(int4_model):
    ids = torch.randint(3, 259, (1, 10))
    model = BenchmarkWrapper(int4_model)
    out = model.generate(ids, num_beams=2, do_sample=False, max_new_tokens=5, min_new_tokens=5)
    assert model.timed_by == "logits_processor"
    assert model.last_result.new_tokens == out.shape[-1] - 10 == 5
    assert model.first_cost > 0 and model.rest_cost_mean > 0


def test_seed_cpu_example_on_ipex_llm_int4():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "seed_cpu.py")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sym_int4" in proc.stderr  # ipex-llm logs the conversion
    lines = [x for x in proc.stdout.splitlines() if x.startswith("=========")]
    assert len(lines) == 2 and FIRST.match(lines[0]) and REST.match(lines[1]).group(1) == "31"


def test_the_seed_cpu_code_verbatim_but_the_import_line(tmp_path):
    """The seed's CPU code on its own stack (ipex-llm int4, transformers 4.37): only the
    BenchmarkWrapper import line and the model path differ from the seed document."""
    from test_wrapper import run_seed_cpu_code

    changed, lines = run_seed_cpu_code(tmp_path, with_ipex_llm=True)
    assert changed == 2
    assert len(lines) == 2 and FIRST.match(lines[0]) and REST.match(lines[1]).group(1) == "31"
