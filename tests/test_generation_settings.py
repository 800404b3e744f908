"""The settings people tune, each a sweep axis of ``streambench run`` (issue 12): attention and
cache implementations, ``--compile``, sampling, assisted and prompt-lookup decoding,
``--generate-kwargs`` / ``--model-kwargs``, a config's ``variants:`` list and ipex-llm's
``test_api`` values. Real runs of the embedded tiny Llama (and a second tiny model saved by the
test as the assistant), in subprocesses; no download."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streambench.tiny import save_tiny_model

ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "HF_HUB_OFFLINE": "1", "COLUMNS": "120"}
QUICK = ("--in-out", "16-6", "--warmup", "0", "--trials", "1")


def sb(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streambench", *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=timeout,
    )


def configurations(path: Path) -> list[dict]:
    return json.loads(path.read_text())["configurations"]


def usage_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


# -- axes through the command line -----------------------------------------------------------
def test_two_value_attention_sweep_yields_two_configurations(tmp_path):
    """Through the isolation workers (the default for two configurations): the variants survive
    the JSON round trip and each configuration carries its setting (identity, CSV, title)."""
    out, table = tmp_path / "r.json", tmp_path / "r.csv"
    proc = sb(
        "run", *QUICK, "--attn-implementation", "eager,sdpa", "-o", str(out), "-o", str(table)
    )
    assert proc.returncode == 0, proc.stderr
    entries = configurations(out)
    assert [e["settings"]["further"] for e in entries] == [
        {"attn_implementation": "eager"},
        {"attn_implementation": "sdpa"},
    ]
    assert [e["status"] for e in entries] == ["ok", "ok"]
    assert entries[1]["id"].endswith("|attn_implementation=sdpa")
    assert "bs1 attn=sdpa" in proc.stdout  # the table title
    rows = list(csv.DictReader(table.open()))
    assert [r["attn_implementation"] for r in rows] == ["eager", "sdpa"]
    assert json.loads(out.read_text())["settings"]["isolate"] == "config"


def test_cache_implementation_axis_and_sampling_settings(tmp_path):
    out = tmp_path / "r.json"
    proc = sb(
        "run", *QUICK, "--isolate", "none", "--cache-implementation", "static,dynamic",
        "--do-sample", "--temperature", "0.7", "--top-k", "20", "--top-p", "0.9",
        "--generate-kwargs", '{"repetition_penalty": 1.1}', "-o", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    entries = configurations(out)
    assert [e["settings"]["further"]["cache_implementation"] for e in entries] == [
        "static",
        "dynamic",
    ]
    further = entries[0]["settings"]["further"]
    assert further["do_sample"] is True and further["temperature"] == 0.7
    assert further["generate_kwargs"] == '{"repetition_penalty":1.1}'
    assert all(e["actual_output_tokens"] == 6 for e in entries)  # lengths still forced


def test_sampling_is_reproducible_under_the_seed():
    """Every run reseeds: two runs of one configuration draw the same tokens."""
    import torch

    from streambench.engines.transformers import ModelSpec
    from streambench.engines.variant_load import prepare_model
    from streambench.runners.local.generate_call import PromptBatch, TimedGenerate
    from streambench.runners.local.plan import SweepSettings, build_prompt

    settings = SweepSettings([ModelSpec("streambench/tiny-llama", "embedded")], [(8, 12)], [1])
    variant = {"do_sample": True, "temperature": 1.5}
    loaded = prepare_model(settings.models[0], settings, variant, torch.device("cpu"))
    ids = build_prompt(loaded, 8, 1)
    batch = PromptBatch(ids, torch.ones_like(ids), 12)
    call = TimedGenerate(loaded, settings, variant, print)
    first, second = call(batch), call(batch)
    assert torch.equal(first, second) and first.shape[-1] == 8 + 12
    assert len(call.runs) == 2
    reseeded = dataclasses.replace(settings, seed=1)  # frozen: a changed copy
    call = TimedGenerate(loaded, reseeded, variant, print)
    assert not torch.equal(call(batch), first)  # another seed, other tokens (vocab 259, 12 draws)


def test_prompt_lookup_counts_tokens_and_reports_tokens_per_step(tmp_path):
    out, table = tmp_path / "r.json", tmp_path / "r.csv"
    proc = sb(
        "run", "--in-out", "32-16", "--warmup", "0", "--trials", "2", "--prompt-lookup", "4",
        "--isolate", "none", "-o", str(out), "-o", str(table),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (entry,) = configurations(out)
    assert entry["settings"]["further"] == {"prompt_lookup": 4}
    for trial in entry["trials"]:
        assert trial["new_tokens"] == 16 == sum(trial["step_tokens"])
        assert len(trial["token_latencies_s"]) == 16
        # the splitting rule: a step of k tokens gives each later token step/k; the first
        # step's time is the first token's, its companions get 0
        steps, tokens = trial["step_latencies_s"], trial["step_tokens"]
        assert sum(trial["token_latencies_s"]) == pytest.approx(sum(steps))
        assert trial["token_latencies_s"][1 : tokens[0]] == [0.0] * (tokens[0] - 1)
    per_step = entry["aggregates"]["tokens_per_step"]
    assert per_step["mean"] == pytest.approx(16 / len(entry["trials"][0]["step_tokens"]), rel=1)
    assert per_step["mean"] >= 1
    assert float(next(csv.DictReader(table.open()))["tokens/step"]) == pytest.approx(
        per_step["mean"], abs=1e-3
    )


def test_assisted_decoding_with_a_second_tiny_model(tmp_path):
    """The assistant: a tiny Llama saved by the test, with the embedded model's weights (same
    seed), so it proposes what the model would say and steps carry several tokens."""
    draft = save_tiny_model(tmp_path / "draft", "llama")
    out = tmp_path / "r.json"
    proc = sb(
        "run", "--in-out", "16-12", "--warmup", "0", "--trials", "1", "--isolate", "none",
        "--assistant-model", str(draft), "-o", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (entry,) = configurations(out)
    assert entry["settings"]["further"] == {"assistant_model": str(draft)}
    assert entry["actual_output_tokens"] == 12
    assert entry["aggregates"]["tokens_per_step"]["mean"] > 1
    assert "tokens/step" in proc.stdout


def test_speculative_decoding_with_batch_2_fails_that_configuration_only(tmp_path):
    out = tmp_path / "r.json"
    proc = sb("run", *QUICK, "--prompt-lookup", "3", "--batch-size", "1,2", "--isolate", "none",
              "-o", str(out))  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    ok, failed = configurations(out)
    assert ok["status"] == "ok" and failed["status"] == "failed"
    assert "batch size 1 only" in failed["error"]


def test_variants_list_in_the_config_through_workers(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(
        "in_out_pairs: ['16-6']\nwarm_up: 0\nnum_trials: 1\n"
        "variants:\n"
        "  - {attn_implementation: eager}\n"
        "  - {attn_implementation: sdpa, do_sample: true, temperature: 0.5}\n"
    )
    out = tmp_path / "r.json"
    proc = sb("run", "--config", str(config), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    furthers = [e["settings"]["further"] for e in configurations(out)]
    assert furthers == [
        {"attn_implementation": "eager"},
        {"attn_implementation": "sdpa", "do_sample": True, "temperature": 0.5},
    ]


def test_command_line_wins_over_a_variant(tmp_path):
    from streambench.cli.run import build_parser
    from streambench.spec.run import build_run_settings

    config = tmp_path / "c.yaml"
    config.write_text(
        "attn_implementation: [eager, sdpa]\nlookahead: 3\nmax_matching_ngram_size: 2\n"
    )
    args = build_parser().parse_args(
        ["run", "--config", str(config), "--attn-implementation", "sdpa"]
    )
    settings, _, _ = build_run_settings(args)
    assert settings.variants == [
        {
            "attn_implementation": "sdpa",
            "prompt_lookup": 3,
            "generate_kwargs": {"max_matching_ngram_size": 2},
        }
    ]


# -- bad input: one line, exit 2 ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--attn-implementation", "eager,nope"], "use one of eager"),
        (["--cache-implementation", "bogus"], "static"),
        (["--generate-kwargs", "{not json"], "--generate-kwargs: not valid JSON"),
        (["--generate-kwargs", "[1, 2]"], "is not a JSON object"),
        (["--generate-kwargs", '{"max_new_tokens": 9}'], "use --in-out"),
        (["--generate-kwargs", '{"streamer": null}'], "'streamer' is set by streambench"),
        (["--generate-kwargs", '{"custom_generate": "x/y"}'], "--trust-remote-code"),
        (["--model-kwargs", '{"trust_remote_code": true}'], "use --trust-remote-code"),
        (["--model-kwargs", '{"use_kernels": true}'], "--trust-remote-code"),
        (["--attn-implementation", "kernels-community/flash-attn"], "fetches an attention kernel"),
        (["--temperature", "0.5"], "--temperature needs --do-sample"),
        (["--compile-mode", "max-autotune"], "--compile-mode needs --compile"),
        (["--compile", "--warmup", "0"], "--warmup 1 or more"),
        (["--top-p", "1.5", "--do-sample"], "--top-p: '1.5' is out of range"),
        (["--prompt-lookup", "3", "--assistant-model", "x"], "not both"),
        (["--cache-implementation", "paged"], "refuses streamers"),
    ],
)
def test_bad_settings_fail_in_one_line(args, expected):
    assert expected in usage_error(sb("run", *args))


# -- ipex-llm all-in-one test_api ----------------------------------------------------------------
def test_test_api_values_map_to_settings():
    from streambench.spec.allinone import implied

    assert implied("transformer_int4", None) == {
        "device": "cpu", "dtype": None, "low_bit": "sym_int4", "optimize_model": False,
    }  # fmt: skip
    assert implied("transformer_int4_gpu", "asym_int4")["low_bit"] == "asym_int4"
    assert implied("transformer_int4_gpu", None)["dtype"] == "float32"
    assert implied("transformer_int4_fp16_gpu", None)["dtype"] == "float16"
    assert implied("bigdl_fp16_gpu", "sym_int4") == {
        "device": "xpu", "dtype": "float16", "low_bit": None, "optimize_model": False,
    }  # fmt: skip
    assert implied("pytorch_autocast_bf16", "sym_int4")["dtype"] == "bfloat16"
    assert implied("optimize_model", None)["optimize_model"] is True
    assert implied("optimize_model_gpu", None)["device"] == "xpu"
    assert implied("deepspeed_optimize_model_gpu", None, launched=True)["tp"] == "deepspeed"


def test_test_api_runs_as_a_sweep_axis(tmp_path):
    """pytorch_autocast_bf16 runs on this CPU in bfloat16; a second value is a second
    configuration (identity: test_api); --dtype on the command line wins."""
    config = tmp_path / "c.yaml"
    config.write_text("test_api: [pytorch_autocast_bf16]\nin_out_pairs: ['16-6']\n")
    out = tmp_path / "r.json"
    proc = sb("run", "--config", str(config), "--warmup", "0", "--trials", "1", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    (entry,) = configurations(out)
    assert entry["settings"]["further"] == {"test_api": "pytorch_autocast_bf16"}
    assert entry["config"]["dtype"] == "bfloat16" and entry["config"]["device"] == "cpu"
    proc = sb("run", "--config", str(config), "--warmup", "0", "--trials", "1",
              "--dtype", "float32", "-o", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert configurations(out)[0]["config"]["dtype"] == "float32"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("transformer_int4_gpu", "xpu"),  # needs a device this machine lacks, as --device xpu
        ("bigdl_fp16_gpu", "xpu"),
        ("deepspeed_optimize_model_gpu", "--tp deepspeed"),
        ("speculative_cpu", "--prompt-lookup"),
        ("no_such_api", "unknown value 'no_such_api'"),
        ("[pytorch_autocast_bf16, transformer_int4_gpu]", "need different devices"),
    ],
)
def test_test_api_values_that_cannot_run_here_fail_in_one_line(tmp_path, value, expected):
    config = tmp_path / "c.yaml"
    config.write_text(f"test_api: {value}\n")
    assert expected in usage_error(sb("run", "--config", str(config)))


def test_transformer_int4_without_ipex_llm_names_the_install(tmp_path):
    pytest.importorskip("torch")
    try:
        import ipex_llm  # noqa: F401

        pytest.skip("ipex-llm is installed here")
    except ImportError:
        pass
    config = tmp_path / "c.yaml"
    config.write_text("test_api: transformer_int4\nlow_bit: sym_int4\n")
    assert "ipex-llm" in usage_error(sb("run", "--config", str(config)))


# -- compare -----------------------------------------------------------------------------------
def test_compare_matches_by_every_setting_and_names_the_difference():
    from streambench.report import compare_documents

    def doc(further):
        settings = {"model": "m", "input_tokens": 8, "output_tokens": 4, "batch_size": 1}
        if further:
            settings["further"] = further
        stats = {"n": 1, "mean": 0.01, "median": 0.01, "stdev": 0.0, "min": 0.01, "max": 0.01,
                 "percentiles": {"50": 0.01}}  # fmt: skip
        entry = {"settings": settings, "config": {}, "status": "ok",
                 "aggregates": {"first_token_s": stats, "rest_token_mean_s": stats}}  # fmt: skip
        return {"schema": "streambench.results/2", "configurations": [entry]}

    rows, failed = compare_documents(doc({"attn_implementation": "sdpa"}), doc({}), 0.05)
    assert failed
    assert "attn_implementation sdpa vs (default)" in rows[0].problem
    rows, failed = compare_documents(doc({"compile": True}), doc({"compile": True}), 0.05)
    assert not failed


# -- compile -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_compile_compiles_in_the_warm_up_and_trials_do_not_recompile(tmp_path):
    """inductor on the CPU (needs the C++ compiler): ~40 s cold, a few seconds with a warm
    on-disk cache. One warm-up compiles prefill and decode; the trials reuse the graphs."""
    out, table = tmp_path / "r.json", tmp_path / "r.csv"
    proc = sb(
        "run", "--in-out", "8-4", "--warmup", "1", "--trials", "2", "--compile",
        "--isolate", "none", "-o", str(out), "-o", str(table), timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (entry,) = configurations(out)
    assert entry["settings"]["further"] == {"cache_implementation": "static", "compile": True}
    compiled = entry["compile"]
    assert compiled["compile_time_s"] > 0 and compiled["compiling_warmups"] == 1
    assert compiled["recompiled_trials"] == []
    assert compiled["inductor_cache"] in ("warm", "cold", "mixed")
    assert "compile" in proc.stdout and "RECOMPILED" not in proc.stdout
    assert float(next(csv.DictReader(table.open()))["compile time (s)"]) > 0
