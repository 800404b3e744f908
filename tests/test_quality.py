"""Quality beside speed (issue 26): ``streambench run --quality`` measures perplexity on the
workload's texts and the agreement of greedy tokens with a reference configuration after the
timed trials; the results carry a validated ``quality`` object; ``compare --max-quality-drop``
gates on it and fails closed. Real runs of tiny models in subprocesses (their own worker
processes: the reference's greedy tokens travel in its result); no download."""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streambench.errors import UsageError
from streambench.results.quality import agreement
from streambench.results.validate import validate_document
from streambench.tiny import save_tiny_model

ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
QUICK = ("--in-out", "16-8", "--warmup", "0", "--trials", "2", "--device", "cpu")


def sb(*args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streambench", *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=timeout,
    )


def usage_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def dtype_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """``--dtype float32,bfloat16 --quality`` on a tiny Llama with a tokenizer, each
    configuration in its own worker process (the default), JSON and CSV written."""
    where = tmp_path_factory.mktemp("quality")
    model = save_tiny_model(where / "tiny", "llama")
    out, table = where / "r.json", where / "r.csv"
    proc = sb("run", str(model), *QUICK, "--dtype", "float32,bfloat16", "--quality",
              "-o", str(out), "-o", str(table))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return out, proc


def _quality(path: Path) -> list[dict]:
    return [c["quality"] for c in json.loads(path.read_text())["configurations"]]


def test_dtype_sweep_reports_perplexity_and_bf16_agreement_with_fp32(dtype_run):
    out, proc = dtype_run
    doc = json.loads(out.read_text())
    fp32, bf16 = doc["configurations"]
    assert [c["config"]["dtype"] for c in (fp32, bf16)] == ["float32", "bfloat16"]
    assert [c["settings"]["further"] for c in (fp32, bf16)] == [
        {"dtype": "float32"},
        {"dtype": "bfloat16"},
    ]
    for c in (fp32, bf16):
        q = c["quality"]
        # a random-weights model over a byte vocabulary: far from sure, never below 1
        assert 1 < q["perplexity"] < 10_000 and math.isfinite(q["perplexity"])
        assert q["texts"] == 1 and q["context_length"] == 24  # 16 in + 8 out
        assert q["tokens"] == 23 and len(q["greedy"][0]) == 23
    # bf16 rounds the same weights: close perplexity, not the same numbers
    assert abs(bf16["quality"]["perplexity"] / fp32["quality"]["perplexity"] - 1) < 0.05
    assert bf16["quality"]["reference"] == fp32["id"]
    share = bf16["quality"]["agreement"]
    assert 0 <= share <= 1
    expected = agreement(bf16["quality"]["greedy"], fp32["quality"]["greedy"])
    assert (share, bf16["quality"]["first_divergence_mean"]) == pytest.approx(expected)
    # the first configuration is the reference: no agreement, with the reason
    assert fp32["quality"]["reference"] is None and fp32["quality"]["agreement"] is None
    assert "first configuration" in fp32["quality"]["reasons"]["agreement"]
    assert "agreement" in proc.stdout and "perplexity" in proc.stdout  # the summary says it


def test_csv_appends_quality_columns(dtype_run):
    out, _proc = dtype_run
    rows = list(csv.DictReader(out.with_suffix(".csv").open()))
    header = list(rows[0])
    assert header[-6:] == [
        "perplexity", "quality tokens", "agreement", "first divergence mean",
        "quality reference", "lm-eval",
    ]  # fmt: skip
    assert float(rows[0]["perplexity"]) > 1 and rows[0]["agreement"] == ""
    assert 0 <= float(rows[1]["agreement"]) <= 1


def test_agreement_of_identical_numerics_is_one(tmp_path):
    """Two configurations that differ only in the cache implementation (a generate() setting:
    the same forward pass), each loaded in its own worker process: every greedy token agrees."""
    out = tmp_path / "r.json"
    proc = sb("run", *QUICK, "--dtype", "float32", "--cache-implementation", "dynamic,static",
              "--quality", "-o", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    first, second = _quality(out)
    assert second["agreement"] == 1.0
    assert second["first_divergence_mean"] == len(second["greedy"][0])
    assert second["perplexity"] == pytest.approx(first["perplexity"], rel=1e-6)


def test_quality_reference_names_a_configuration(tmp_path):
    """``--quality-reference``: a label that is no configuration fails before anything loads;
    the options that need --quality say so."""
    bad = sb("run", *QUICK, "--dtype", "float32,bfloat16", "--quality", "--quality-reference",
             "nothing-like-it")  # fmt: skip
    assert "--quality-reference 'nothing-like-it'" in usage_error(bad)
    assert "--quality" in usage_error(sb("run", *QUICK, "--quality-reference", "x"))
    assert "--dtype 'float8'" in usage_error(sb("run", *QUICK, "--dtype", "float32,float8"))


# -- a results file from elsewhere ---------------------------------------------------------------
HOSTILE = [
    ("perplexity", "12", "quality.perplexity"),
    ("perplexity", 0.5, "quality.perplexity"),
    ("perplexity", 10**400, "quality.perplexity"),
    ("agreement", 1.5, "quality.agreement"),
    ("agreement", -0.1, "quality.agreement"),
    ("agreement", float("nan"), "quality.agreement"),
    ("agreement", True, "quality.agreement"),
    ("first_divergence_mean", float("inf"), "quality.first_divergence_mean"),
    ("tokens", -3, "quality.tokens"),
    ("tokens", 2.5, "quality.tokens"),
    ("context_length", 0, "quality.context_length"),
    ("reference", ["x"], "quality.reference"),
    ("greedy", "abc", "quality.greedy"),
    ("greedy", [[1, -1]], "quality.greedy[0][1]"),
    ("greedy", [[1, 2**40]], "quality.greedy[0][1]"),
    ("greedy", [5], "quality.greedy[0]"),
    ("reasons", ["x"], "quality.reasons"),
    ("reasons", {"agreement": 3}, "quality.reasons.agreement"),
    ("lm_eval", {"task": {"acc": "0.5"}}, "quality.lm_eval.task.acc"),
    ("lm_eval", {"task": 1}, "quality.lm_eval.task"),
]


@pytest.mark.parametrize(
    ("key", "value", "where"), HOSTILE, ids=[f"{k}-{i}" for i, (k, _v, _w) in enumerate(HOSTILE)]
)
def test_hostile_quality_refused_naming_the_place(dtype_run, key, value, where):
    doc = json.loads(dtype_run[0].read_text())
    bad = copy.deepcopy(doc)
    bad["configurations"][1]["quality"][key] = value
    with pytest.raises(UsageError) as exc:
        validate_document(bad, "r.json")
    assert f"r.json: configurations[1].{where} is" in str(exc.value)
    assert "\n" not in str(exc.value)


def test_hostile_quality_not_an_object(dtype_run):
    doc = json.loads(dtype_run[0].read_text())
    doc["configurations"][0]["quality"] = "great"
    with pytest.raises(UsageError, match=r"configurations\[0\]\.quality is a string"):
        validate_document(doc, "r.json")
    doc["configurations"][0]["quality"] = None  # no quality: fine
    validate_document(doc, "r.json")


# -- compare -------------------------------------------------------------------------------------
def _write(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc))
    return path


def test_compare_gate_on_quality(dtype_run, tmp_path):
    """Pass when quality holds, fail (exit 1) when perplexity rose or agreement fell beyond
    --max-quality-drop, fail closed when one side has no quality; exit 2 for a bad value."""
    old = dtype_run[0]
    doc = json.loads(old.read_text())
    same = sb("compare", str(old), str(old), "--max-quality-drop", "1%")
    assert same.returncode == 0, same.stdout + same.stderr
    assert "perplexity" in same.stdout and "agreement" in same.stdout

    worse = copy.deepcopy(doc)
    worse["configurations"][1]["quality"]["perplexity"] *= 1.10
    worse["configurations"][1]["quality"]["agreement"] *= 0.5
    proc = sb("compare", str(old), str(_write(tmp_path / "w.json", worse)),
              "--max-quality-drop", "5%")  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "quality drop" in proc.stdout and "perplexity rose 10.0%" in proc.stdout
    assert "agreement fell 50.0%" in proc.stdout
    # within the allowed drop: passes
    ok = sb("compare", str(old), str(tmp_path / "w.json"), "--max-quality-drop", "60%")
    assert ok.returncode == 0, ok.stdout + ok.stderr

    none = copy.deepcopy(doc)
    for c in none["configurations"]:
        del c["quality"]
    path = _write(tmp_path / "n.json", none)
    closed = sb("compare", str(old), str(path), "--max-quality-drop", "5%")
    assert closed.returncode == 1, closed.stdout + closed.stderr
    assert "NEW has no quality and OLD has" in closed.stdout
    assert sb("compare", str(old), str(path)).returncode == 0  # no quality gate asked

    lost = copy.deepcopy(doc)
    lost["configurations"][1]["quality"]["perplexity"] = None
    lost["configurations"][1]["quality"]["reasons"]["perplexity"] = "engine gave no logits"
    proc = sb("compare", str(old), str(_write(tmp_path / "l.json", lost)),
              "--max-quality-drop", "5%")  # fmt: skip
    assert proc.returncode == 1 and "NEW has no perplexity (engine gave no logits)" in proc.stdout

    assert "--max-quality-drop" in usage_error(
        sb("compare", str(old), str(old), "--max-quality-drop", "nan")
    )


def test_report_draws_speed_against_quality(dtype_run, tmp_path):
    pytest.importorskip("plotly")
    page = tmp_path / "r.html"
    proc = sb("report", str(dtype_run[0]), "-o", str(page))
    assert proc.returncode == 0, proc.stderr
    text = page.read_text()
    assert '"first_divergence_mean"' in text  # the page's data: only the quality payload


# -- the reference rule (no model loaded) --------------------------------------------------------
def _settings(*argv: str, config: str | None = None):
    from streambench.cli.run import build_parser
    from streambench.spec.run import build_run_settings

    args = build_parser().parse_args(["run", *argv, *(["--config", config] if config else [])])
    return build_run_settings(args)[0]


def _references(settings) -> dict[str, tuple[str | None, str]]:
    from streambench.runners.local.plan import iter_plan, new_result
    from streambench.runners.local.quality import reference_of

    out = {}
    for spec, vi, n_in, n_out, batch in iter_plan(settings):
        result = new_result(settings, spec.name, n_in, n_out, batch, vi)
        out[str(result.label)] = reference_of(settings, result)
    return out


def test_reference_is_the_first_earlier_configuration_differing_in_one_setting(tmp_path):
    """dtype x attention: each configuration's reference differs from it in one setting only
    (never in two), is earlier in the sweep, and of the same lengths; the first has none."""
    settings = _settings("--dtype", "float32,bfloat16", "--attn-implementation", "eager,sdpa",
                         "--in-out", "8-4,16-4", "--quality")  # fmt: skip
    refs = _references(settings)
    base = "streambench/tiny-llama"
    fp32_eager = f"{base}|8-4|bs1|attn_implementation=eager|dtype=float32"
    assert refs[f"{base} 8-4 bs1 dtype=float32 attn=eager"] == (
        None,
        "this is the sweep's first configuration of this model, lengths and batch size",
    )
    assert refs[f"{base} 8-4 bs1 dtype=float32 attn=sdpa"][0] == fp32_eager
    assert refs[f"{base} 8-4 bs1 dtype=bfloat16 attn=eager"][0] == fp32_eager
    # bf16 + sdpa differs from fp32 + eager in two settings: its reference is fp32 + sdpa
    assert refs[f"{base} 8-4 bs1 dtype=bfloat16 attn=sdpa"][0] == (
        f"{base}|8-4|bs1|attn_implementation=sdpa|dtype=float32"
    )
    assert refs[f"{base} 16-4 bs1 dtype=bfloat16 attn=eager"][0] == fp32_eager.replace(
        "8-4", "16-4"
    )


def test_quality_reference_and_config_key(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("quality: true\ndtype: [float32, bfloat16, float16]\n")
    settings = _settings("--quality-reference", "streambench/tiny-llama 32-32 bs1 dtype=bfloat16",
                         config=str(config))  # fmt: skip
    assert settings.quality and settings.variants == [
        {"dtype": "float32"}, {"dtype": "bfloat16"}, {"dtype": "float16"},
    ]  # fmt: skip
    refs = _references(settings)
    bf16 = "streambench/tiny-llama|32-32|bs1|dtype=bfloat16"
    assert [r[0] for r in refs.values()] == [bf16, None, bf16]
    with pytest.raises(UsageError, match=r"config .*'quality'"):
        config.write_text("quality: maybe\n")
        _settings(config=str(config))


def test_prompt_file_texts_are_scored_in_process(tmp_path):
    """``--prompts``: every prompt is one scored text (as the tokenizer made it); in one process
    (``--isolate none``) the agreement is linked the same way."""
    model = save_tiny_model(tmp_path / "tiny", "llama")
    prompts = tmp_path / "p.txt"
    lines = ["The clock stopped.", "A girl came in with a watch.", "He opened the shop at seven."]
    prompts.write_text("\n".join(lines) + "\n")
    out = tmp_path / "r.json"
    proc = sb("run", str(model), "--prompts", str(prompts), "--output-len", "4", "--warmup", "0",
              "--trials", "1", "--device", "cpu", "--isolate", "none", "--quality",
              "--cache-implementation", "dynamic,static", "-o", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    first, second = _quality(out)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    lengths = [len(tok(line).input_ids) for line in lines]
    assert first["texts"] == 3 and first["tokens"] == sum(n - 1 for n in lengths)
    assert first["context_length"] == max(lengths)
    assert second["agreement"] == 1.0 and second["reference"] is not None


def test_low_bit_is_an_axis_and_a_variant_setting(tmp_path):
    """``--low-bit none,KIND`` is a sweep axis (``none``: the unquantized model, the reference);
    a config's ``variants:`` gives each engine its own low-bit, and a row that differs from the
    baseline in two settings (engine and low-bit) is compared with that baseline."""
    settings = _settings("--low-bit", "none,int8_weight_only", "--quality")
    assert settings.low_bit is None
    assert settings.variants == [{}, {"low_bit": "int8_weight_only"}]
    refs = _references(settings)
    base = "streambench/tiny-llama"
    assert refs[f"{base} 32-32 bs1 low-bit=int8_weight_only"][0] == f"{base}|32-32|bs1"
    one = _settings("--low-bit", "int8_weight_only")  # one kind: the sweep's, not an axis
    assert one.low_bit == "int8_weight_only" and one.variants == [{}]

    config = tmp_path / "v.yaml"
    config.write_text(
        "variants:\n  - {engine: transformers}\n  - {engine: transformers, dtype: bfloat16}\n"
        "  - {engine: openvino, low_bit: int8}\n"
    )
    settings = _settings("--quality", config=str(config))
    assert settings.variants[2] == {"low_bit": "int8", "engine": "openvino"}
    refs = _references(settings)
    assert refs[f"{base} 32-32 bs1 low-bit=int8 engine=openvino"][0] == f"{base}|32-32|bs1"
    assert refs[f"{base} 32-32 bs1 dtype=bfloat16"][0] == f"{base}|32-32|bs1"

    # a product that makes a combination an engine does not have: refused, the way out named
    refused = r"--engine transformers with --low-bit int8: .*`variants:` list"
    with pytest.raises(UsageError, match=refused):
        _settings("--engine", "transformers,openvino", "--low-bit", "none,int8")
