"""Speed and quality of one model as float32, bfloat16 and int8 (issue 26's measured example).

A random-weights model is sure of nothing (perplexity near its vocabulary size), so its greedy
tokens flip under any rounding and its agreement says little. This script first *trains* the
tiny Llama (2 layers, hidden 128, the printable-ASCII vocabulary of :mod:`streambench.tiny`) for a
few hundred steps on this repository's own documentation (README, docs/, CHANGELOG: nothing is
downloaded), so that it predicts text with some confidence, then measures it with
``streambench run --config examples/quality-engines.yaml --quality`` on held-out paragraphs
(``--prompts``): transformers float32 (the reference), transformers bfloat16 and, where the
interpreter has ``streambench[openvino]``, OpenVINO with int8 weights (NNCF).

Writes ``benchmarks/results/quality_example.{json,md}`` (``--out DIR`` elsewhere).

Run:  .venv/bin/python benchmarks/quality_example.py [--python /path/to/openvino-venv/bin/python]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as C

ROOT = Path(__file__).resolve().parent.parent
#: the text it learns from, and the held-out part it is measured on (every 10th paragraph)
SOURCES = [
    "README.md",
    "CHANGELOG.md",
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")),
]
PRINTABLE = {chr(c) for c in range(32, 127)}


def paragraphs() -> tuple[str, list[str]]:
    """(training text, held-out paragraphs): printable ASCII only, every 10th paragraph of at
    least 200 characters held out."""
    train, held = [], []
    for name in SOURCES:
        text = (ROOT / name).read_text(encoding="utf-8")
        for i, para in enumerate(p for p in text.split("\n\n") if p.strip()):
            clean = "".join(ch if ch in PRINTABLE else " " for ch in para.replace("\n", " "))
            (held if i % 10 == 0 and len(clean) >= 200 else train).append(clean)
    return "\n".join(train), held


def train(out: Path, steps: int, seed: int) -> dict[str, Any]:
    """Train the tiny Llama on the training text; save it (model + tokenizer) to ``out``."""
    import torch

    from streambench.tiny import build_tokenizer, save_tiny_model

    torch.manual_seed(seed)
    model_dir = save_tiny_model(
        out, "llama", vocabulary="printable", hidden_size=128, intermediate_size=384,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
    )  # fmt: skip
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, trust_remote_code=False)
    tokenizer = build_tokenizer("printable")
    text, _held = paragraphs()
    ids = torch.tensor(tokenizer(text)["input_ids"], dtype=torch.long)
    seq, batch = 128, 16
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    model.train()
    t0, losses = time.perf_counter(), []
    for _ in range(steps):
        starts = torch.randint(0, len(ids) - seq - 1, (batch,))
        x = torch.stack([ids[s : s + seq] for s in starts])
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    model.save_pretrained(model_dir)
    return {
        "steps": steps,
        "train_tokens": len(ids),
        "train_s": time.perf_counter() - t0,
        "loss_first": losses[0],
        "loss_last_mean10": sum(losses[-10:]) / 10,
    }


def measure(python: str, model_dir: Path, prompts: Path, work: Path, trials: int) -> dict:
    """``streambench run`` of the example config (the OpenVINO row only where ``python`` has
    the extra); its results document."""
    has_ov = (
        subprocess.run(
            [python, "-c", "import optimum.intel, openvino"], capture_output=True
        ).returncode
        == 0
    )
    config = work / "q.yaml"
    rows = ["  - {engine: transformers}", "  - {engine: transformers, dtype: bfloat16}"]
    rows += ["  - {engine: openvino, low_bit: int8}"] if has_ov else []
    config.write_text("quality: true\nvariants:\n" + "\n".join(rows) + "\n")
    out = work / "q.json"
    proc = subprocess.run(
        [python, "-m", "streambench", "run", str(model_dir), "--config", str(config),
         "--prompts", str(prompts), "--output-len", "32", "--trials", str(trials),
         "--warmup", "1", "--export-dir", str(work / "cache"), "-o", str(out)],
        capture_output=True, text=True, cwd=work, timeout=3600,
        # this checkout's streambench, whatever the interpreter has installed
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore",
             "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"streambench run failed ({proc.returncode}): {proc.stderr[-3000:]}")
    return json.loads(out.read_text())


def rows_of(doc: dict) -> list[dict[str, Any]]:
    out = []
    for e in doc["configurations"]:
        q, agg = e.get("quality") or {}, e["aggregates"]
        out.append(
            {
                "label": e["label"],
                "weight_format": (e.get("execution") or {}).get("weight_format"),
                "first_token_ms": agg["first_token_s"]["median"] * 1e3,
                "ms_per_token": agg["rest_token_mean_s"]["median"] * 1e3,
                "perplexity": q.get("perplexity"),
                "tokens": q.get("tokens"),
                "agreement": q.get("agreement"),
                "first_divergence_mean": q.get("first_divergence_mean"),
            }
        )
    return out


def render(data: dict[str, Any]) -> str:
    t = data["training"]
    lines = [
        "### Speed and quality: float32, bfloat16, int8 (a tiny Llama trained on this repo's docs)",
        "",
        f"Trained {t['steps']} steps on {t['train_tokens']} characters in {t['train_s']:.0f} s "
        f"(loss {t['loss_first']:.2f} -> {t['loss_last_mean10']:.2f}); measured on "
        f"{data['held_out']} held-out paragraphs, 32 new tokens each, {data['trials']} trials.",
        "",
        C.md_table(
            [
                "configuration",
                "weights",
                "first token (ms)",
                "ms/token",
                "perplexity",
                "agreement with float32",
                "first divergence (mean position)",
            ],
            [
                [
                    r["label"].split(" ", 1)[1] if " " in r["label"] else r["label"],
                    r["weight_format"] or "",
                    C.fmt(r["first_token_ms"], 2),
                    C.fmt(r["ms_per_token"], 3),
                    C.fmt(r["perplexity"], 3),
                    "reference" if r["agreement"] is None else f"{100 * r['agreement']:.1f} %",
                    C.fmt(r["first_divergence_mean"], 1),
                ]
                for r in data["rows"]
            ],
        ),
    ]
    return "\n".join(lines) + "\n\n" + C.machine_line(data["machine"]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="the interpreter to run with")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--out", default=None, help="default benchmarks/results")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        training = train(work / "tiny-docs", args.steps, seed=0)
        _text, held = paragraphs()
        prompts = work / "held-out.jsonl"
        prompts.write_text("".join(json.dumps({"prompt": p[:400]}) + "\n" for p in held))
        doc = measure(args.python, work / "tiny-docs", prompts, work, args.trials)
    data = {
        "training": training,
        "held_out": len(held),
        "trials": args.trials,
        "rows": rows_of(doc),
        "machine": C.machine_info(),
    }
    C.write_results("quality_example", data, render(data), C.out_dir(args.out, False))
    print(render(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
