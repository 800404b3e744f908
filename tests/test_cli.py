"""End-to-end tests of the ``streambench`` command line, in subprocesses, on tiny local models
built by the test (no download). Bad input must give one line on stderr and exit code 2."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from verdict_docs import scale_trials

from streambench.report import ALL_IN_ONE_COLUMNS
from streambench.tiny import save_tiny_model

ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "HF_HUB_OFFLINE": "1", "COLUMNS": "120"}


def sb(*args: str, cwd: Path | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streambench", *args],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=cwd,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> Path:
    """A local model hub: a tiny Llama with a 64-token context and a tiny T5."""
    root = tmp_path_factory.mktemp("hub")
    save_tiny_model(root / "tiny-llama", "llama", max_position_embeddings=64)
    save_tiny_model(root / "tiny-t5", "t5")
    return root


@pytest.fixture(scope="module")
def sweep(hub, tmp_path_factory):
    """One sweep over 2 pairs x 2 batch sizes, one pair longer than the model's context."""
    out = tmp_path_factory.mktemp("sweep")
    files = [out / f"r.{ext}" for ext in ("csv", "json", "jsonl", "md")]
    args = [str(hub / "tiny-llama"), "--in-out", "16-8,100-8", "--batch-size", "1,2"]
    args += ["--warmup", "1", "--trials", "2", "--plot", str(out / "r.png")]
    for f in files:
        args += ["-o", str(f)]
    proc = sb("run", *args)
    return proc, out


def test_help_is_fast_and_imports_no_torch():
    code = (
        "import sys, contextlib, io\n"
        "from streambench.cli.run import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as buf:\n"
        "    try: main(['run', '--help'])\n"
        "    except SystemExit: pass\n"
        "assert '--in-out' in buf.getvalue(), buf.getvalue()\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=ENV, timeout=60)


def test_run_without_arguments_benchmarks_the_embedded_model(tmp_path):
    proc = sb("run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "streambench/tiny-llama 32-32 bs1" in proc.stdout
    for word in ("first token (ms)", "rest tokens (ms/token)", "decode (tokens/s)", "p90"):
        assert word in proc.stdout
    assert "peak " in proc.stdout and "actual in/out 32/32 tokens" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_sweep_keeps_finished_rows_and_reports_the_failing_configuration(sweep):
    proc, out = sweep
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "failed" in line]
    assert len(errors) == 2 and all("100-8" in e and "context of 64" in e for e in errors)
    assert "Traceback" not in proc.stderr

    doc = json.loads((out / "r.json").read_text())
    assert doc["schema"] == "streambench.results/2"
    env = doc["environment"]
    for key in ("streambench", "torch", "transformers", "device", "device_name", "date"):
        assert env.get(key), key
    assert [e["status"] for e in doc["configurations"]] == ["ok", "ok", "failed", "failed"]
    ok = doc["configurations"][1]
    assert ok["settings"]["batch_size"] == 2 and ok["settings"]["input_tokens"] == 16
    assert ok["actual_input_tokens"] == 16 and ok["actual_output_tokens"] == 8
    assert len(ok["trials"]) == 2 and len(ok["warmup_runs"]) == 1
    for trial in ok["trials"]:
        assert len(trial["token_latencies_s"]) == 8
        assert len(trial["memory_per_token_bytes"]) == 8
        assert trial["batch_size"] == 2 and trial["reference"] == "generate"
    agg = ok["aggregates"]
    assert agg["first_token_s"]["n"] == 2 and agg["first_token_s"]["mean"] > 0
    assert agg["rest_token_mean_s"]["percentiles"]["90"] > 0 and agg["peak_memory_bytes"] > 0
    assert "context of 64" in doc["configurations"][2]["error"]

    with open(out / "r.csv", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = list(reader)
    assert header[: len(ALL_IN_ONE_COLUMNS)] == ALL_IN_ONE_COLUMNS
    assert len(rows) == 4
    row = dict(zip(header, rows[0]))
    assert row["model"] == "tiny-llama" and row["input/output tokens"] == "16-8"
    assert row["actual input/output tokens"] == "16-8" and row["status"] == "ok"
    assert float(row["1st token avg latency (ms)"]) > 0 and float(row["peak mem (GB)"]) > 0
    assert dict(zip(header, rows[3]))["status"] == "failed"

    lines = (out / "r.jsonl").read_text().splitlines()
    assert len(lines) == 4 and json.loads(lines[0])["environment"]["torch"]
    md = (out / "r.md").read_text()
    assert "| tiny-llama 16-8 bs2 | ok |" in md and "Failures:" in md
    png = (out / "r.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]  # atomic writes


def test_plot_and_compare_from_saved_results(sweep, tmp_path):
    _, out = sweep
    proc = sb("plot", str(out / "r.json"), "-o", str(tmp_path / "p.png"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"

    same = sb("compare", str(out / "r.json"), str(out / "r.json"))
    assert same.returncode == 0, same.stdout + same.stderr
    assert "1.000×" in same.stdout

    doc = json.loads((out / "r.json").read_text())
    for entry in doc["configurations"]:
        if entry["status"] == "ok":
            scale_trials(entry, "rest_token_mean_s", 1.5)
    slower = tmp_path / "slower.json"
    slower.write_text(json.dumps(doc))
    # 2 trials per side give no interval: unclear, which passes with a warning ...
    proc = sb("compare", str(out / "r.json"), str(slower), "--threshold", "10%")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1.500×" in proc.stdout and "unclear" in proc.stdout and "no interval" in proc.stdout
    # ... and fails with --strict
    strict = sb("compare", str(out / "r.json"), str(slower), "--threshold", "10%", "--strict")
    assert strict.returncode == 1 and "unclear (--strict)" in strict.stdout


def _hub_config(path: Path, repo_ids: list[str], hub: object, output: Path) -> Path:
    ids = "".join(f"  - '{r}'\n" for r in repo_ids)
    hub_line = "local_model_hub:\n" if hub is None else f"local_model_hub: '{hub}'\n"
    path.write_text(
        f"repo_id:\n{ids}{hub_line}warm_up: 0\nnum_trials: 1\nin_out_pairs:\n  - '8-2'\n"
        f"batch_size: 1\noutput: '{output}'\n"
    )
    return path


def test_local_model_hub_empty_protects_models_not_hub(hub, tmp_path):
    """As ipex-llm's run.py: an empty (or null) local_model_hub uses the repo ids as they are;
    results may go anywhere in the hub outside the models, never into a model."""
    inside_hub = hub / "results" / "r.json"
    ok = sb("run", "--config", str(_hub_config(tmp_path / "a.yaml", ["org/tiny-llama"], hub,
                                                inside_hub)))  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert json.loads(inside_hub.read_text())["configurations"][0]["status"] == "ok"
    out = tmp_path / "empty.json"  # the repo id (here a directory) used as it is
    res = sb("run", "--config", str(_hub_config(tmp_path / "b.yaml", [str(hub / "tiny-llama")],
                                                "", out)))  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert json.loads(out.read_text())["configurations"][0]["settings"]["model"] == "tiny-llama"
    from streambench.spec.keys import YAML_KEYS as KEYS

    for empty in ("", "  ", None):  # `local_model_hub:` in YAML is None
        assert KEYS["local_model_hub"].coerce(empty, "key") is None
    bad = hub / "tiny-llama" / "r.json"
    res = sb("run", "--config", str(_hub_config(tmp_path / "c.yaml", ["org/tiny-llama"], hub,
                                                 bad)))  # fmt: skip
    assert res.returncode == 2 and "inside the model directory" in res.stderr, res.stderr
    assert not bad.exists()


def test_local_model_hub_names_every_missing_model(hub, tmp_path):
    out = tmp_path / "r.json"
    cfg = _hub_config(
        tmp_path / "c.yaml", ["org/tiny-llama", "a/missing-one", "b/missing-two"], hub, out
    )
    res = sb("run", "--config", str(cfg))
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "2 of 3 models" in lines[0], lines
    assert "'a/missing-one'" in lines[0] and "'b/missing-two'" in lines[0]
    assert str(hub / "missing-two") in lines[0] and "tiny-llama" not in lines[0]
    assert not out.exists()


def test_config_file_all_in_one_keys(hub, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(
        "repo_id:\n  - 'someorg/tiny-llama'\n  - 'someorg/tiny-t5'\n"
        f"local_model_hub: '{hub}'\n"
        "warm_up: 1\nnum_trials: 1\nnum_beams: 2\nlow_bit: 'none'\n"
        "in_out_pairs:\n  - '12-4'\nbatch_size: 1\n"
        "cpu_embedding: false\n"
    )
    proc = sb(
        "run",
        "--config",
        str(config),
        "-o",
        str(tmp_path / "r.csv"),
        "-o",
        str(tmp_path / "r.json"),
    )
    assert proc.returncode == 0, proc.stderr
    assert "cpu_embedding" in proc.stderr  # reported as ignored (test_api: see
    # tests/test_generation_settings.py, it is mapped to settings now)
    with open(tmp_path / "r.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows] == ["tiny-llama", "tiny-t5"]
    assert all(r["num_beams"] == "2" and r["status"] == "ok" for r in rows)
    assert all(r["actual input/output tokens"] == "12-4" for r in rows)
    assert float(rows[1]["encoder time (ms)"]) > 0  # the T5 encoder, timed apart
    assert float(rows[0]["encoder time (ms)"]) == 0.0
    # As all-in-one: the T5 row's first token leaves the encoder out (its own column), the JSON's
    # first_token_s keeps it, so the two add up; the decoder-only row is the JSON mean itself.
    doc = json.loads((tmp_path / "r.json").read_text())
    t5_first = doc["configurations"][1]["aggregates"]["first_token_s"]["mean"] * 1e3
    enc = float(rows[1]["encoder time (ms)"])
    assert float(rows[1]["1st token avg latency (ms)"]) + enc == pytest.approx(t5_first, abs=2e-3)
    llama_first = doc["configurations"][0]["aggregates"]["first_token_s"]["mean"] * 1e3
    assert float(rows[0]["1st token avg latency (ms)"]) == pytest.approx(llama_first, abs=1e-3)


def test_random_weights_from_a_local_config(tmp_path):
    cfg = json.loads(
        (Path(__file__).parents[1] / "streambench" / "data" / "tiny-llama.json").read_text()
    )
    cfg["hidden_size"], cfg["num_attention_heads"] = 32, 2
    (tmp_path / "shape.json").write_text(json.dumps(cfg))
    proc = sb(
        "run", "--random-weights", str(tmp_path / "shape.json"), "--in-out", "20-5",
        "--warmup", "0", "--trials", "1", "-o", str(tmp_path / "r.json"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    entry = json.loads((tmp_path / "r.json").read_text())["configurations"][0]
    assert entry["settings"]["model"] == "shape"
    assert (entry["actual_input_tokens"], entry["actual_output_tokens"]) == (20, 5)


def test_presets_have_the_published_shapes():
    import torch
    from transformers import AutoModelForCausalLM

    from streambench.spec.presets import load_preset

    expected = {"llama-3-8b": 8.03e9, "qwen2.5-7b": 7.62e9, "mistral-7b": 7.25e9}
    for name, params in expected.items():
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(load_preset(name, num_hidden_layers=2))
        full = load_preset(name)
        per_layer = sum(p.numel() for p in model.model.layers[0].parameters())
        rest = sum(p.numel() for p in model.parameters()) - 2 * per_layer
        total = rest + full.num_hidden_layers * per_layer
        assert abs(total - params) / params < 0.01, (name, total)


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "./no/such/model"], "does not exist"),
        (["run", "--in-out", "32x32"], "malformed input/output pair"),
        (["run", "--in-out", "32-32", "--batch-size", "one"], "not a whole number"),
        (["run", "--device", "tpu"], "unknown device"),
        (["run", "--device", "cuda"], "not available"),
        (["run", "-o", "results.csv/x.json"], "cannot write"),
        (["run", "--config", "missing.yaml"], "cannot read config"),
        (["run", "--config", "bad.yaml"], "not valid YAML"),
        (["run", "-o", "results.xlsx"], "unknown format"),
        (["run", "--low-bit", "sym_int4"], "ipex-llm"),
        (["run", "--ipex"], "intel-extension-for-pytorch"),
        (["run", "--random-weights", "gpt-9"], "bundled preset"),
        (["run", "--warmup"], "expected one argument"),
        (["compare", "a.json", "b.json"], "cannot read a.json"),
        (["compare", "bad.yaml", "bad.yaml", "--threshold", "fast"], "percentage"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    (tmp_path / "bad.yaml").write_text("in_out_pairs: [32-32\n")
    if args[:2] == ["run", "--ipex"] or args[:2] == ["run", "--low-bit"]:
        import importlib.util

        mod = "intel_extension_for_pytorch" if args[1] == "--ipex" else "ipex_llm"
        if importlib.util.find_spec(mod) is not None:
            pytest.skip(f"{mod} is installed here")
    if "cuda" in args:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a CUDA GPU")
    if "results.csv/x.json" in args:
        (tmp_path / "results.csv").write_text("a file, not a directory")
    proc = sb(*args, cwd=tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("streambench: error: ") and message in lines[0], lines[0]
    assert not [p for p in tmp_path.glob("results*") if p.is_dir() or p.suffix != ".csv"]


def test_ctrl_c_keeps_finished_configurations(tmp_path):
    out = tmp_path / "r.jsonl"
    pairs = ",".join(f"{n}-16" for n in range(8, 8 + 12))
    proc = subprocess.Popen(
        [sys.executable, "-m", "streambench", "run", "--in-out", pairs, "--trials", "3",
         "-o", str(out), "-o", str(tmp_path / "r.json")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and out.read_text().count("\n") >= 1:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["interrupted"] is True
    statuses = [e["status"] for e in doc["configurations"]]
    assert statuses[0] == "ok" and len(statuses) < 12
    assert all(s == "ok" for s in statuses[:-1]) and statuses[-1] in ("ok", "interrupted")


def test_low_bit_sym_int4_through_ipex_llm(hub, tmp_path):
    """Runs where ipex-llm is installed (transformers 4.37 stack, see noxfile.py)."""
    pytest.importorskip("ipex_llm")
    proc = sb(
        "run", str(hub / "tiny-llama"), "--low-bit", "sym_int4", "--in-out", "16-4",
        "--warmup", "0", "--trials", "1", "-o", str(tmp_path / "r.csv"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "r.csv", newline="") as f:
        row = next(csv.DictReader(f))
    assert row["low_bit"] == "sym_int4" and row["status"] == "ok"
    assert row["actual input/output tokens"] == "16-4"
    assert "(ipex-llm):" in proc.stderr and "weight tensors quantized" in proc.stderr


@pytest.mark.parametrize(
    "kind, module", [("int8_weight_only", "torchao"), ("bnb_nf4", "bitsandbytes")]
)
def test_low_bit_through_torchao_and_bitsandbytes(hub, tmp_path, kind, module):
    """Runs where torchao / bitsandbytes are installed (not in the dev environment)."""
    pytest.importorskip(module)
    proc = sb(
        "run", str(hub / "tiny-llama"), "--low-bit", kind, "--in-out", "16-4",
        "--warmup", "0", "--trials", "1", "-o", str(tmp_path / "r.csv"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"({module}): 14 weight tensors quantized" in proc.stderr  # 2 layers x 7 linears
    with open(tmp_path / "r.csv", newline="") as f:
        row = next(csv.DictReader(f))
    assert row["low_bit"] == kind and row["status"] == "ok"
