"""``streambench run --slurm`` on a real single-node Slurm (``nox -s slurm`` writes its
slurm.conf to a temp dir and starts munged, slurmctld and slurmd on 127.0.0.1; SLURM_CONF names
it): a 4-configuration sweep as one job array gives the rows of a local run with the node and job
of each, and an interrupted sweep keeps its finished rows (the other jobs cancelled) and resumes.
Skipped without submitit or a running Slurm. Runtime: ~2 min on 2 busy cores."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("submitit")
if not os.environ.get("SLURM_CONF") or shutil.which("sbatch") is None:
    pytest.skip("no Slurm here (nox -s slurm starts one)", allow_module_level=True)

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore", "HF_HUB_OFFLINE": "1"}
SWEEP = ["--in-out", "8-4,16-4", "--batch-size", "1,2", "--warmup", "1", "--trials", "3"]


def sb(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streambench", *args], capture_output=True,
                          text=True, env={**ENV, **env}, cwd=cwd, timeout=600)  # fmt: skip


def test_a_sweep_as_a_slurm_job_array_gives_the_rows_of_a_local_run(tmp_path):
    local = sb("run", *SWEEP, "--isolate", "model", "-o", "local.json", cwd=tmp_path,
               OMP_NUM_THREADS="1")  # fmt: skip
    assert local.returncode == 0, local.stderr
    res = sb("run", *SWEEP, "--slurm", "--slurm-time", "10", "-o", "s.json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    a = json.loads((tmp_path / "local.json").read_text())["configurations"]
    doc = json.loads((tmp_path / "s.json").read_text())
    b = doc["configurations"]
    assert doc["environment"]["cluster"]["scheduler"] == "slurm"
    assert [e["id"] for e in a] == [e["id"] for e in b] and len(b) == 4
    jobs = set()
    for x, y in zip(a, b):
        assert x["status"] == y["status"] == "ok" and x["settings"] == y["settings"]
        assert len(x["trials"]) == len(y["trials"]) == 3
        assert x["actual_output_tokens"] == y["actual_output_tokens"]
        node = y["node"]
        assert node["name"] == socket.gethostname() and node["scheduler"] == "slurm"
        assert node["environment"]["omp_num_threads"] == "1"  # the job's one CPU
        jobs.add(node["node_id"])
        assert 0 < node["worker_s"] <= node["task_s"] <= node["round_trip_s"]
        for metric in ("first_token_s", "rest_token_mean_s"):  # generous: 2 busy shared cores
            ratio = y["aggregates"][metric]["median"] / x["aggregates"][metric]["median"]
            assert 0.1 < ratio < 10, (metric, ratio)
    assert len(jobs) == 4 and len({j.split("_")[0] for j in jobs}) == 1  # one array, 4 jobs


def test_an_interrupted_slurm_sweep_keeps_finished_rows_and_resumes(tmp_path):
    out = tmp_path / "r.json"
    args = [sys.executable, "-m", "streambench", "run", *SWEEP, "--slurm", "-o", str(out)]
    proc = subprocess.Popen(args, env=ENV, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 400
    while not out.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    doc = json.loads(out.read_text())
    kept = {e["id"]: e for e in doc["configurations"]}
    assert doc["interrupted"] is True and 1 <= len(kept) < 4, stderr
    assert "task(s) cancelled" in stderr
    time.sleep(2)
    queue = subprocess.run(["squeue", "-h", "-n", "streambench"], capture_output=True, text=True)
    assert queue.stdout.strip() == "", queue.stdout  # the outstanding jobs were cancelled

    resumed = sb("run", *SWEEP, "--slurm", "-o", str(out), "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stderr.count("kept from the resumed file") == len(kept)
    final = json.loads(out.read_text())["configurations"]
    assert len(final) == 4 and all(e["status"] == "ok" for e in final)
    for e in final:
        if e["id"] in kept:
            assert e["trials"] == kept[e["id"]]["trials"]
