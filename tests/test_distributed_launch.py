"""Two CPU ranks over gloo, end to end in subprocesses: ``torchrun`` + transformers tensor
parallelism (``tp_plan="auto"``), and the ``deepspeed`` launcher + DeepSpeed AutoTP
(``init_inference(tensor_parallel=...)``) through ``BenchmarkWrapper``.

Checked: exactly one rank prints, the gathered view has both ranks, token-count mismatches and
failed ranks are reported, and a rank that raises inside the model's collectives does not hang
the others (every launch runs under a hard timeout). Deselect with ``-m 'not distributed'``.
The first DeepSpeed launch on a machine compiles DeepSpeed's CPU shared-memory op with gcc
(70-80 s on 2 cores, cached in ~/.cache/torch_extensions afterwards).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.distributed

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "dist_worker.py"
EXAMPLE = ROOT / "examples" / "torchrun_tp.py"
TIMEOUT_S = 300  # hard bound on any launch; a hang fails the test instead of blocking CI


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("STREAMBENCH_PRINT_RANKS", None)
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
            "2", *args]  # fmt: skip


def launch(cmd: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=TIMEOUT_S
    )
    return proc, time.perf_counter() - t0


def seed_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if "=========First token cost" in line]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from streambench.tiny import save_tiny_model, tiny_llama_config

    cfg = tiny_llama_config()
    # tensor parallelism over 2 ranks splits heads, KV heads and the MLP width
    assert cfg.num_attention_heads % 2 == cfg.num_key_value_heads % 2 == 0
    assert cfg.hidden_size % 2 == cfg.intermediate_size % 2 == 0
    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


def test_torchrun_tensor_parallel_example(tmp_path):
    out = tmp_path / "cluster.json"
    proc, took = launch(
        torchrun(
            str(EXAMPLE),
            "--runs",
            "2",
            "--warmup",
            "1",
            "--prompt-tokens",
            "8",
            "--new-tokens",
            "6",
            "--json",
            str(out),
        ),
        tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # 3 runs (1 warm-up + 2), printed by rank 0 only: 3 first-token lines, one table
    assert len(seed_lines(proc.stdout)) == 3, proc.stdout
    assert proc.stdout.count("streambench: 2 rank(s) (gloo)") == 1
    assert re.search(r"^ +0 .* ok +6 ", proc.stdout, re.M)
    assert re.search(r"^ +1 .* ok +6 ", proc.stdout, re.M)
    doc = json.loads(out.read_text())
    assert doc["ok"] and doc["world_size"] == 2 and doc["backend"] == "gloo"
    assert [r["rank"] for r in doc["ranks"]] == [0, 1]
    assert len({r["pid"] for r in doc["ranks"]}) == 2
    for r in doc["ranks"]:
        assert r["new_tokens"] == [6, 6] and len(r["details"]) == 2
        assert len(r["details"][0]["token_latencies_s"]) == 6
    worst = max(max(r["first_token_s"]) for r in doc["ranks"])
    assert doc["max_over_ranks"]["first_token_s"]["max"] == worst
    # the weights really were split: rank 0 holds about half of the 107,200 parameters
    assert doc["example"]["local_parameters"] < 0.6 * 107_200
    print(f"torchrun tensor-parallel launch: {took:.1f} s")


def test_gather_mismatch_failure_and_late_rank(tmp_path):
    proc, took = launch(torchrun(str(WORKER), "gather", str(tmp_path)), tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    # default streamer: rank 0 prints its 2 runs (2 lines each); print_ranks="all": both ranks
    assert sum(1 for line in lines if line.startswith("[r0] =========")) == 4
    assert not any(line.startswith("[r1] =========") for line in lines)
    assert sum(1 for line in lines if line.startswith("[r1] ALL =========")) == 2
    assert sum(1 for line in lines if line.startswith("[r0] ALL =========")) == 2
    assert sum(1 for line in lines if "streambench: 2 rank(s)" in line) == 1  # the table, once
    seen = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for view in seen:
        ok = view["ok"]
        assert ok["ok"] and [r["status"] for r in ok["ranks"]] == ["ok", "ok"]
        assert all(r["runs"] == 1 and r["recorded_runs"] == 2 for r in ok["ranks"])
        mismatch = view["mismatch"]
        assert not mismatch["ok"] and mismatch["problems"] == [
            "ranks generated different numbers of tokens in measured run 1: rank 0: 8, rank 1: 5"
        ]
        failed = view["failed"]
        assert failed["failed"] == [1] and failed["ranks"][0]["status"] == "ok"
        assert failed["ranks"][1]["error"] == "RuntimeError: boom on rank 1"
        assert view["after"]["ok"] and view["after"]["details_gathered"]
    # gather_object to rank 0: only rank 0 holds the per-token details
    assert seen[0]["dst"]["details_gathered"] and not seen[1]["dst"]["details_gathered"]
    assert "details" in seen[0]["dst"]["ranks"][1] and "details" not in seen[1]["dst"]["ranks"][0]
    # rank 1 late: rank 0 gives up after its 1 s timeout and reports it missing ...
    late0, late1 = seen[0]["late"], seen[1]["late"]
    assert late0["missing"] == [1] and not late0["details_gathered"]
    assert 1.0 <= seen[0]["late_wait_s"] < 3.5  # rank 1 arrives after 4 s
    # ... rank 1 arrives after that, finds the gather abandoned and does not block
    assert late1["missing"] == [] and not late1["ok"] and seen[1]["late_wait_s"] < 0.5
    assert any("abandoned" in p for p in late1["problems"])
    print(f"gather scenarios launch: {took:.1f} s")


def test_rank_failing_inside_tensor_parallel_forward_does_not_hang(tmp_path, tiny_model):
    """Rank 1 raises in its 3rd forward pass while rank 0 waits in the model's all-reduce."""
    proc, took = launch(
        torchrun(str(WORKER), "hardfail", str(tmp_path), "--model", str(tiny_model)), tmp_path
    )
    assert proc.returncode != 0
    assert "injected failure on rank 1" in proc.stderr
    view1 = json.loads((tmp_path / "rank1.json").read_text())["cluster"]
    assert view1["failed"] == [1] and view1["missing"] == [0]
    assert view1["ranks"][1]["error"] == "RuntimeError: injected failure on rank 1"
    assert view1["gather_s"] < 10  # its own 3 s timeout, not the 60 s process-group timeout
    rank0 = tmp_path / "rank0.json"
    if rank0.exists():  # rank 0 may get to write before the launcher stops it
        view0 = json.loads(rank0.read_text())["cluster"]
        assert view0["ranks"][1]["error"] == "RuntimeError: injected failure on rank 1"
    assert took < 120
    print(f"failing-rank launch: {took:.1f} s (exit {proc.returncode})")


def test_deepspeed_autotp_with_benchmark_wrapper(tmp_path, tiny_model):
    pytest.importorskip("deepspeed", reason="pip install deepspeed (dev extra)")
    launcher = Path(sys.executable).with_name("deepspeed")
    assert launcher.exists(), f"no deepspeed launcher next to {sys.executable}"
    cmd = [sys.executable, str(launcher), "--num_gpus", "2", "--master_port", str(_free_port()),
           str(WORKER), "deepspeed", str(tmp_path), "--model", str(tiny_model)]  # fmt: skip
    proc, took = launch(cmd, tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    lines = proc.stdout.splitlines()
    # BenchmarkWrapper(engine, do_print=True) on both ranks: only rank 0 prints, 3 calls
    assert sum(1 for line in lines if line.startswith("[r0] =========First token cost")) == 3
    assert not any(line.startswith("[r1] =========") for line in lines)
    seen = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for view in seen:
        assert view["engine"] == "InferenceEngine" and view["wrapper_device"] == "cpu"
        assert view["q_proj_shape"] == [32, 64]  # AutoTP split the 64 query rows over 2 ranks
        assert view["first_cost"] > 0 and view["rest_cost_mean"] > 0
        cluster = view["cluster"]
        assert cluster["ok"] and cluster["world_size"] == 2 and cluster["backend"] == "gloo"
        assert [r["new_tokens"] for r in cluster["ranks"]] == [[6, 6], [6, 6]]
    assert seen[0]["tokens"] == seen[1]["tokens"]  # both ranks computed the same sequence
    print(f"deepspeed AutoTP launch: {took:.1f} s")


def check_cli_result(proc, path: Path, tp: str) -> dict:
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert proc.stdout.count("streambench run:") == 1  # the writer (rank 0) prints, once
    assert proc.stdout.count("streambench: 2 rank(s) (gloo)") == 1  # the per-rank table
    doc = json.loads(path.read_text())
    assert doc["settings"]["tp"] == tp
    (entry,) = doc["configurations"]
    assert entry["status"] == "ok", entry["error"]
    ranks = entry["ranks"]
    assert ranks["ok"] and ranks["world_size"] == 2 and ranks["details_gathered"]
    for r in ranks["ranks"]:
        assert r["status"] == "ok" and r["new_tokens"] == [5, 5] and r["recorded_runs"] == 3
        assert [len(d["token_latencies_s"]) for d in r["details"]] == [5, 5]
    assert ranks["ranks"][0]["details"] == entry["trials"]  # rank 0's own trials
    return doc


def test_cli_run_under_torchrun_tensor_parallel(tmp_path):
    out = tmp_path / "run.json"
    args = ["run", "--in-out", "8-5", "--warmup", "1", "--trials", "2", "-o", str(out)]
    proc, took = launch(torchrun("-m", "streambench", *args), tmp_path)
    check_cli_result(proc, out, "transformers")  # --tp auto: transformers under a launcher
    assert "transformers tensor parallelism (tp_plan='auto') over 2 ranks" in proc.stderr
    print(f"torchrun streambench run: {took:.1f} s")


def test_cli_run_under_deepspeed_launcher(tmp_path):
    pytest.importorskip("deepspeed", reason="pip install deepspeed (dev extra)")
    out = tmp_path / "run.json"
    launcher = Path(sys.executable).with_name("deepspeed")
    # without --no_local_rank: the CLI ignores the --local_rank=N the launcher appends
    cmd = [sys.executable, str(launcher), "--num_gpus", "2", "--master_port", str(_free_port()),
           "--module", "streambench", "run", "--tp", "deepspeed", "--in-out", "8-5",
           "--warmup", "1", "--trials", "2", "-o", str(out)]  # fmt: skip
    proc, took = launch(cmd, tmp_path)
    check_cli_result(proc, out, "deepspeed")
    print(f"deepspeed streambench run: {took:.1f} s")
