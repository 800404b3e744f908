"""Tensor-parallel generation with transformers (``tp_plan="auto"``) under ``torchrun``: every
rank times its own ``generate()``, rank 0 prints once, and one table shows every rank.

Launch (one process per GPU; on CPU the ranks talk over gloo)::

    torchrun --nproc_per_node 2 examples/torchrun_tp.py                 # built-in tiny model
    torchrun --nproc_per_node 8 examples/torchrun_tp.py --model PATH --dtype bfloat16
    # two nodes of 8 GPUs (run on each node, node 0's address as --master_addr):
    torchrun --nnodes 2 --node_rank 0 --nproc_per_node 8 --master_addr 10.0.0.1 \\
        --master_port 29500 examples/torchrun_tp.py --model PATH --dtype bfloat16

Without ``--model`` each rank writes the built-in tiny random Llama (4 heads, 2 KV heads, width
64: divisible by 2 and 4 ranks) to its own temporary folder; the weights are seeded, so all
ranks load the same model. ``--json PATH`` writes the cross-rank view (rank 0 only).
Exit status: 0 when every rank generated the same number of tokens without error, else 1.
Needs transformers >= 4.56 (``dtype=``; tensor parallelism itself since 4.50) and accelerate.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import torch
import torch.distributed as dist
from transformers import AutoModelForCausalLM

from streambench import TimingStreamer
from streambench.cluster import gather_summaries
from streambench.engines.transformers.tensor_parallel import tensor_parallel_kwargs
from streambench.ranks import init_distributed, should_print


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="local model folder or hub id (default: built-in tiny Llama)")
    p.add_argument("--dtype", default="float32", help="float32, bfloat16, float16")
    p.add_argument("--prompt-tokens", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--runs", type=int, default=3, help="measured runs after the warm-up")
    p.add_argument("--timeout-s", type=float, default=600.0, help="collective/gather timeout")
    p.add_argument("--json", help="write the cross-rank summary here (rank 0)")
    args = p.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    rank = int(os.environ.get("RANK", "0"))
    with tempfile.TemporaryDirectory(prefix=f"streambench-tp-rank{rank}-") as tmp:
        path = args.model
        if path is None:  # before init: save_pretrained() writes on rank 0 only once initialized
            from streambench.tiny import save_tiny_model

            path = str(save_tiny_model(tmp))
        # Our own process group, with a timeout: a dead rank cannot hang the others for 30 min.
        init_distributed(device, timeout_s=args.timeout_s)
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=getattr(torch, args.dtype), **tensor_parallel_kwargs()
        )
    model.eval()
    # Sharded weights are DTensors: count what this rank holds.
    local_params = sum(getattr(p, "to_local", lambda p=p: p)().numel() for p in model.parameters())

    torch.manual_seed(0)  # the same prompt on every rank (tensor parallelism needs it)
    vocab = model.config.vocab_size
    ids = torch.randint(3, vocab, (1, args.prompt_tokens)).to(model.device)
    streamer = TimingStreamer(model.device, do_print=True)  # prints on rank 0 only
    error: BaseException | None = None
    try:
        with torch.inference_mode():
            for _ in range(args.warmup + args.runs):
                streamer.mark_start()
                out = model.generate(
                    ids,
                    streamer=streamer,
                    max_new_tokens=args.new_tokens,
                    min_new_tokens=args.new_tokens,
                    do_sample=False,
                    pad_token_id=0,
                )
    except Exception as exc:  # noqa: BLE001 - every rank joins the gather, a failed one with its error
        error = exc
    cluster = gather_summaries(streamer, error=error, warmup=args.warmup, timeout_s=args.timeout_s)
    cluster.report()
    if error is not None:
        print(f"rank {rank}: generate() failed: {error!r}", file=sys.stderr)
    if args.json and rank == 0:
        doc = cluster.to_dict()
        doc["example"] = {
            "local_parameters": local_params,
            "tokens": out[0].tolist() if error is None else None,
            "device": str(model.device),
            "pid": os.getpid(),
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
        if should_print():
            print(f"cross-rank summary written to {args.json}")
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0 if cluster.ok and error is None else 1


if __name__ == "__main__":
    sys.exit(main())
