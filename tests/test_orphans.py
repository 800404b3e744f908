"""Workers die with their parent, quietly (issue 21, item 11): a SIGKILLed ``run --isolate``
takes its worker with it — a busy one (that would write to the broken pipe) and a hung one (stuck
where no Python check runs) — with no traceback; a worker whose parent died before it could tie
itself leaves at once; one whose results reader has gone leaves quietly. Real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streambench.runners.orphan import EXIT_ORPHANED
from streambench.tiny import save_tiny_model

WORKER = "streambench.runners.local.worker"
ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "HF_HUB_OFFLINE": "1", "COLUMNS": "120"}

#: a model that writes its worker's pid once, then is slow (keeps emitting) or hangs
MODEL = """
import os, time
from transformers import LlamaForCausalLM

class MarkedLlama(LlamaForCausalLM):
    def forward(self, *args, **kwargs):
        if not os.path.exists({mark!r}):
            with open({mark!r} + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.replace({mark!r} + ".tmp", {mark!r})
        time.sleep({sleep})
        return super().forward(*args, **kwargs)
"""


def gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie nobody reaped yet has ended too)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return "\nState:\tZ" in status


def wait_gone(pid: int, within_s: float) -> bool:
    limit = time.monotonic() + within_s
    while time.monotonic() < limit:
        if gone(pid):
            return True
        time.sleep(0.05)
    return gone(pid)


def wait_for(path: Path, within_s: float) -> str:
    limit = time.monotonic() + within_s
    while not path.exists():
        assert time.monotonic() < limit, f"{path} did not appear within {within_s} s"
        time.sleep(0.05)
    return path.read_text()


def marked_model(root: Path, sleep: float) -> Path:
    path = root / "marked"
    save_tiny_model(path, "llama", max_position_embeddings=128)
    (path / "marked.py").write_text(MODEL.format(mark=str(root / "worker.pid"), sleep=sleep))
    config = json.loads((path / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "marked.MarkedLlama"}
    (path / "config.json").write_text(json.dumps(config))
    return path


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sleep", [0.01, 3600.0], ids=["busy", "hung"])
def test_a_sigkilled_run_takes_its_worker_with_it_quietly(tmp_path, sleep):
    model = marked_model(tmp_path, sleep)
    err = tmp_path / "stderr.txt"
    with err.open("w") as stderr:  # the worker inherits it: its traceback would land here
        proc = subprocess.Popen(
            [sys.executable, "-m", "streambench", "run", str(model), "--trust-remote-code",
             "--in-out", "8-64", "--batch-size", "1,2", "--warmup", "0", "--trials", "50",
             "--isolate", "config", "-o", "r.json"],
            stdout=subprocess.DEVNULL, stderr=stderr, cwd=tmp_path,
            env={**ENV, "HF_HOME": str(tmp_path / "hf")},
        )  # fmt: skip
    try:
        worker = int(wait_for(tmp_path / "worker.pid", 120))
        time.sleep(0.5)  # mid-run: the busy worker has emitted events since
        assert not gone(worker)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert wait_gone(worker, 5), f"worker {worker} outlived its SIGKILLed parent"
    finally:
        proc.kill()
        proc.wait()
        mark = tmp_path / "worker.pid"
        if mark.exists() and not gone(int(mark.read_text())):
            os.kill(int(mark.read_text()), signal.SIGKILL)  # never leave one behind
    time.sleep(0.2)
    text = err.read_text()
    assert "Traceback" not in text and "BrokenPipe" not in text, text


CHILD = """
import os, sys, time
import streambench.runners.orphan as orphan
if sys.argv[1] == "watch":
    orphan._parent_death_signal = lambda: False  # as on a system without prctl
print(orphan.tie_to_parent(int(sys.argv[2])), flush=True)
time.sleep(3600)
"""

PARENT = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2], str(os.getpid())],
                         stdout=subprocess.PIPE, text=True, start_new_session=True)
print(child.pid, child.stdout.readline().strip(), flush=True)
time.sleep(3600)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("mode", ["pdeathsig", "watch"])
def test_a_tied_process_ends_with_its_parent_either_way(mode):
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, CHILD, mode], stdout=subprocess.PIPE, text=True, env=ENV
    )
    try:
        pid_text, how = parent.stdout.readline().split()
        child = int(pid_text)
        assert how == mode
        assert not gone(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        assert wait_gone(child, 5), f"{mode}: the child outlived its parent"
    finally:
        parent.kill()
        parent.wait()


def test_a_worker_whose_parent_died_before_it_tied_itself_leaves_at_once():
    # the pid it was given is not its parent's: the parent it knew has gone already
    proc = subprocess.run(
        [sys.executable, "-m", "streambench.runners.local.worker", "--parent", "1"],
        input="{}", capture_output=True, text=True, env=ENV, timeout=60,
    )  # fmt: skip
    assert proc.returncode == EXIT_ORPHANED
    assert proc.stdout == "" and proc.stderr == ""


def test_a_worker_whose_reader_has_gone_leaves_quietly(tmp_path):
    from streambench.runners.local.isolation import job_for
    from streambench.runners.local.plan import SweepSettings
    from streambench.spec.models import ModelSpec

    settings = SweepSettings(
        models=[], in_out=[(8, 32)], batch_sizes=[1], warmup=0, trials=200, telemetry=False
    )
    job = job_for(settings, ModelSpec("tiny", "embedded"), "cpu", [(8, 32, 1, 0)])
    err = tmp_path / "stderr.txt"
    with err.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", WORKER, "--parent", str(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True, env=ENV,
        )  # fmt: skip
    try:
        proc.stdin.write(json.dumps(job))
        proc.stdin.close()
        events = [json.loads(proc.stdout.readline())["event"] for _ in range(2)]
        assert events == ["loaded", "run"]
        proc.stdout.close()  # the reader goes; the worker's next event finds a broken pipe
        assert proc.wait(30) == EXIT_ORPHANED
    finally:
        proc.kill()
        proc.wait()
    text = err.read_text()
    assert "Traceback" not in text and "BrokenPipe" not in text, text
