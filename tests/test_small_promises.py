"""Small wrong behaviours of issue 21 (item 19), each held: a stray ``put()`` after ``end()``
starts no run; ``stats(warmup=0.5)`` names ``warmup``; ``--resume`` on another command's file says
so; ``compare`` shows a finite 1e308 truthfully; a run cut short of its forced tokens (``max_time``
or any other cause) is not ``ok``. Real tiny models, real processes for the commands."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import gen_kwargs

from streambench import BenchmarkWrapper, TimingStreamer
from streambench.cli.run import main
from streambench.results.values import Overflowed, fmt, scaled
from streambench.tiny import save_tiny_model

FIXTURES = Path(__file__).parent / "fixtures"
ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "HF_HUB_OFFLINE": "1", "COLUMNS": "250"}


def sb(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streambench", *args],
        capture_output=True, text=True, env=env or ENV, cwd=cwd, timeout=600,
    )  # fmt: skip


# -- a stray put() ---------------------------------------------------------------------------
def test_a_token_put_after_end_is_ignored_with_a_warning(llama, prompt):
    s = TimingStreamer(device="cpu")
    llama.generate(prompt, streamer=s, **gen_kwargs(5))
    with pytest.warns(RuntimeWarning, match=r"put\(\) of a token while no generate\(\)"):
        s.put(torch.tensor([9]))
    assert len(s.runs) == 1
    assert s.summary().new_tokens == 5 and s.summary().complete  # not a bogus empty run
    assert s.stats().runs == 1
    llama.generate(prompt, streamer=s, **gen_kwargs(3))  # the next generate() is its own run
    assert [(r.new_tokens, r.complete) for r in s.runs] == [(5, True), (3, True)]


def test_a_token_put_before_any_prompt_starts_no_run():
    s = TimingStreamer(device="cpu")
    with pytest.warns(RuntimeWarning, match="after end"):
        s.put(torch.tensor([1, 2]))
    assert s.runs == []
    with pytest.raises(RuntimeError, match="no generate"):  # not NoTokensError's beam search
        s.summary()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s.put(torch.zeros((0,), dtype=torch.long))  # an empty put stays silent


# -- stats(warmup=) ----------------------------------------------------------------------------
@pytest.mark.parametrize("warmup", [0.5, 1.0, True, "1", None])
def test_stats_warmup_must_be_a_whole_number(llama, prompt, warmup):
    w = BenchmarkWrapper(llama)
    for _ in range(2):
        w.generate(prompt, **gen_kwargs(3))
    for stats in (w.stats, w.streamer.stats):
        with pytest.raises(TypeError, match=r"warmup is a number of runs .* got"):
            stats(warmup=warmup)
    assert w.stats(warmup=np.int64(1)).runs == 1  # a NumPy integer is a whole number


# -- --resume across commands -------------------------------------------------------------------
@pytest.mark.parametrize(
    "fixture, command, wrote",
    [("results-v1.json", "endpoint", "run"), ("results-v1-endpoint.json", "run", "endpoint")],
)
def test_resume_from_another_commands_file_says_so(tmp_path, fixture, command, wrote):
    target = tmp_path / "r.json"
    shutil.copy(FIXTURES / fixture, target)
    before = target.read_bytes()
    args = ["http://127.0.0.1:9/v1", "--model", "m"] if command == "endpoint" else []
    proc = sb(command, *args, "--in-out", "4-2", "--resume", "-o", str(target), cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"holds results of 'streambench {wrote}', not of 'streambench {command}'" in lines[0]
    assert target.read_bytes() == before


# -- compare: numbers shown as they are ---------------------------------------------------------
def test_scaled_values_beyond_a_float_are_shown_truthfully():
    big = scaled(1e308, 1e3)
    assert isinstance(big, Overflowed) and big == float("inf")  # computes as it overflowed
    assert fmt(big, 2) == "1.00e+311" and fmt(scaled(-1e308, 1e3), 1) == "-1.0e+311"
    assert fmt(1e308, 3) == "1.000e+308" and fmt(123456.789, 1) == "123456.8"
    assert fmt(float("inf")) == "inf" and fmt(float("nan")) == ""


def test_compare_shows_a_finite_1e308_as_a_number_not_inf(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    doc = json.loads((FIXTURES / "results-v1.json").read_text())
    doc["configurations"][0]["aggregates"]["first_token_s"]["median"] = 1e308
    new = tmp_path / "new.json"
    new.write_text(json.dumps(doc))
    md = tmp_path / "c.md"
    code = main(["compare", str(FIXTURES / "results-v1.json"), str(new), "-o", str(md)])
    out = capsys.readouterr().out
    assert code == 1  # a regression (by far)
    assert "1.00e+311" in out and "inf" not in out.lower(), out
    assert "1.000e+311" in md.read_text() and "inf" not in md.read_text().lower()


# -- a run cut short of its forced tokens ---------------------------------------------------------
SHORT = """
from transformers import LlamaForCausalLM

class ShortLlama(LlamaForCausalLM):
    def generate(self, *args, **kwargs):
        kwargs["max_time"] = 0.0  # as --generate-kwargs '{"max_time": ...}' would, or any cut
        return super().generate(*args, **kwargs)
"""


@pytest.fixture(scope="module")
def short_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("short") / "short"
    save_tiny_model(path, "llama")
    (path / "short.py").write_text(SHORT)
    config = json.loads((path / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "short.ShortLlama"}
    (path / "config.json").write_text(json.dumps(config))
    return path


def test_max_time_in_generate_kwargs_makes_the_configuration_incomplete(tmp_path):
    proc = sb("run", "--in-out", "4-16", "--warmup", "0", "--trials", "2", "--isolate", "none",
              "--generate-kwargs", '{"max_time": 0.0}', "-o", "r.json", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    (entry,) = json.loads((tmp_path / "r.json").read_text())["configurations"]
    assert entry["status"] == "failed", entry["status"]
    assert entry["error"].startswith("incomplete: 2 of 2 runs"), entry["error"]
    assert "the 16 forced tokens (the shortest: 1 of 16)" in entry["error"]
    assert "max_time" in entry["error"] and "incomplete" in proc.stderr


@pytest.mark.parametrize(
    "extra", [["--in-out", "4-16"], ["--in-out", "8-16", "--length-spread", "0.5"]],
    ids=["fixed", "workload"],
)  # fmt: skip
def test_a_run_cut_short_by_any_cause_is_incomplete(tmp_path, short_model, extra):
    env = {**ENV, "HF_HOME": str(tmp_path / "hf")}  # remote code is copied under HF_HOME
    args = [str(short_model), "--trust-remote-code", *extra, "--warmup", "1", "--trials", "1"]
    proc = sb("run", *args, "--isolate", "none", "-o", "r.json", cwd=tmp_path, env=env)
    assert proc.returncode == 1, proc.stderr
    (entry,) = json.loads((tmp_path / "r.json").read_text())["configurations"]
    assert entry["status"] == "failed" and entry["error"].startswith("incomplete: 2 of 2 runs")
    assert "incomplete" in proc.stderr


def test_a_library_keyboardinterrupt_after_a_sigterm_exits_143_not_130():
    """Ray's C code raises its own KeyboardInterrupt where the policy's handler raised
    Interrupted(SIGTERM) (the CI race of test_ray): the exit code still names the SIGTERM the
    policy received; with no signal received a plain KeyboardInterrupt is Ctrl-C (130)."""
    import signal

    from streambench.errors import Interrupted, SignalPolicy, interrupted_exit_code

    assert interrupted_exit_code(KeyboardInterrupt()) == 130
    with SignalPolicy() as policy:
        assert interrupted_exit_code(KeyboardInterrupt()) == 130
        try:
            signal.raise_signal(signal.SIGTERM)
        except Interrupted:
            pass
        assert policy.first == signal.SIGTERM
        assert interrupted_exit_code(KeyboardInterrupt()) == 143  # as a library re-raised it
        assert interrupted_exit_code(Interrupted(signal.SIGHUP)) == 129  # its own signal wins
    assert interrupted_exit_code(KeyboardInterrupt()) == 130  # the policy is gone
