"""``run --isolate config``'s warm start (issue 28): each configuration's worker is forked from a
warm process that imported torch and loaded the model once (CPU, transformers), its peak memory
is its own (a big configuration before a small one does not raise the small one's peak, which
matches a fresh process's), a warm process that could not fork safely hands over to fresh
processes, and an interrupted or SIGKILLed sweep takes the whole tree (warm process and worker)
with it. Real processes, tiny models made in the test."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streambench.tiny import save_tiny_model

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork, /proc")
ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "HF_HUB_OFFLINE": "1", "COLUMNS": "120"}
FAST = ["--warmup", "0", "--trials", "1"]

#: a model whose load starts a thread (as a thread pool would): the warm process must not fork
THREADED = """
import threading, time
from transformers import LlamaForCausalLM

class ThreadedLlama(LlamaForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
"""

#: a model that writes its worker's pid once, then hangs in its forward
HUNG = """
import os, time
from transformers import LlamaForCausalLM

class HungLlama(LlamaForCausalLM):
    def forward(self, *args, **kwargs):
        if not os.path.exists({mark!r}):
            with open({mark!r} + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.replace({mark!r} + ".tmp", {mark!r})
        time.sleep(3600)
        return super().forward(*args, **kwargs)
"""


def sb(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streambench", *args],
        capture_output=True, text=True, env=env or ENV, cwd=cwd, timeout=900,
    )  # fmt: skip


def remote_model(root: Path, name: str, code: str) -> Path:
    path = root / name.lower()
    save_tiny_model(path, "llama", max_position_embeddings=64)
    (path / "remote.py").write_text(code)
    config = json.loads((path / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": f"remote.{name}"}
    (path / "config.json").write_text(json.dumps(config))
    return path


def rows(path: Path) -> list[dict]:
    return json.loads(path.read_text())["configurations"]


def gone(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return "\nState:\tZ" in status


def wait_gone(pid: int, within_s: float) -> bool:
    limit = time.monotonic() + within_s
    while time.monotonic() < limit and not gone(pid):
        time.sleep(0.05)
    return gone(pid)


def parent_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(x for x in status.splitlines() if x.startswith("PPid:")).split()[1])


@linux
def test_a_forked_configurations_peak_is_its_own_and_the_model_loads_once(tmp_path):
    args = ["--in-out", "256-32", *FAST]
    fresh = sb(
        "run", *args, "--batch-size", "1", "--isolate", "fresh", "-o", "f.json", cwd=tmp_path
    )
    assert fresh.returncode == 0, fresh.stderr
    warm = sb("run", *args, "--batch-size", "32,1", "-o", "w.json", cwd=tmp_path)  # the default
    assert warm.returncode == 0, warm.stderr
    (alone,) = rows(tmp_path / "f.json")
    big, small = rows(tmp_path / "w.json")
    assert json.loads((tmp_path / "w.json").read_text())["settings"]["isolate"] == "config"
    # fresh: a process of its own that loaded the model itself
    assert alone["isolation"]["start"] == "fresh"
    assert alone["isolation"]["worker_pid"] == alone["isolation"]["model_loaded_by_pid"]
    # warm: two workers, one load (by the warm process, which is neither worker)
    loaders = {e["isolation"]["model_loaded_by_pid"] for e in (big, small)}
    workers = {e["isolation"]["worker_pid"] for e in (big, small)}
    assert [e["isolation"]["start"] for e in (big, small)] == ["fork", "fork"]
    assert len(loaders) == 1 and len(workers) == 2 and not loaders & workers
    # batch 32 needs far more memory; batch 1 after it reads as batch 1 alone in a fresh process
    peak = [e["aggregates"]["peak_memory_bytes"] for e in (alone, big, small)]
    assert peak[1] > peak[2] * 1.02, peak
    assert abs(peak[2] - peak[0]) / peak[0] <= 0.02, peak
    # and so does the memory before the trials (the file pages a fresh process maps: .resident)
    before = [e["memory"]["rss_before_trials_bytes"] for e in (alone, small)]
    assert abs(before[1] - before[0]) / before[0] <= 0.02, before


@linux
def test_a_warm_process_that_cannot_fork_safely_hands_over_to_fresh_processes(tmp_path):
    model = remote_model(tmp_path, "ThreadedLlama", THREADED)
    env = {**ENV, "HF_HOME": str(tmp_path / "hf")}  # remote code is copied under HF_HOME
    proc = sb("run", str(model), "--trust-remote-code", "--in-out", "8-4,12-4", *FAST,
              "--isolate", "config", "-o", "r.json", cwd=tmp_path, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    entries = rows(tmp_path / "r.json")
    assert [e["status"] for e in entries] == ["ok", "ok"]
    assert [e["isolation"]["start"] for e in entries] == ["fresh", "fresh"]
    assert "workers start as fresh processes from here on" in proc.stdout + proc.stderr
    assert "a fork is not safe" in proc.stdout + proc.stderr


def test_engines_and_devices_not_shown_fork_safe_get_a_fresh_process():
    from streambench.engines import DEFAULT_ENGINE, engine_names
    from streambench.runners.local.warm import fork_refusal
    from streambench.spec.run import SweepSettings

    settings = SweepSettings(models=[], in_out=[(8, 4)], batch_sizes=[1])
    default = settings.variants[0]
    expected = None if sys.platform.startswith("linux") else "measured on Linux only"
    assert fork_refusal(settings, default, "cpu") == expected
    if expected is None:
        assert "not measured here" in str(fork_refusal(settings, default, "cuda:0"))
    others = [name for name in engine_names() if name != DEFAULT_ENGINE]
    assert others  # openvino-genai, llama.cpp, ...: installed or not, the answer is fresh
    for name in others:
        assert fork_refusal(settings, {**default, "engine": name}, "cpu") is not None, name


@linux
@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT"])
def test_an_ended_sweep_takes_the_warm_process_and_its_worker_with_it(tmp_path, how):
    mark = tmp_path / "worker.pid"
    model = remote_model(tmp_path, "HungLlama", HUNG.format(mark=str(mark)))
    err = tmp_path / "stderr.txt"
    with err.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streambench", "run", str(model), "--trust-remote-code",
             "--in-out", "8-4,12-4", *FAST, "--isolate", "config", "-o", "r.json"],
            stdout=subprocess.DEVNULL, stderr=stderr, cwd=tmp_path,
            env={**ENV, "HF_HOME": str(tmp_path / "hf")},
        )  # fmt: skip
    worker = zygote = 0
    try:
        limit = time.monotonic() + 300
        while not mark.exists():
            assert time.monotonic() < limit and proc.poll() is None, err.read_text()
            time.sleep(0.05)
        worker = int(mark.read_text())
        zygote = parent_of(worker)
        assert zygote != proc.pid and parent_of(zygote) == proc.pid  # sweep -> warm -> worker
        proc.send_signal(getattr(signal, how))
        code = proc.wait(120)
        assert wait_gone(worker, 10), f"worker {worker} outlived the {how} sweep"
        assert wait_gone(zygote, 10), f"warm process {zygote} outlived the {how} sweep"
    finally:
        proc.kill()
        proc.wait()
        for pid in (worker, zygote):
            if pid and not gone(pid):
                os.kill(pid, signal.SIGKILL)  # never leave one behind
    if how == "SIGINT":
        assert code == 130, err.read_text()
        (entry,) = rows(tmp_path / "r.json")
        assert entry["status"] == "interrupted"
    assert "Traceback" not in err.read_text()
