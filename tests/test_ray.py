"""``streambench run --ray`` and ``streambench endpoint --workers N --ray`` on a real Ray cluster:
one head node (``ray start --head --block`` on 127.0.0.1, its own temp dir) for the module.
Compared with the same sweep run locally (same rows, node per row), interrupted and resumed, a
worker crash on a node, and a load point against the stub server of tests/test_endpoint_load.py.
Skipped when ray is not installed (``nox -s ray`` installs it). Runtime: ~2.5 min on 2 busy cores.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")

from test_endpoint_load import cli, stub, url  # noqa: F401 - stub is a fixture
from test_isolation import killer_model

ROOT = Path(__file__).resolve().parent.parent
ENV = {
    **os.environ,
    "PYTHONPATH": str(ROOT),  # the Ray workers import this tree's streambench
    "PYTHONWARNINGS": "ignore",
    "HF_HUB_OFFLINE": "1",
    "COLUMNS": "120",
    "RAY_USAGE_STATS_ENABLED": "0",
}
SWEEP = ["--in-out", "8-4,16-4", "--batch-size", "1,2", "--warmup", "1", "--trials", "3"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_head(num_cpus: int) -> tuple[subprocess.Popen, str]:
    """``ray start --head --block``: its processes end with it (SIGTERM)."""
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="sbray")  # short: Ray's socket paths must fit 107 bytes
    ray_bin = str(Path(sys.executable).parent / "ray")
    proc = subprocess.Popen(
        [ray_bin, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
         f"--num-cpus={num_cpus}", f"--temp-dir={temp}", "--include-dashboard=false",
         "--disable-usage-stats"],
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ok = subprocess.run([ray_bin, "status", f"--address={address}"], env=ENV,
                            capture_output=True, timeout=60).returncode == 0  # fmt: skip
        if ok:
            return proc, address
        time.sleep(1)
    proc.terminate()
    raise RuntimeError("ray start --head did not come up within 120 s")


@pytest.fixture(scope="module")
def head():
    proc, address = start_head(2)
    yield address
    proc.send_signal(signal.SIGTERM)  # --block: stops the node and its workers
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def sb(*args: str, cwd: Path, timeout: float = 400, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streambench", *args], capture_output=True,
                          text=True, env={**ENV, **env}, cwd=cwd, timeout=timeout)  # fmt: skip


def _median(entry: dict, metric: str) -> float:
    return entry["aggregates"][metric]["median"]


def test_a_sweep_through_ray_gives_the_rows_of_a_local_run_with_the_node_of_each(head, tmp_path):
    # a Ray task of 1 CPU runs its worker with OMP_NUM_THREADS=1: the local run too, to compare
    local = sb("run", *SWEEP, "--isolate", "model", "-o", "local.json", cwd=tmp_path,
               OMP_NUM_THREADS="1")  # fmt: skip
    assert local.returncode == 0, local.stderr
    remote = sb("run", *SWEEP, "--ray", head, "-o", "ray.json", "-o", "ray.csv", cwd=tmp_path)
    assert remote.returncode == 0, remote.stderr
    a = json.loads((tmp_path / "local.json").read_text())
    b = json.loads((tmp_path / "ray.json").read_text())
    assert [e["id"] for e in a["configurations"]] == [e["id"] for e in b["configurations"]]
    assert len(b["configurations"]) == 4 and b["settings"]["isolate"] == "config"
    assert (
        b["environment"]["cluster"]["scheduler"] == "ray"
        and b["environment"]["cluster"]["wall_s"] > 0
    )
    for x, y in zip(a["configurations"], b["configurations"]):
        assert x["status"] == y["status"] == "ok"
        assert x["settings"] == y["settings"]
        assert len(x["trials"]) == len(y["trials"]) == 3 and len(y["warmup_runs"]) == 1
        assert (x["actual_input_tokens"], x["actual_output_tokens"]) == (
            y["actual_input_tokens"], y["actual_output_tokens"])  # fmt: skip
        for trial in y["trials"]:  # every trial timed every token, in a process of its own
            assert len(trial["token_latencies_s"]) == y["actual_output_tokens"]
        node = y["node"]
        assert node["name"] == socket.gethostname() and node["node_id"]
        assert node["environment"]["torch"] == a["environment"]["torch"]
        assert node["environment"]["device"] == "cpu" and node["resources"]["CPU"] == 2.0
        assert node["environment"]["omp_num_threads"] == "1"  # --ray-cpus 1
        # the task's own time holds the worker's; the round trip holds the task's
        assert 0 < node["worker_s"] <= node["task_s"] <= node["round_trip_s"]
        # the same code on the same machine: within noise (generous: 2 busy shared cores)
        for metric in ("first_token_s", "rest_token_mean_s"):
            ratio = _median(y, metric) / _median(x, metric)
            assert 0.1 < ratio < 10, (metric, ratio)
    with open(tmp_path / "ray.csv", newline="") as f:
        assert [row["node"] for row in csv.DictReader(f)] == [socket.gethostname()] * 4
    assert "unlike nodes" not in remote.stderr  # one node


def test_interrupted_sweep_keeps_finished_rows_and_resume_measures_the_rest(head, tmp_path):
    out = tmp_path / "r.json"
    args = [sys.executable, "-m", "streambench", "run", *SWEEP, "--ray", head, "-o", str(out)]
    proc = subprocess.Popen(args, env=ENV, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 300
    while not out.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _stdout, stderr = proc.communicate(timeout=120)
    # 143 (SIGTERM): also when the signal lands inside a Ray call, whose C code turns the
    # policy's Interrupted into a plain KeyboardInterrupt (once 130 in CI; the exit code now
    # comes from the signal the policy received: test_small_promises)
    assert proc.returncode == 143, stderr
    doc = json.loads(out.read_text())
    assert doc["interrupted"] is True
    kept = {e["id"]: e for e in doc["configurations"]}
    assert 1 <= len(kept) < 4 and all(e["status"] == "ok" for e in kept.values()), stderr
    assert "task(s) cancelled" in stderr

    resumed = sb("run", *SWEEP, "--ray", head, "-o", str(out), "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stderr.count("kept from the resumed file") == len(kept)
    final = json.loads(out.read_text())
    assert final["interrupted"] is False and len(final["configurations"]) == 4
    assert all(e["status"] == "ok" and e["node"]["node_id"] for e in final["configurations"])
    for e in final["configurations"]:  # the kept rows as they were, not measured again
        if e["id"] in kept:
            assert (
                e["started_at"] == kept[e["id"]]["started_at"]
                and e["trials"] == kept[e["id"]]["trials"]
            )


def test_a_worker_that_dies_on_a_node_is_a_failed_row_and_the_sweep_goes_on(head, tmp_path):
    model = killer_model(tmp_path, 2, "SIGKILL")
    # --isolate model: one task, one worker for both configurations; it dies at batch size 2
    res = sb("run", str(model), "--trust-remote-code", "--in-out", "8-4", "--batch-size", "1,2",
             "--warmup", "0", "--trials", "1", "--isolate", "model", "--ray", head, "-o",
             "r.json", cwd=tmp_path)  # fmt: skip
    assert res.returncode == 1, res.stderr
    rows = json.loads((tmp_path / "r.json").read_text())["configurations"]
    assert [(e["settings"]["batch_size"], e["status"]) for e in rows] == [(1, "ok"), (2, "failed")]
    assert rows[1]["error"] == "worker killed by SIGKILL (out of memory?)"
    assert rows[1]["node"]["node_id"] == rows[0]["node"]["node_id"]  # where it died


def test_bad_cluster_options_are_one_line_and_exit_2(head, tmp_path):
    for extra, needle in (
        (["--ray", head, "--ray-cpus", "64"], "--ray-cpus"),
        # the others need no cluster: tests/test_cluster_options.py
        (["--ray", f"127.0.0.1:{_free_port()}"], "nothing answers there"),
    ):
        res = sb("run", "--in-out", "8-4", "--trials", "1", *extra, "-o", "x.json", cwd=tmp_path)
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 2 and len(lines) == 1 and needle in lines[0], (extra, res.stderr)
        assert not (tmp_path / "x.json").exists()


def _point(port: int, scenario: str, out: Path, *extra: str) -> dict:
    res = cli(url(port, scenario), "--model", "m", "--in-out", "4-3", "--requests", "40",
              "--warmup", "1", "--concurrency", "4", "--workers", "4", "--force-output", "off",
              "-o", str(out), *extra, env=ENV, timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stderr
    return json.loads(out.read_text())["configurations"][0]


def test_endpoint_workers_as_ray_actors_send_the_same_point(head, stub, tmp_path):  # noqa: F811
    here = _point(stub, "ray=local;service=0.02", tmp_path / "local.json")
    there = _point(stub, "ray=actors;service=0.02", tmp_path / "ray.json", "--ray", head)
    for entry in (here, there):
        measured = [r for r in entry["requests"] if not r["warmup"]]
        assert sorted(r["index"] for r in measured) == list(range(40))  # each once
        assert all(r["ok"] for r in measured) and entry["aggregates"]["endpoint"]["requests"] == 40
    assert there["id"] == here["id"]  # where the workers ran is not part of the point
    a, b = (e["aggregates"]["endpoint"] for e in (here, there))
    for metric in ("ttft_s", "e2e_s"):  # the stub's 20 ms service is a floor for both
        for q in ("50", "90"):
            x, y = a[metric]["percentiles"][q], b[metric]["percentiles"][q]
            assert x >= 0.02 and y >= 0.02 and 0.25 < y / x < 4, (metric, q, x, y)
    client = there["client"]
    assert client["workers"] == 4 and len(client["per_worker"]) == 4
    assert client["ray"]["nodes"] == 1
    for w in client["per_worker"]:
        assert w["node"] == socket.gethostname() and w["late_s"] is not None
        for key in ("clock_start", "clock_end"):  # one host, one clock: within the error bound
            assert abs(w[key]["offset_s"]) <= w[key]["error_s"] + 2e-6, w
            assert 0 < w[key]["error_s"] < 1.0
