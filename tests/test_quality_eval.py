"""``streambench run --quality --lm-eval TASKS`` (issue 26): lm-evaluation-harness tasks on the
model the configuration already loaded. The task is defined by a local YAML file and a local
JSONL data set that the test writes (no hub). Runs in ``nox -s eval`` (lm-eval installed); in an
environment without lm-eval only the refusal is tested."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streambench.tiny import save_tiny_model

ENV = {
    **os.environ,
    "PYTHONWARNINGS": "ignore",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
QUICK = ("--in-out", "16-4", "--warmup", "0", "--trials", "1", "--device", "cpu")
HAS_LM_EVAL = importlib.util.find_spec("lm_eval") is not None

TASK_YAML = """\
task: sb_local_choice
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{answer}}}}"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""

DOCS = [
    {"question": "The clock stopped at", "choices": [" three", " seven"], "answer": 0},
    {"question": "The shop opened at", "choices": [" seven", " noon"], "answer": 0},
    {"question": "The girl brought a", "choices": [" watch", " boat"], "answer": 0},
    {"question": "The town was by the", "choices": [" sea", " moon"], "answer": 0},
]


def sb(*args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streambench", *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=timeout,
    )


def _task_dir(where: Path) -> Path:
    data = where / "docs.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    tasks = where / "tasks"
    tasks.mkdir()
    (tasks / "sb_local_choice.yaml").write_text(TASK_YAML.format(data=data))
    return tasks


@pytest.mark.skipif(not HAS_LM_EVAL, reason="lm-evaluation-harness is not installed (nox -s eval)")
def test_lm_eval_local_task_on_the_loaded_model(tmp_path):
    model = save_tiny_model(tmp_path / "tiny", "llama", vocabulary="printable")
    out = tmp_path / "r.json"
    proc = sb("run", str(model), *QUICK, "--quality", "--lm-eval",
              f"{_task_dir(tmp_path)}:sb_local_choice", "-o", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (entry,) = json.loads(out.read_text())["configurations"]
    q = entry["quality"]
    assert q["reasons"].get("lm_eval") is None, q["reasons"]
    metrics = q["lm_eval"]["sb_local_choice"]
    # four two-way questions: accuracy is a multiple of 1/4
    assert metrics["acc"] in (0.0, 0.25, 0.5, 0.75, 1.0)
    assert q["perplexity"] > 1  # the perplexity is measured beside it
    shown = " ".join(proc.stdout.split())  # the line under the table, wrapped to the width
    assert "lm-eval sb_local_choice: " in shown and f"acc {metrics['acc']:.4g}" in shown


@pytest.mark.skipif(not HAS_LM_EVAL, reason="lm-evaluation-harness is not installed (nox -s eval)")
def test_lm_eval_bad_directory_is_refused_before_loading(tmp_path):
    proc = sb("run", *QUICK, "--quality", "--lm-eval", f"{tmp_path / 'nowhere'}:x")
    assert proc.returncode == 2 and "is not a directory of task YAML files" in proc.stderr
    proc = sb("run", *QUICK, "--quality", "--lm-eval", "bad task!")
    assert proc.returncode == 2 and "is not a task name" in proc.stderr


def test_lm_eval_needs_quality_and_the_extra():
    proc = sb("run", *QUICK, "--lm-eval", "hellaswag")
    assert proc.returncode == 2 and "--lm-eval needs --quality" in proc.stderr
    if not HAS_LM_EVAL:
        proc = sb("run", *QUICK, "--quality", "--lm-eval", "hellaswag")
        assert proc.returncode == 2, proc.stderr
        assert "needs lm-evaluation-harness" in proc.stderr and "[eval]" in proc.stderr
