"""``streambench run --ipex`` with intel-extension-for-pytorch installed (its own torch: IPEX 2.8
needs torch 2.8.x and transformers <= 4.51.3). Skipped elsewhere; run by ``nox -s ipex``, which CI
does not run (a multi-GB install)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("intel_extension_for_pytorch")


def test_run_with_ipex_llm_optimize(tmp_path):
    from streambench.tiny import save_tiny_model

    model = save_tiny_model(tmp_path / "tiny", "llama")
    proc = subprocess.run(
        [sys.executable, "-m", "streambench", "run", str(model), "--ipex", "--in-out", "16-8",
         "--warmup", "1", "--trials", "2", "-o", str(tmp_path / "r.json")],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ipex.llm.optimize applied" in proc.stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["environment"]["intel_extension_for_pytorch"].startswith("2.")
    entry = doc["configurations"][0]
    assert entry["status"] == "ok" and entry["actual_output_tokens"] == 8
    assert all(len(t["token_latencies_s"]) == 8 for t in entry["trials"])
