"""``--threads N`` (issue 24): checked before anything loads, applied in the process that loads
the model (an ``--isolate`` worker), recorded per configuration and in the settings.

The proof that the worker really computed with N threads does not come from streambench: the
tiny model's own code (a local folder loaded with ``--trust-remote-code``) writes
``torch.get_num_threads()`` and its process id from inside every ``forward()``.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streambench import tiny

ROOT = Path(__file__).resolve().parent.parent
CPUS = os.cpu_count() or 1

PROBE = """\
import os

import torch
from transformers import LlamaForCausalLM


class ProbeLlama(LlamaForCausalLM):
    def forward(self, *args, **kwargs):
        with open(os.environ["THREADS_PROBE"], "a") as f:
            f.write(f"{os.getpid()} {torch.get_num_threads()}\\n")
        return super().forward(*args, **kwargs)
"""


def probe_model(path: Path) -> Path:
    """A tiny Llama whose ``forward()`` (the folder's own code) logs its process and torch's
    thread count to ``$THREADS_PROBE``."""
    tiny.save_tiny_model(path)
    cfg_path = path / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["auto_map"] = {"AutoModelForCausalLM": "modeling_probe.ProbeLlama"}
    cfg_path.write_text(json.dumps(cfg))
    (path / "modeling_probe.py").write_text(PROBE)
    return path


def cli(tmp_path: Path, *args: object, probe: Path | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    env["HF_MODULES_CACHE"] = str(tmp_path / "modules")
    if probe is not None:
        env["THREADS_PROBE"] = str(probe)
    return subprocess.Popen(
        [sys.executable, "-m", "streambench", "run", *map(str, args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("value", "why"),
    [("0", "out of range"), (str(CPUS + 1), "out of range"), ("two", "not a whole number")],
)
def test_threads_outside_the_machine_is_refused_before_anything_loads(tmp_path, value, why):
    proc = cli(tmp_path, "--threads", value, "-o", tmp_path / "out.json")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    line = err.strip()
    assert len(line.splitlines()) == 1 and line.count("--threads") == 1, line
    assert why in line and f"this machine has {CPUS} CPUs" in line, line
    assert not (tmp_path / "out.json").exists()


def test_threads_config_key_is_checked_too(tmp_path):
    (tmp_path / "c.yaml").write_text(f"threads: {CPUS + 5}\n")
    proc = cli(tmp_path, "--config", tmp_path / "c.yaml")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    assert "key 'threads'" in err and "out of range" in err, err


def test_the_worker_computes_with_the_threads_asked_and_the_row_says_so(tmp_path):
    model = probe_model(tmp_path / "probe")
    probe = tmp_path / "probe.log"
    # 1 thread: not torch's default on a machine with 2 or more CPUs (what the test must tell
    # apart), and the only valid value on a 1-CPU machine
    proc = cli(tmp_path, model, "--trust-remote-code", "--threads", "1", "--isolate", "config",
               "--in-out", "4-3", "--warmup", "0", "--trials", "2", "--batch-size", "1",
               "-o", tmp_path / "out.json", "-o", tmp_path / "out.csv", probe=probe)  # fmt: skip
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    seen = [line.split() for line in probe.read_text().splitlines()]
    assert len(seen) >= 2 * 3, seen  # every forward of both trials (and none missing)
    pids = {pid for pid, _ in seen}
    assert str(proc.pid) not in pids and len(pids) == 1, (proc.pid, pids)  # in the worker
    assert {n for _, n in seen} == {"1"}, seen

    doc = json.loads((tmp_path / "out.json").read_text())
    assert doc["settings"]["threads"] == 1
    [entry] = doc["configurations"]
    assert entry["status"] == "ok"
    assert entry["execution"] == {
        "engine": "transformers",
        "threads": 1,
        "threads_asked": 1,
        "weight_format": "float32",
        "compute_precision": "float32",
    }
    [row] = list(csv.DictReader((tmp_path / "out.csv").open()))
    assert (row["threads"], row["weight format"], row["compute precision"]) == (
        "1",
        "float32",
        "float32",
    )


def test_without_threads_the_row_records_torchs_own_count(tmp_path):
    model = tiny.save_tiny_model(tmp_path / "m")
    proc = cli(tmp_path, model, "--isolate", "none", "--in-out", "4-2", "--warmup", "0",
               "--trials", "1", "-o", tmp_path / "out.json")  # fmt: skip
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    doc = json.loads((tmp_path / "out.json").read_text())
    assert doc["settings"]["threads"] is None
    execution = doc["configurations"][0]["execution"]
    assert execution["threads_asked"] is None
    assert isinstance(execution["threads"], int) and 1 <= execution["threads"] <= CPUS
