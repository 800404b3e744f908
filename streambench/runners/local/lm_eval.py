"""``streambench run --quality --lm-eval TASKS``: lm-evaluation-harness tasks run on the model the
configuration already loaded (lm-eval's ``HFLM`` takes a model instance: nothing is loaded
twice), after the timed trials; each task's metrics go to ``quality.lm_eval``.

``TASKS``: comma-separated task names (lm-eval's own, e.g. ``hellaswag,arc_easy``: their data
sets come from the Hugging Face hub), or ``DIR:TASK[,...]`` where ``DIR`` holds task YAML files
(lm-eval's ``include_path``; a task may read a local JSONL data set with
``dataset_path: json`` and ``dataset_kwargs: {data_files: ...}``). Needs ``streambench[eval]``.
"""

from __future__ import annotations

import os
import re
from typing import Any

from ...errors import UsageError

__all__ = ["LM_EVAL_LIMIT", "parse_tasks", "run_tasks"]

#: documents per task at most (lm-eval's ``limit``): a quality check beside a benchmark, not a
#: leaderboard run
LM_EVAL_LIMIT = 1000
_TASK = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")


def parse_tasks(text: str) -> tuple[str | None, list[str]]:
    """``(directory of task YAML files or None, task names)`` of ``--lm-eval``; a
    :class:`UsageError` naming the option otherwise (checked before any model loads)."""
    directory = None
    names = text
    if ":" in text:
        directory, names = text.rsplit(":", 1)
        if not os.path.isdir(directory):
            raise UsageError(f"--lm-eval {text}: {directory} is not a directory of task YAML files")
    tasks = [t.strip() for t in names.split(",") if t.strip()]
    if not tasks:
        raise UsageError(f"--lm-eval {text!r}: no task named; e.g. --lm-eval hellaswag")
    for task in tasks:
        if not _TASK.match(task):
            raise UsageError(
                f"--lm-eval: {task[:60]!r} is not a task name (letters, digits, _ . -)"
            )
    from ...extras import install_hint

    try:
        import lm_eval  # noqa: F401
    except ImportError:
        raise UsageError(
            f"--lm-eval needs lm-evaluation-harness, which is not installed: {install_hint('eval')}"
        ) from None
    return directory, tasks


def _numbers(metrics: dict[str, Any]) -> dict[str, float | None]:
    """A task's metrics: the numbers only (``acc,none`` -> ``acc``); NaN (lm-eval's stderr of
    one document) as ``None``."""
    import math

    out: dict[str, float | None] = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        name = key[: -len(",none")] if key.endswith(",none") else key
        out[name] = float(value) if math.isfinite(value) else None
    return out


def run_tasks(loaded: Any, text: str, seed: int = 0) -> dict[str, dict[str, float | None]]:
    """Run ``--lm-eval``'s tasks on ``loaded`` (a transformers model and its tokenizer): task
    name -> metric -> value."""
    directory, tasks = parse_tasks(text)
    if loaded.tokenizer is None or not hasattr(loaded.model, "config"):
        raise NotImplementedError("--lm-eval needs a transformers model with its tokenizer")
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    lm = HFLM(pretrained=loaded.model, tokenizer=loaded.tokenizer, batch_size=1)
    manager = TaskManager(include_path=directory) if directory else TaskManager()
    out = simple_evaluate(
        model=lm,
        tasks=tasks,
        task_manager=manager,
        limit=LM_EVAL_LIMIT,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        log_samples=False,
    )
    results = (out or {}).get("results") or {}
    return {task: _numbers(results.get(task) or {}) for task in tasks}
