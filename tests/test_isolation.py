"""``streambench run --isolate``: each configuration (or model) in a worker process. A worker that
dies becomes a failed row naming the cause and the sweep goes on; numbers do not depend on what
ran before; signals reach the worker and finished rows are kept. Real processes, tiny models
made in the test (a remote-code model that kills its own process on a chosen batch size)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streambench.tiny import save_tiny_model

ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "HF_HUB_OFFLINE": "1", "COLUMNS": "120"}
FAST = ["--warmup", "0", "--trials", "1"]

KILLER = """
import os, signal
from transformers import LlamaForCausalLM

class KillerLlama(LlamaForCausalLM):
    def forward(self, input_ids=None, **kwargs):
        if input_ids is not None and input_ids.shape[0] == {batch}:
            os.kill(os.getpid(), signal.{signal})
        return super().forward(input_ids=input_ids, **kwargs)
"""


def sb(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streambench", *args],
        capture_output=True, text=True, env=env or ENV, cwd=cwd, timeout=600,
    )  # fmt: skip


def killer_model(root: Path, batch: int, sig: str) -> Path:
    path = root / f"killer-{sig.lower()}"
    save_tiny_model(path, "llama", max_position_embeddings=64)
    (path / "killer.py").write_text(KILLER.format(batch=batch, signal=sig))
    config = json.loads((path / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "killer.KillerLlama"}
    (path / "config.json").write_text(json.dumps(config))
    return path


@pytest.fixture
def env(tmp_path) -> dict:
    return {**ENV, "HF_HOME": str(tmp_path / "hf")}  # remote code is copied under HF_HOME


@pytest.mark.parametrize(
    "isolate, sig, cause",
    [
        ("config", "SIGKILL", "worker killed by SIGKILL (out of memory?)"),
        ("config", "SIGSEGV", "worker killed by SIGSEGV"),
        ("model", "SIGKILL", "worker killed by SIGKILL (out of memory?)"),
    ],
)
def test_a_worker_that_dies_is_a_failed_row_and_the_sweep_goes_on(
    tmp_path, env, isolate, sig, cause
):
    model = killer_model(tmp_path, 2, sig)
    proc = sb("run", str(model), "--trust-remote-code", "--in-out", "8-4", "--batch-size", "1,2,3",
              "--isolate", isolate, *FAST, "-o", "r.json", cwd=tmp_path, env=env)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["settings"]["isolate"] == isolate
    rows = [(e["settings"]["batch_size"], e["status"], e["error"]) for e in doc["configurations"]]
    assert rows[0][:2] == (1, "ok") and rows[2][:2] == (3, "ok"), rows
    assert rows[1] == (2, "failed", cause), rows
    assert cause in proc.stderr


def test_without_isolation_the_same_crash_ends_the_sweep(tmp_path, env):
    model = killer_model(tmp_path, 2, "SIGKILL")
    proc = sb("run", str(model), "--trust-remote-code", "--in-out", "8-4", "--batch-size", "1,2,3",
              "--isolate", "none", *FAST, "-o", "r.json", cwd=tmp_path, env=env)  # fmt: skip
    assert proc.returncode == -9
    doc = json.loads((tmp_path / "r.json").read_text())
    assert [e["settings"]["batch_size"] for e in doc["configurations"]] == [1]


def test_peak_memory_does_not_depend_on_what_ran_before(tmp_path):
    def peak_of_batch_1(*batches: str) -> int:
        out = tmp_path / f"r{'-'.join(batches)}.json"
        proc = sb("run", "--in-out", "256-32", "--batch-size", ",".join(batches), *FAST,
                  "--isolate", "config", "-o", str(out), cwd=tmp_path)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        entries = json.loads(out.read_text())["configurations"]
        (bs1,) = [e for e in entries if e["settings"]["batch_size"] == 1]
        return bs1["aggregates"]["peak_memory_bytes"]

    alone = peak_of_batch_1("1")
    after_big = peak_of_batch_1("32", "1")
    assert abs(after_big - alone) / alone <= 0.02, (alone, after_big)


def test_isolation_under_a_launcher_is_refused_or_off(tmp_path):
    env = {**ENV, "WORLD_SIZE": "2", "RANK": "0"}
    proc = sb("run", "--in-out", "4-2,8-2", "--isolate", "config", *FAST, cwd=tmp_path, env=env)
    assert proc.returncode == 2, proc.stderr
    assert "--isolate config does not work under torchrun/deepspeed" in proc.stderr


def test_a_single_configuration_runs_in_process_by_default(tmp_path):
    proc = sb("run", "--in-out", "4-2", *FAST, "-o", "r.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "r.json").read_text())["settings"]["isolate"] == "none"
