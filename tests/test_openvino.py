"""``--engine openvino`` / ``openvino-genai``: the embedded tiny Llama exported to OpenVINO IR
inside the test (offline), then timed through optimum-intel's ``generate()`` and GenAI's
``LLMPipeline`` beside transformers in one sweep, by real ``streambench run`` processes.

Needs ``streambench[openvino]``: ``nox -s openvino`` makes that environment (transformers 5.5,
no torchvision) and runs this file. Without it only the "extra missing" test runs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HAVE_OV = (
    all(importlib.util.find_spec(m) is not None for m in ("openvino", "openvino_genai", "optimum"))
    and importlib.util.find_spec("optimum.intel") is not None
)
needs_ov = pytest.mark.skipif(
    not HAVE_OV, reason="streambench[openvino] not installed (nox -s openvino)"
)
ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "HF_HUB_OFFLINE": "1", "COLUMNS": "120"}


def sb(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streambench", *args],
        capture_output=True, text=True, env=ENV, cwd=cwd, timeout=900,
    )  # fmt: skip


@pytest.mark.skipif(HAVE_OV, reason="the OpenVINO extra is installed here")
def test_engine_without_the_extra_names_the_pip_command(tmp_path):
    hint = subprocess.run(  # the command for the streambench the CLI runs (a clone: pip -e)
        [sys.executable, "-c", "from streambench.extras import install_hint as h; "
         "print(h('openvino'))"], capture_output=True, text=True, env=ENV, cwd=tmp_path,
        check=True,
    ).stdout.strip()  # fmt: skip
    assert hint.endswith("[openvino]'")
    for engine in ("openvino", "openvino-genai"):
        proc = sb("run", "--engine", engine, "--in-out", "8-4", cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert f"--engine {engine} needs" in proc.stderr
        assert hint in proc.stderr
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_bad_engine_and_weight_format_are_refused_before_loading(tmp_path):
    proc = sb("run", "--engine", "onnx", cwd=tmp_path)
    assert proc.returncode == 2 and "--engine" in proc.stderr and "openvino-genai" in proc.stderr
    if HAVE_OV:
        proc = sb("run", "--engine", "openvino", "--low-bit", "nf4", cwd=tmp_path)
        assert proc.returncode == 2
        assert "--low-bit nf4 is not a weight format of --engine openvino" in proc.stderr


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """One sweep: the three engines on the tiny Llama, 32-24 tokens, exported once."""
    if not HAVE_OV:
        pytest.skip("streambench[openvino] not installed (nox -s openvino)")
    work = tmp_path_factory.mktemp("ov")
    proc = sb("run", "--engine", "transformers,openvino,openvino-genai", "--in-out", "32-24",
              "--warmup", "1", "--trials", "3", "--export-dir", "cache", "-o", "r.json",
              "-o", "r.csv", cwd=work)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((work / "r.json").read_text())
    return work, proc, {e["settings"].get("further", {}).get("engine", "transformers"): e
                        for e in doc["configurations"]}  # fmt: skip


@needs_ov
def test_three_engines_in_one_sweep(sweep):
    work, proc, entries = sweep
    assert set(entries) == {"transformers", "openvino", "openvino-genai"}
    for name, entry in entries.items():
        assert entry["status"] == "ok", entry.get("error")
        assert entry["actual_output_tokens"] == 24  # exactly the request, every engine
        agg = entry["aggregates"]
        assert agg["first_token_s"]["median"] > 0 and agg["rest_token_mean_s"]["median"] > 0
        for trial in entry["trials"]:
            assert len(trial["token_latencies_s"]) == 24
            assert all(t > 0 for t in trial["token_latencies_s"])
        assert entry["memory"]["peak_rss_bytes"] > 0  # host RSS, exact per configuration
    for name in ("openvino", "openvino-genai"):
        engine = entries[name]["engine"]
        assert engine["name"] == name and engine["device"] == "CPU"
        assert engine["weight_format"] == "fp32"  # always explicit (no silent int8)
        assert engine["inference_precision"] == "f32"  # --dtype auto on the CPU = transformers'
        assert entries[name]["config"]["dtype"] == "f32"
        assert f"engine={name}" in entries[name]["label"]
    assert entries["openvino"]["engine"]["export_time_s"] > 0  # the sweep exported once ...
    assert entries["openvino-genai"]["engine"]["export_time_s"] is None  # ... and reused it
    assert "from the export cache" in proc.stderr
    assert len(list((work / "cache").iterdir())) == 1  # one IR, nothing half-written beside it
    rows = (work / "r.csv").read_text().splitlines()
    assert rows[0].split(",")[-1] == "engine" and rows[2].endswith(",openvino")


@needs_ov
def test_prompt_file_through_the_engines(sweep):
    """--prompts x --engine: the user's prompts through each engine (one measuring path), each
    engine its own configuration with per-token timings; the export cache of ``sweep``."""
    work = sweep[0]
    lines = [{"prompt": "Hello there, clockmaker", "output_tokens": 3},
             {"prompt": "What time is it?", "output_tokens": 5}]  # fmt: skip
    (work / "p.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    proc = sb("run", "--prompts", "p.jsonl", "--output-len", "from-data", "--engine",
              "transformers,openvino,openvino-genai", "--warmup", "0", "--trials", "2",
              "--export-dir", "cache", "-o", "prompts.json", cwd=work)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    entries = json.loads((work / "prompts.json").read_text())["configurations"]
    engines = [e["settings"].get("further", {}).get("engine", "transformers") for e in entries]
    assert engines == ["transformers", "openvino", "openvino-genai"]
    assert len({e["id"] for e in entries}) == 3 and all("prompts=" in e["id"] for e in entries)
    for entry in entries:
        assert entry["status"] == "ok", entry["error"]
        assert entry["config"]["trials"] == 2 and len(entry["trials"]) == 4  # 2 prompts x 2
        reqs = [q for t in entry["trials"] for q in t["extra"]["workload"]["requests"]]
        assert [q["prompt_index"] for q in reqs] == [0, 1, 0, 1]
        assert [q["output_tokens"] for q in reqs] == [3, 5, 3, 5]  # forced: the data's lengths
        for trial in entry["trials"]:
            assert len(trial["token_latencies_s"]) == trial["new_tokens"]
    assert entries[2]["engine"]["genai_perf_metrics"]  # GenAI's own numbers of its calls


@needs_ov
def test_genai_agrees_with_its_own_perf_metrics(sweep):
    """GenAI's PerfMetrics time the same steps with its own clock. Per-token: the mean gap
    between write() calls is GenAI's TPOT (same events, different clocks): within 25 % + 0.1 ms
    (the Python callback's GIL hand-over is in ours). First token: ours counts from the
    generate() call, GenAI's from its own start after input preparation, so ours is the larger,
    by under 5 ms on this machine."""
    _, _, entries = sweep
    entry = entries["openvino-genai"]
    perf = entry["engine"]["genai_perf_metrics"]
    assert perf["new_tokens"] == 24 and perf["input_tokens"] == 32
    ours_tpot_ms = entry["aggregates"]["rest_token_mean_s"]["median"] * 1e3
    assert abs(ours_tpot_ms - perf["tpot_ms"]) <= 0.25 * perf["tpot_ms"] + 0.1
    ours_ttft_ms = entry["aggregates"]["first_token_s"]["median"] * 1e3
    assert perf["ttft_ms"] - 0.1 <= ours_ttft_ms <= perf["ttft_ms"] + 5.0


@needs_ov
def test_ir_directory_without_tokenizer_files_and_weight_formats(sweep, tmp_path):
    work, _, entries = sweep
    ir = tmp_path / "ir"
    shutil.copytree(entries["openvino"]["engine"]["ir"], ir)
    for f in ir.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "openvino_tokenizer",
                              "openvino_detokenizer", "vocab", "merges")):  # fmt: skip
            f.unlink()
    proc = sb("run", str(ir), "--engine", "openvino-genai,openvino", "--in-out", "16-8",
              "--warmup", "0", "--trials", "1", "-o", "r.json", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "no tokenizer in the IR directory: prompts are random token ids" in proc.stderr
    for entry in json.loads((tmp_path / "r.json").read_text())["configurations"]:
        assert entry["status"] == "ok" and entry["actual_output_tokens"] == 8
        assert entry["engine"]["ir"] == str(ir)  # used as it is, not exported again
    # int8 weights: another cache entry beside the fp32 one
    proc = sb("run", "--engine", "openvino", "--low-bit", "int8", "--in-out", "16-8",
              "--warmup", "0", "--trials", "1", "--export-dir", str(work / "cache"),
              "-o", "q.json", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (entry,) = json.loads((tmp_path / "q.json").read_text())["configurations"]
    assert entry["engine"]["weight_format"] == "int8" and entry["engine"]["export_time_s"] > 0
    assert len(list((work / "cache").iterdir())) == 2


@needs_ov
def test_unavailable_device_and_what_genai_cannot_stream(tmp_path):
    proc = sb("run", "--engine", "openvino", "--device", "npu", cwd=tmp_path)
    assert proc.returncode == 2
    assert "--device npu: OpenVINO has no NPU on this machine (available: CPU" in proc.stderr
    proc = sb("run", "--engine", "openvino-genai", "--num-beams", "2", cwd=tmp_path)
    assert proc.returncode == 2 and "--num-beams 1" in proc.stderr
    proc = sb("run", "--engine", "openvino-genai", "--batch-size", "2,1", "--in-out", "16-4",
              "--warmup", "0", "--trials", "1", "--export-dir", "cache", "-o", "r.json",
              cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 1  # one configuration failed, the other measured
    two, one = json.loads((tmp_path / "r.json").read_text())["configurations"]
    assert two["status"] == "failed" and "batch 1 only" in two["error"]
    assert one["status"] == "ok" and one["actual_output_tokens"] == 4


def test_transformers_settings_are_refused_for_the_openvino_engines(tmp_path):
    proc = sb("run", "--engine", "transformers,openvino", "--compile", cwd=tmp_path)
    assert proc.returncode == 2
    assert "--compile is a transformers setting, which --engine openvino does not have" in (
        proc.stderr
    )
    kwargs = '{"repetition_penalty": 1.1}'
    proc = sb("run", "--engine", "openvino-genai", "--generate-kwargs", kwargs, cwd=tmp_path)
    assert proc.returncode == 2 and "--generate-kwargs is a transformers setting" in proc.stderr


@needs_ov
def test_openvino_int8_agreement_with_transformers_fp32(tmp_path):
    """Issue 26: speed and quality of float32, bfloat16 and OpenVINO int8 of one model in one
    sweep (``examples/quality-engines.yaml``): every row has its perplexity on the same texts,
    and the bf16 and int8 rows their greedy agreement with float32, recomputed here from the
    greedy tokens in the file."""
    example = Path(__file__).parent.parent / "examples" / "quality-engines.yaml"
    proc = sb("run", "--config", str(example), "--in-out", "32-16", "--trials", "2",
              "--export-dir", "cache", "-o", "q.json", "-o", "q.csv", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = json.loads((tmp_path / "q.json").read_text())["configurations"]
    fp32, bf16, int8 = rows
    assert int8["engine"]["weight_format"] == "int8" and int8["config"]["low_bit"] == "int8"
    assert fp32["quality"]["reference"] is None
    for row in (bf16, int8):
        q = row["quality"]
        assert q["reference"] == fp32["id"]
        assert q["texts_md5"] == fp32["quality"]["texts_md5"]  # the same texts scored
        assert abs(q["perplexity"] / fp32["quality"]["perplexity"] - 1) < 0.10
        pairs = [
            (a, b)
            for mine, ref in zip(q["greedy"], fp32["quality"]["greedy"])
            for a, b in zip(mine, ref)
        ]
        assert q["agreement"] == pytest.approx(sum(a == b for a, b in pairs) / len(pairs))
    assert "agreement" in proc.stdout and "engine=openvino" in proc.stdout
    header = (tmp_path / "q.csv").read_text().splitlines()[0]
    assert "perplexity" in header and "agreement" in header


@needs_ov
def test_genai_quality_is_null_with_the_reason(tmp_path):
    """Issue 26: OpenVINO GenAI's ``LLMPipeline`` gives no logits: its row is measured, its
    quality fields are ``null`` with the reason (and the way to score the same IR), while
    optimum-intel's row of the same IR is scored."""
    proc = sb("run", "--engine", "openvino,openvino-genai", "--in-out", "16-4", "--warmup", "0",
              "--trials", "1", "--quality", "--export-dir", "cache", "-o", "q.json",
              cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    scored, genai = json.loads((tmp_path / "q.json").read_text())["configurations"]
    assert scored["quality"]["perplexity"] > 1 and scored["quality"]["tokens"] == 19
    assert genai["status"] == "ok" and genai["actual_output_tokens"] == 4
    q = genai["quality"]
    assert q["perplexity"] is None and q["greedy"] is None and q["agreement"] is None
    reason = "OpenVINO GenAI's LLMPipeline gives no logits to score a text; use --engine openvino"
    for field in ("perplexity", "tokens", "greedy", "agreement", "first_divergence_mean"):
        assert q["reasons"][field].startswith(reason), q["reasons"]
    assert reason in proc.stdout + proc.stderr  # said as it happened, one line
