"""``run --ray/--slurm`` and ``endpoint --ray`` refuse what cannot work in one line, exit 2,
before anything loads and without touching ``-o`` (the main venv has neither ray nor submitit:
the install hint is checked there; tests/test_ray.py and tests/test_slurm.py run the clusters)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore", "HF_HUB_OFFLINE": "1"}


def sb(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streambench", *args], capture_output=True,
                          text=True, env=ENV, cwd=cwd, timeout=300)  # fmt: skip


def _one_line(res: subprocess.CompletedProcess, needle: str) -> None:
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and needle in lines[0], res.stderr


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--ray-cpus", "2"], "--ray-cpus needs --ray"),
        (["--slurm-time", "5"], "--slurm-time needs --slurm"),
        (["--ray", "auto", "--slurm"], "--ray and --slurm: give one of them"),
        (["--ray", "auto", "--interleave"], "--ray runs each configuration in a worker"),
        (["--slurm", "--slurm-arg", "no-equals"], "--slurm-arg 'no-equals'"),
        (["--ray", "auto", "--ray-cpus", "-1"], "--ray-cpus '-1'"),
    ],
)
def test_bad_cluster_options_exit_2_before_anything_loads(tmp_path, extra, needle):
    if "--slurm-arg" in extra and importlib.util.find_spec("submitit") is None:
        needle = "--slurm needs submitit, which is not installed"
    if "--ray-cpus" in extra and "-1" in extra and importlib.util.find_spec("ray") is None:
        needle = "--ray needs ray, which is not installed"
    res = sb("run", "--in-out", "8-4", "--batch-size", "1,2", *extra, "-o", "x.json", cwd=tmp_path)
    _one_line(res, needle)
    assert not (tmp_path / "x.json").exists()


@pytest.mark.skipif(importlib.util.find_spec("ray") is not None, reason="ray is installed")
def test_without_ray_the_options_say_what_to_install(tmp_path):
    _one_line(sb("run", "--ray", "auto", cwd=tmp_path), "pip install")
    res = sb("endpoint", "http://127.0.0.1:9/v1", "--model", "m", "--workers", "2",
             "--concurrency", "2", "--ray", "auto", cwd=tmp_path)  # fmt: skip
    _one_line(res, "--ray needs ray, which is not installed")


def test_endpoint_ray_needs_several_workers(tmp_path):
    if importlib.util.find_spec("ray") is None:
        pytest.skip("the install hint comes first without ray")
    res = sb("endpoint", "http://127.0.0.1:9/v1", "--model", "m", "--ray", "auto", cwd=tmp_path)
    _one_line(res, "--ray auto: spreads --workers N")
