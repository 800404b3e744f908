"""streambench.endpoint against a real OpenAI-compatible server: ``transformers serve`` on
127.0.0.1, serving a tiny random-weight Llama built locally (no download), on the CPU.

Needs the ``transformers[serving]`` extra (FastAPI, uvicorn), which the ``dev`` extra installs;
skipped with a reason where it is missing. The server starts once per module (5-20 s) and is
killed by the fixture's finalizer. Runtime: ~50 s on 2 shared cores (server start-up, and a local
``streambench run`` of the same model for the comparison).
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

from streambench.endpoint import EndpointSpec, run_endpoint

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("uvicorn") is None,
        reason="transformers serve needs the serving extra: pip install 'transformers[serving]'",
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("transformers.cli.transformers") is None,
        reason="this transformers has no `transformers serve` command (transformers >= 5 has)",
    ),
    pytest.mark.slow,
]

N_IN, N_OUT = 16, 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(base URL, model directory) of a running ``transformers serve``."""
    from streambench.tiny import save_tiny_model

    model_dir = str(save_tiny_model(tmp_path_factory.mktemp("served") / "tiny-llama", "llama"))
    port = free_port()
    log = tmp_path_factory.mktemp("serve-log") / "serve.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "transformers.cli.transformers",
                "serve",
                model_dir,
                "--port",
                str(port),
                "--device",
                "cpu",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"transformers serve exited ({proc.returncode}):\n{log.read_text()}")
            try:
                if httpx.get(f"{base}/health", timeout=2, trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"transformers serve did not come up in 120 s:\n{log.read_text()}")
            time.sleep(0.3)
        yield f"{base}/v1", model_dir
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def check_consistent(res, n_requests):
    s = res.summary
    assert s.ok == n_requests and s.failed == 0, s.first_errors
    for r in res.measured:
        assert r.ttft_s > 0 and r.e2e_s >= r.ttft_s
        assert sum(r.chunk_tokens) == r.output_tokens >= 1
        assert r.chunk_times_s[0] == r.ttft_s
        assert list(r.chunk_times_s) == sorted(r.chunk_times_s)
        if r.output_tokens > 1:
            assert r.tpot_s == pytest.approx((r.e2e_s - r.ttft_s) / (r.output_tokens - 1))
            assert len(r.itl_s) == r.output_tokens - 1
            # the gaps end at the last chunk that carried tokens: a byte-level model's text can
            # arrive in a chunk after the tokens (counted from usage) that made it
            last = max(t for t, k in zip(r.chunk_times_s, r.chunk_tokens) if k > 0)
            assert sum(r.itl_s) == pytest.approx(last - r.ttft_s)


def test_completions_against_transformers_serve(served):
    url, model_dir = served
    spec = EndpointSpec(
        url=url,
        model=model_dir,
        prompt_tokens=N_IN,
        output_tokens=N_OUT,
        requests=4,
        warmup=1,
        concurrency=2,
        tokenizer=model_dir,
        # transformers serve refuses ignore_eos/min_tokens (422); it takes a generation config
        extra_body={"generation_config": json.dumps({"min_new_tokens": N_OUT, "do_sample": False})},
        slo={"ttft": 30.0},
    )
    res = run_endpoint(spec)
    check_consistent(res, 4)
    # the server refused the forcing fields: found by the 1-token probe and said
    assert "ignore_eos" in res.dropped_fields and "ignore_eos" not in res.sent_fields
    assert [r.status for r in res.records if r.index < 0][:1] == [422]
    for r in res.measured:
        # the token counts come from the server's usage, split over chunks by the tokenizer
        assert r.token_count == "usage+tokenizer"
        assert r.output_tokens == N_OUT and r.prompt_tokens == N_IN  # exact prompts
        assert r.finish_reason == "length"
    s = res.summary
    assert s.total_output_tokens == 4 * N_OUT and s.slo_attained == 1.0
    assert s.ttft_s.n == 4 and s.itl_s.n == 4 * (N_OUT - 1)


def test_chat_and_failures_against_transformers_serve(served):
    url, model_dir = served
    res = run_endpoint(
        EndpointSpec(
            url=url,
            model=model_dir,
            chat=True,
            prompt_tokens=8,
            output_tokens=4,
            requests=2,
            warmup=0,
            force="off",
        )
    )
    check_consistent(res, 2)
    # the chat template wraps the prompt: more prompt tokens than the 8 of the message
    assert all(r.prompt_tokens > 8 for r in res.measured)
    # a model the server does not serve: HTTP 400, counted, never timed
    res = run_endpoint(
        EndpointSpec(url=url, model="no-such-model", requests=2, warmup=0, force="off")
    )
    assert res.summary.errors == {"http": 2} and res.summary.ttft_s is None
    assert "HTTP 400" in res.summary.first_errors[0]


def test_cli_served_vs_local_generate(served, tmp_path):
    """The same tiny model, benchmarked locally (``streambench run``) and served
    (``streambench endpoint``), in the same report format; ``compare`` matches the two."""
    url, model_dir = served
    served_json, local_json = str(tmp_path / "served.json"), str(tmp_path / "local.json")
    gen = json.dumps({"min_new_tokens": N_OUT, "do_sample": False})
    cmd = [sys.executable, "-m", "streambench", "endpoint", url, "--model", model_dir]
    cmd += ["--in-out", f"{N_IN}-{N_OUT}", "--requests", "3", "--tokenizer", model_dir]
    cmd += ["--extra-body", json.dumps({"generation_config": gen}), "-o", served_json]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "server refused ignore_eos" in proc.stdout
    run = [sys.executable, "-m", "streambench", "run", model_dir, "--in-out", f"{N_IN}-{N_OUT}"]
    proc = subprocess.run([*run, "--trials", "2", "-o", local_json], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    served_doc = json.loads(open(served_json).read())
    local_doc = json.loads(open(local_json).read())
    s_entry, l_entry = served_doc["configurations"][0], local_doc["configurations"][0]
    assert s_entry["id"].split("|")[1:3] == l_entry["id"].split("|")[1:3]  # in-out, bs
    assert s_entry["actual_input_tokens"] == l_entry["actual_input_tokens"] == N_IN
    assert s_entry["actual_output_tokens"] == l_entry["actual_output_tokens"] == N_OUT
    # the same fields, the same meaning: first token, rest tokens, per-token lists
    for key in ("first_token_s", "rest_token_mean_s", "decode_tokens_per_s"):
        assert s_entry["aggregates"][key]["n"] >= 2 and l_entry["aggregates"][key]["n"] == 2
    assert len(s_entry["trials"][0]["token_latencies_s"]) == N_OUT
    proc = subprocess.run(
        [sys.executable, "-m", "streambench", "compare", local_json, served_json],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode in (0, 1), proc.stderr  # 1: served slower than local (HTTP, server)
    out = " ".join(proc.stdout.split())
    assert "missing in NEW" not in out and "new in NEW" not in out, proc.stdout
    assert "tiny-llama 16-8 bs1" in out and "first token" in out


def test_two_point_load_sweep_against_transformers_serve(served, tmp_path):
    """A rate sweep (2 points, constant arrivals) through the real server: one entry per point,
    the client's lag recorded, the asked percentiles in the JSON."""
    url, model_dir = served
    out = str(tmp_path / "sweep.json")
    gen = json.dumps({"min_new_tokens": 4, "do_sample": False})
    cmd = [sys.executable, "-m", "streambench", "endpoint", url, "--model", model_dir]
    cmd += ["--in-out", "8-4", "--requests", "3", "--request-rate", "2,inf", "--arrivals"]
    cmd += ["constant", "--percentiles", "50,95", "--max-error-rate", "0.5", "-o", out]
    cmd += ["--extra-body", json.dumps({"generation_config": gen})]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(open(out).read())
    entries = doc["configurations"]
    assert [e["settings"].get("request_rate") for e in entries] == [2.0, None]
    for e in entries:
        assert e["status"] == "ok" and e["aggregates"]["endpoint"]["ok"] == 3
        assert set(e["aggregates"]["endpoint"]["percentiles"]["ttft_s"]) == {"p50", "p95"}
    assert entries[0]["settings"]["further"] == {"arrivals": "constant"}
    assert entries[0]["client"]["send_lag_s"]["n"] == 2


def test_prompt_file_against_transformers_serve(served, tmp_path):
    """A prompt file (JSONL with per-prompt output lengths) through the real server: every prompt
    sent once, each request recording its prompt index and the output length it asked for."""
    url, model_dir = served
    prompts = tmp_path / "p.jsonl"
    rows = [
        {"prompt": "The clockmaker opened his shop", "output_tokens": 3},
        {"prompt": "A girl brought a pocket watch that had stopped", "output_tokens": 5},
    ]
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = str(tmp_path / "p.json")
    gen = json.dumps({"do_sample": False})
    cmd = [sys.executable, "-m", "streambench", "endpoint", url, "--model", model_dir]
    cmd += ["--prompts", str(prompts), "--output-len", "from-data", "--warmup", "0"]
    cmd += ["--extra-body", json.dumps({"generation_config": gen}), "-o", out]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (entry,) = json.loads(open(out).read())["configurations"]
    requests = [r for r in entry["requests"] if not r["warmup"]]
    assert sorted(r["prompt_index"] for r in requests) == [0, 1]
    assert all(r["ok"] and r["output_md5"] for r in requests)
