"""``run --interleave`` with worker processes (issue 28): one worker per configuration, forked
from its model's warm process, all alive, one trial of each in turn (A1 B1 A2 B2 …); each
configuration's peak is still its own process's; a worker that cannot be forked is a fresh one
in the same rotation; a killed worker costs its row only; an interrupted rotation keeps every
row and leaves no process behind. Real processes, tiny models made in the test."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_warm_start import ENV, THREADED, gone, parent_of, remote_model, rows, sb, wait_gone

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork, /proc")

#: a model that hangs in the prefill of a 12-token prompt, once its worker wrote its pid there
HANG_AT_12 = """
import os, time
from transformers import LlamaForCausalLM

class HangAt12(LlamaForCausalLM):
    def forward(self, input_ids=None, **kwargs):
        if input_ids is not None and input_ids.shape[-1] == 12:
            with open({mark!r} + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.replace({mark!r} + ".tmp", {mark!r})
            time.sleep(3600)
        return super().forward(input_ids=input_ids, **kwargs)
"""


def rotation(entries: list[dict]) -> list[int]:
    """The configurations' indices in the order their trials started."""
    starts = [e["interference"]["trial_started_at"] for e in entries]
    return [c for _, c in sorted((t, c) for c, s in enumerate(starts) for t in s)]


@linux
def test_interleave_forks_a_worker_per_configuration_in_rotation(tmp_path):
    """Two loads (dtype axis) x two lengths: four workers, two warm processes (one load each),
    the trials in rotation; batch 1's peak is its own (a batch-32 configuration of the same
    rotation does not raise it), as in a fresh process."""
    proc = sb("run", "--in-out", "8-4,12-4", "--dtype", "float32,bfloat16", "--trials", "2",
              "--warmup", "1", "--interleave", "-o", "i.json", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "i.json").read_text())
    entries = doc["configurations"]
    assert doc["settings"]["isolate"] == "config" and doc["settings"]["interleave"] is True
    assert [e["status"] for e in entries] == ["ok"] * 4
    assert rotation(entries) == [0, 1, 2, 3, 0, 1, 2, 3]
    iso = [e["isolation"] for e in entries]
    assert {i["start"] for i in iso} == {"fork"}
    assert len({i["worker_pid"] for i in iso}) == 4
    loaders = [i["model_loaded_by_pid"] for i in iso]
    assert loaders[0] == loaders[1] != loaders[2] == loaders[3]  # one load per model load

    args = ["--in-out", "256-32", "--warmup", "0", "--trials", "2"]
    alone = sb("run", *args, "--isolate", "fresh", "-o", "a.json", cwd=tmp_path)
    mixed = sb("run", *args, "--batch-size", "32,1", "--interleave", "-o", "m.json", cwd=tmp_path)
    assert alone.returncode == 0 and mixed.returncode == 0, alone.stderr + mixed.stderr
    (one,) = rows(tmp_path / "a.json")
    big, small = rows(tmp_path / "m.json")
    assert rotation([big, small]) == [0, 1, 0, 1]
    peak = [e["aggregates"]["peak_memory_bytes"] for e in (one, big, small)]
    assert peak[1] > peak[2] * 1.02, peak
    assert abs(peak[2] - peak[0]) / peak[0] <= 0.02, peak


@linux
def test_workers_the_warm_process_cannot_fork_join_the_rotation_fresh(tmp_path):
    model = remote_model(tmp_path, "ThreadedLlama", THREADED)
    env = {**ENV, "HF_HOME": str(tmp_path / "hf")}  # remote code is copied under HF_HOME
    proc = sb("run", str(model), "--trust-remote-code", "--in-out", "8-4,12-4", "--trials", "2",
              "--warmup", "0", "--interleave", "-o", "r.json", cwd=tmp_path, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    entries = rows(tmp_path / "r.json")
    assert [e["status"] for e in entries] == ["ok", "ok"]
    assert [e["isolation"]["start"] for e in entries] == ["fresh", "fresh"]
    assert rotation(entries) == [0, 1, 0, 1]
    assert "a fork is not safe" in proc.stdout + proc.stderr


def test_interleave_falls_back_to_this_process_where_workers_cannot_fork():
    """Where no worker could be forked (here: a --low-bit variant), --interleave runs in this
    process, and says why when --isolate config was asked; --isolate fresh/model are refused."""
    import torch

    from streambench.errors import UsageError
    from streambench.runners.local.rotation import check_isolation
    from streambench.spec.run import SweepSettings

    cpu = torch.device("cpu")
    plain = SweepSettings(models=[], in_out=[(8, 4), (12, 4)], batch_sizes=[1], interleave=True)
    expected = "config" if sys.platform.startswith("linux") else "none"
    assert check_isolation(plain, "config", cpu) == expected
    assert check_isolation(plain, "none", cpu) == "none"
    quantized = SweepSettings(
        models=[], in_out=[(8, 4)], batch_sizes=[1], interleave=True,
        variants=[{}, {"low_bit": "int8_weight_only"}],
    )  # fmt: skip
    said: list[str] = []
    assert check_isolation(quantized, "config", cpu, said.append) == "none"
    assert len(said) == 1 and "--interleave runs in this process" in said[0]
    for asked in ("fresh", "model"):
        with pytest.raises(UsageError, match=f"does not combine with --isolate {asked}"):
            check_isolation(plain, asked, cpu)


def _start(tmp_path: Path, model: Path, *extra: str) -> tuple[subprocess.Popen, Path]:
    err = tmp_path / "stderr.txt"
    with err.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streambench", "run", str(model), "--trust-remote-code",
             "--in-out", "8-4,12-4,16-4", "--warmup", "0", "--interleave", *extra,
             "-o", "r.json"],
            stdout=subprocess.DEVNULL, stderr=stderr, cwd=tmp_path,
            env={**ENV, "HF_HOME": str(tmp_path / "hf")},
        )  # fmt: skip
    return proc, err


def _hung_worker(proc: subprocess.Popen, mark: Path, err: Path) -> int:
    limit = time.monotonic() + 300
    while not mark.exists():
        assert time.monotonic() < limit and proc.poll() is None, err.read_text()
        time.sleep(0.05)
    return int(mark.read_text())


@linux
def test_a_killed_worker_costs_its_row_and_the_rotation_goes_on(tmp_path):
    mark = tmp_path / "worker.pid"
    model = remote_model(tmp_path, "HangAt12", HANG_AT_12.format(mark=str(mark)))
    proc, err = _start(tmp_path, model, "--trials", "3")
    try:
        worker = _hung_worker(proc, mark, err)
        os.kill(worker, signal.SIGKILL)  # as the OOM killer would
        code = proc.wait(300)
    finally:
        proc.kill()
        proc.wait()
    entries = rows(tmp_path / "r.json")
    assert code == 1, err.read_text()  # a failed row: exit 1
    assert [e["status"] for e in entries] == ["ok", "failed", "ok"]
    assert entries[1]["error"] == "worker killed by SIGKILL (out of memory?)"
    assert [len(e["trials"]) for e in (entries[0], entries[2])] == [3, 3]
    assert rotation([entries[0], entries[2]]) == [0, 1, 0, 1, 0, 1]


@linux
def test_an_interrupted_rotation_keeps_every_row_and_leaves_no_process(tmp_path):
    mark = tmp_path / "worker.pid"
    model = remote_model(tmp_path, "HangAt12", HANG_AT_12.format(mark=str(mark)))
    proc, err = _start(tmp_path, model, "--trials", "3")
    worker = zygote = 0
    try:
        worker = _hung_worker(proc, mark, err)
        zygote = parent_of(worker)
        assert parent_of(zygote) == proc.pid  # sweep -> warm process -> workers
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(120)
        assert wait_gone(worker, 10) and wait_gone(zygote, 10)
    finally:
        proc.kill()
        proc.wait()
        for pid in (worker, zygote):
            if pid and not gone(pid):
                os.kill(pid, signal.SIGKILL)  # never leave one behind
    assert code == 143, err.read_text()
    entries = rows(tmp_path / "r.json")
    assert [e["status"] for e in entries] == ["interrupted"] * 3
    assert all("SIGTERM" in e["error"] for e in entries)
    for e in entries:  # every worker of the rotation has gone with the sweep
        assert wait_gone(e["isolation"]["worker_pid"], 10), e["isolation"]
    assert "Traceback" not in err.read_text()
