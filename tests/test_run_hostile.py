"""Hostile input to ``streambench run`` (the reliability audit): config values that must not turn
things on, results files that must survive a failed or killed start, output paths checked before
any work, absurd values refused up front, SIGTERM/SIGHUP treated as Ctrl-C, one exit-code policy.
Real subprocesses on tiny local models; no network."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streambench.tiny import save_tiny_model

ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "HF_HUB_OFFLINE": "1", "COLUMNS": "120"}
FAST = ["--in-out", "4-2", "--warmup", "0", "--trials", "1"]


def sb(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 180):
    return subprocess.run(
        [sys.executable, "-m", "streambench", *args],
        capture_output=True,
        text=True,
        env=env or ENV,
        cwd=cwd,
        timeout=timeout,
    )


def one_error_line(proc: subprocess.CompletedProcess, code: int = 2) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("streambench: error: "), lines[0]
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "tiny"
    save_tiny_model(path, "llama", max_position_embeddings=64)
    return path


@pytest.fixture
def evil_dir(tmp_path) -> Path:
    """A model directory whose own Python writes a marker file when it is imported."""
    path = tmp_path / "evil"
    path.mkdir()
    marker = tmp_path / "remote-code-ran"
    (path / "evil.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "from transformers import LlamaConfig\n"
        "class EvilConfig(LlamaConfig):\n    model_type = 'evil'\n"
    )
    (path / "config.json").write_text(
        json.dumps({"model_type": "evil", "auto_map": {"AutoConfig": "evil.EvilConfig"}})
    )
    return path


# -- 1. booleans are booleans ----------------------------------------------------------------------
@pytest.mark.parametrize("value", ["'false'", "'no'", "'0'", "0", "1", "'true'", "[false]"])
def test_trust_remote_code_must_be_a_boolean(tmp_path, evil_dir, value):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"repo_id: {evil_dir}\ntrust_remote_code: {value}\n")
    line = one_error_line(sb("run", "--config", str(cfg), *FAST, cwd=tmp_path))
    assert "trust_remote_code" in line and str(cfg) in line and "boolean" in line
    assert not (tmp_path / "remote-code-ran").exists()


def test_trust_remote_code_false_never_runs_the_models_code(tmp_path, evil_dir):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"repo_id: {evil_dir}\ntrust_remote_code: false\n")
    proc = sb("run", "--config", str(cfg), *FAST, cwd=tmp_path)
    assert proc.returncode in (1, 2), proc.stderr
    assert not (tmp_path / "remote-code-ran").exists()


@pytest.mark.parametrize("key", ["ipex", "random_weights"])
def test_other_booleans_refuse_strings(tmp_path, key):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"{key}: 'false'\n")
    line = one_error_line(sb("run", "--config", str(cfg), *FAST, cwd=tmp_path))
    assert repr(key) in line and "boolean" in line


# -- 12/13/6. typed, bounded values with one line naming the key or option -------------------------
@pytest.mark.parametrize(
    "yaml_text, words",
    [
        ("seed: abc\n", ["'seed'", "not a whole number"]),
        ("seed: [1, 2]\n", ["'seed'", "not a whole number"]),
        ("output: 5\n", ["'output'", "not a text"]),
        ("warm_up: [1, 2]\n", ["'warm_up'", "not a whole number"]),
        ("num_trials: [3, 9]\n", ["'num_trials'", "not a whole number"]),
        ("num_trials: 2.5\n", ["'num_trials'", "not a whole number"]),
        ("num_trials: true\n", ["'num_trials'", "not a whole number"]),
        ("num_layers: 100000\n", ["'num_layers'", "out of range"]),
        ("batch_size: [1, 0]\n", ["'batch_size'", "out of range"]),
        ("in_out_pairs: ['32-32', 7.5]\n", ["not an INPUT-OUTPUT pair"]),
        ("1: 2\n", ["unknown key 1"]),
        ("a: &a [1]\nb: *a\n", ["unknown key 'a'"]),
    ],
)
def test_config_values_are_typed_and_bounded(tmp_path, yaml_text, words):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml_text)
    line = one_error_line(sb("run", "--config", str(cfg), cwd=tmp_path))
    for word in words:
        assert word in line, line


@pytest.mark.parametrize(
    "args, words",
    [
        (["--seed", "1e23"], ["--seed", "not a whole number"]),
        (["--seed", "99999999999999999999999"], ["--seed", "out of range"]),
        (["--seed", "-1"], ["--seed", "out of range"]),
        (["--num-layers", "100000"], ["--num-layers", "out of range"]),
        (["--trials", "0"], ["--trials", "out of range"]),
        (["--warmup", "nan"], ["--warmup", "not a whole number"]),
        (["--batch-size", "1,99999"], ["--batch-size", "out of range"]),
        (["--in-out", "99999999-2"], ["token counts go up to"]),
        (["--num-beams", "1000"], ["--num-beams", "out of range"]),
        (["--low-bit", "int3"], ["unknown --low-bit kind 'int3'"]),
    ],
)
def test_absurd_options_are_refused_up_front(tmp_path, args, words):
    t0 = time.perf_counter()
    line = one_error_line(sb("run", *args, cwd=tmp_path))
    assert time.perf_counter() - t0 < 60
    for word in words:
        assert word in line, line


def test_binary_config_is_one_line(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(b"\xff\xfe\x00\x81seed: 1\n")
    line = one_error_line(sb("run", "--config", str(cfg), cwd=tmp_path))
    assert str(cfg) in line and "UTF-8" in line


def test_debug_keeps_exit_2(tmp_path):
    proc = sb("run", "--debug", "--seed", "abc", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "streambench: error: --seed" in proc.stderr


def test_device_error_names_the_option(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    line = one_error_line(sb("run", "--device", "cuda", cwd=tmp_path))
    assert "--device cpu" in line and "device='cpu'" not in line


def test_unreachable_hub_fails_fast_in_one_line(tmp_path):
    # A closed port on this machine stands for the hub: the probe fails at once.
    env = {**ENV, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf")}
    env.pop("HF_HUB_OFFLINE")
    t0 = time.perf_counter()
    line = one_error_line(sb("run", "some-org/some-model", *FAST, cwd=tmp_path, env=env))
    assert time.perf_counter() - t0 < 30
    assert "127.0.0.1 is unreachable" in line and "some-org/some-model" in line


def test_offline_hub_id_fails_fast_naming_hf_hub_offline(tmp_path):
    env = {**ENV, "HF_HOME": str(tmp_path / "hf")}
    line = one_error_line(sb("run", "some-org/some-model", *FAST, cwd=tmp_path, env=env))
    assert "HF_HUB_OFFLINE" in line


# -- 3/4. results files: checked before work, never replaced before something better
def test_failed_load_keeps_the_old_results(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "llama", "hidden_size": "x"}')
    old = tmp_path / "r.json"
    old.write_text('{"old": true}')
    proc = sb("run", str(broken), *FAST, "-o", str(old), cwd=tmp_path)
    assert proc.returncode in (1, 2), proc.stderr
    assert old.read_text() == '{"old": true}'


def test_output_inside_the_model_directory_is_refused(tmp_path, model_dir):
    before = (model_dir / "config.json").read_bytes()
    for target in (model_dir / "config.json", model_dir / "sub" / "r.csv"):
        line = one_error_line(sb("run", str(model_dir), *FAST, "-o", str(target), cwd=tmp_path))
        assert "inside the model directory" in line
    assert (model_dir / "config.json").read_bytes() == before
    assert not (model_dir / "sub").exists()


def test_output_that_is_the_random_weights_config_is_refused(tmp_path, model_dir):
    cfg = tmp_path / "shape.json"
    cfg.write_text((model_dir / "config.json").read_text())
    line = one_error_line(sb("run", "--random-weights", str(cfg), *FAST, "-o", str(cfg)))
    assert "model config" in line


@pytest.mark.parametrize(
    "outputs, words",
    [
        (["good.json", "adir.json"], ["adir.json", "is a directory"]),
        (["good.json", "./good.json"], ["named twice"]),
        (["/proc/1/r.json"], ["cannot write"]),
        (["afile/r.json"], ["cannot write"]),
    ],
)
def test_every_output_is_checked_before_work(tmp_path, outputs, words):
    (tmp_path / "adir.json").mkdir()
    (tmp_path / "afile").write_text("x")
    args = [a for o in outputs for a in ("-o", o)]
    line = one_error_line(sb("run", *FAST, *args, cwd=tmp_path))
    for word in words:
        assert word in line, line
    assert not (tmp_path / "good.json").exists()


def test_plot_path_is_checked_before_work(tmp_path):
    line = one_error_line(sb("run", *FAST, "--plot", "/proc/1/p.png", cwd=tmp_path))
    assert "--plot" in line and "cannot write" in line
    line = one_error_line(sb("run", *FAST, "--plot", "r.png", "-o", "r.png", cwd=tmp_path))
    assert "unknown format" in line or "also named" in line


# -- 15. permissions and symlinks ------------------------------------------------------------------
def test_outputs_keep_permissions_and_symlinks(tmp_path):
    existing = tmp_path / "existing.json"
    existing.write_text("{}")
    existing.chmod(0o644)
    real = tmp_path / "real.csv"
    real.write_text("old")
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    proc = sb("run", *FAST, "-o", str(existing), "-o", str(link), "-o", "new.md", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(existing.stat().st_mode) == 0o644
    assert link.is_symlink() and "1st token" in real.read_text()
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / "new.md").stat().st_mode) == 0o666 & ~mask


# -- 11. signals -----------------------------------------------------------------------------------
def _start_long_sweep(tmp_path: Path, out: Path) -> subprocess.Popen:
    sizes = ",".join(str(b) for b in range(1, 13))
    return subprocess.Popen(
        [sys.executable, "-m", "streambench", "run", "--in-out", "64-32", "--warmup", "0",
         "--trials", "3", "--batch-size", sizes, "-o", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=tmp_path,
    )  # fmt: skip


def _wait_for_configurations(proc: subprocess.Popen, out: Path, count: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if len(json.loads(out.read_text())["configurations"]) >= count:
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"no {count} configurations written: {proc.poll()}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_signals_stop_like_ctrl_c_and_keep_results(tmp_path, signum):
    out = tmp_path / "r.json"
    proc = _start_long_sweep(tmp_path, out)
    _wait_for_configurations(proc, out, 2)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err
    assert f"interrupted ({signal.Signals(signum).name})" in err
    doc = json.loads(out.read_text())
    assert doc["interrupted"] is True
    ok = [e for e in doc["configurations"] if e["status"] == "ok"]
    assert 2 <= len(ok) < 12


def test_second_ctrl_c_right_after_the_first_still_marks_the_file(tmp_path):
    out = tmp_path / "r.json"
    proc = _start_long_sweep(tmp_path, out)
    _wait_for_configurations(proc, out, 1)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.001)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert json.loads(out.read_text())["interrupted"] is True


def test_signal_before_the_first_configuration_keeps_the_old_file(tmp_path):
    out = tmp_path / "r.json"
    out.write_text('{"old": true}')
    proc = subprocess.Popen(
        [sys.executable, "-m", "streambench", "run", "--in-out", "512-512", "--warmup", "0",
         "--trials", "50", "-o", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=tmp_path,
    )  # fmt: skip
    # the opening line comes once the signal policy is in force, before the model is loaded: a
    # fixed sleep raced the start-up on a loaded machine
    opening = proc.stdout.readline()
    assert opening.startswith("streambench run:"), opening
    time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "left as it was" in err
    assert out.read_text() == '{"old": true}'
