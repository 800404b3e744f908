"""The one sweep driver (``streambench.runners.driver``): ``--resume`` keeps what an earlier run
finished,
refuses a file of other settings, and completes an interrupted sweep. Real subprocesses on the
embedded tiny model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "HF_HUB_OFFLINE": "1", "COLUMNS": "120"}
BASE = ["run", "--warmup", "0", "--trials", "1"]


def sb(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "streambench", *args],
        capture_output=True, text=True, env=ENV, cwd=cwd, timeout=300,
    )  # fmt: skip


def test_resume_keeps_finished_configurations_and_measures_the_rest(tmp_path):
    first = sb(*BASE, "--in-out", "4-2,8-2", "-o", "r.json", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    old = json.loads((tmp_path / "r.json").read_text())["configurations"]
    again = sb(*BASE, "--in-out", "4-2,8-2,12-2", "-o", "r.json", "--resume", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("kept from the resumed file") == 2
    new = json.loads((tmp_path / "r.json").read_text())["configurations"]
    assert [e["id"] for e in new] == [e["id"] for e in old] + [new[2]["id"]]
    assert new[:2] == old  # kept as they were, not measured again
    assert new[2]["status"] == "ok" and new[2]["settings"]["input_tokens"] == 12


def test_resume_refuses_a_file_of_other_settings(tmp_path):
    assert sb(*BASE, "--in-out", "4-2", "-o", "r.json", cwd=tmp_path).returncode == 0
    before = (tmp_path / "r.json").read_text()
    proc = sb("run", "--warmup", "0", "--trials", "2", "--in-out", "4-2", "-o", "r.json",
              "--resume", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "--resume" in proc.stderr and "trials" in proc.stderr
    assert (tmp_path / "r.json").read_text() == before


def test_resume_needs_a_json_output(tmp_path):
    proc = sb(*BASE, "--in-out", "4-2", "-o", "r.csv", "--resume", cwd=tmp_path)
    assert proc.returncode == 2 and "--resume needs" in proc.stderr


def test_resume_of_a_missing_file_measures_everything(tmp_path):
    proc = sb(*BASE, "--in-out", "4-2", "-o", "r.jsonl", "--resume", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "kept from" not in proc.stderr


def test_resume_completes_an_interrupted_sweep(tmp_path):
    out = tmp_path / "r.json"
    args = [*BASE, "--in-out", "64-32", "--batch-size", "1,2,3,4,5,6,7,8", "-o", str(out)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "streambench", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=tmp_path,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if len(json.loads(out.read_text())["configurations"]) >= 2:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode == 143
    partial = json.loads(out.read_text())
    assert partial["interrupted"] is True
    kept = [e["id"] for e in partial["configurations"] if e["status"] == "ok"]
    done = sb(*args, "--resume", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    doc = json.loads(out.read_text())
    assert doc["interrupted"] is False
    assert [e["status"] for e in doc["configurations"]] == ["ok"] * 8
    assert [e["id"] for e in doc["configurations"]][: len(kept)] == kept
