"""One rank of the distributed tests (launched by tests/test_distributed_launch.py).

    torchrun --nproc_per_node 2 tests/dist_worker.py gather OUT
    torchrun --nproc_per_node 2 tests/dist_worker.py hardfail OUT --model PATH
    deepspeed --num_gpus 2 tests/dist_worker.py deepspeed OUT --model PATH

Every rank writes OUT/rank<N>.json with what it saw; lines printed by streambench are prefixed
with ``[r<N>]`` so the test can tell which rank printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from streambench import TimingStreamer
from streambench.distributed import gather_summaries, get_rank, init_distributed


def write_json(path: Path, data: dict) -> None:
    """Atomically: a rank stopped by the launcher never leaves half a file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def tagged(line: str) -> None:
    # one write per line: under PYTHONUNBUFFERED, print() writes the text and the newline apart,
    # and two ranks sharing the launcher's stdout could interleave them
    sys.stdout.write(f"[r{get_rank()}] {line}\n")
    sys.stdout.flush()


def fake_run(streamer: TimingStreamer, tokens: int) -> None:
    """A run through the real timing core, without a model (on_prompt / on_step / end)."""
    streamer.mark_start()
    streamer.on_prompt(1, 4)
    for _ in range(tokens):
        time.sleep(0.002)
        streamer.on_step(1)
    streamer.end()


def scenario_gather(out: Path) -> dict:
    init_distributed("cpu", timeout_s=60)
    rank = get_rank()
    seen: dict = {"pid": os.getpid()}

    # 1. both ranks print-enabled: only rank 0's lines appear; print_ranks="all" prints on both
    s = TimingStreamer("cpu", do_print=True, print_fn=tagged)
    fake_run(s, 4)
    fake_run(s, 4)
    loud = TimingStreamer("cpu", do_print=True, print_fn=lambda line: tagged("ALL " + line),
                          print_ranks="all")  # fmt: skip
    fake_run(loud, 3)
    c = gather_summaries(s, warmup=1)
    c.report(print_fn=tagged)
    seen["ok"] = c.to_dict()

    # 2. different numbers of tokens: detected, no hang
    m = TimingStreamer("cpu")
    fake_run(m, 8 if rank == 0 else 5)
    seen["mismatch"] = gather_summaries(m).to_dict()

    # 3. rank 1 failed: it joins with its error, rank 0 still gets a view
    f = TimingStreamer("cpu")
    error = None
    try:
        if rank == 1:
            raise RuntimeError("boom on rank 1")
        fake_run(f, 4)
    except RuntimeError as exc:
        error = exc
    seen["failed"] = gather_summaries(f, error=error).to_dict()

    # 4. details to rank 0 only
    seen["dst"] = gather_summaries(s, dst=0).to_dict()

    # 5. rank 1 comes late (after rank 0's timeout): rank 0 reports it missing, then rank 1
    #    finds the gather abandoned and returns rank 0's row without running a collective
    if rank == 1:
        time.sleep(4.0)
    t = time.perf_counter()
    seen["late"] = gather_summaries(s, timeout_s=1.0).to_dict()
    seen["late_wait_s"] = time.perf_counter() - t

    # 6. and the next gather works again
    seen["after"] = gather_summaries(s, timeout_s=30).to_dict()
    return seen


def _load(model: str) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()


def scenario_deepspeed(out: Path, model_path: str) -> dict:
    import datetime

    import deepspeed

    from streambench import BenchmarkWrapper

    deepspeed.init_distributed(dist_backend="gloo", timeout=datetime.timedelta(seconds=60))
    model = _load(model_path)
    engine = deepspeed.init_inference(
        model, tensor_parallel={"tp_size": 2}, dtype=torch.float32, replace_with_kernel_inject=False
    )
    wrapped = BenchmarkWrapper(engine, do_print=True, print_fn=tagged)  # the seed's patch
    torch.manual_seed(0)
    ids = torch.randint(3, 259, (1, 8))
    with torch.inference_mode():
        for _ in range(3):
            output = wrapped.generate(
                ids, max_new_tokens=6, min_new_tokens=6, do_sample=False, pad_token_id=0
            )
    cluster = gather_summaries(wrapped, warmup=1)
    cluster.report(print_fn=tagged)
    q = engine.module.model.layers[0].self_attn.q_proj.weight
    return {
        "cluster": cluster.to_dict(),
        "engine": type(engine).__name__,
        "wrapper_device": wrapped.streamer.device,
        "first_cost": wrapped.first_cost,
        "rest_cost_mean": wrapped.rest_cost_mean,
        "q_proj_shape": list(q.shape),
        "tokens": output[0].tolist(),
    }


def scenario_hardfail(out: Path, model_path: str) -> dict:
    """Tensor parallel; rank 1 raises inside its 3rd forward pass, while rank 0 waits in the
    model's all-reduce. Rank 1 joins the gather with its error, finds rank 0 missing after the
    timeout, writes its view and exits non-zero; the launcher then stops rank 0."""
    from transformers import AutoModelForCausalLM

    from streambench.distributed import tensor_parallel_kwargs

    init_distributed("cpu", timeout_s=60)
    rank = get_rank()
    model = AutoModelForCausalLM.from_pretrained(
        model_path, dtype=torch.float32, **tensor_parallel_kwargs()
    ).eval()
    calls = {"n": 0}

    def boom(module, args, kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("injected failure on rank 1")

    if rank == 1:
        model.model.layers[1].register_forward_pre_hook(boom, with_kwargs=True)
    s = TimingStreamer("cpu", do_print=True, print_fn=tagged)
    error = None
    try:
        with torch.inference_mode():
            model.generate(torch.tensor([[1, 5, 7, 9]]), streamer=s, max_new_tokens=6,
                           min_new_tokens=6, do_sample=False, pad_token_id=0)  # fmt: skip
    except RuntimeError as exc:
        error = exc
    cluster = gather_summaries(s, error=error, timeout_s=3.0)
    view = {"cluster": cluster.to_dict(), "error": repr(error)}
    write_json(out / f"rank{rank}.json", view)
    if error is not None:
        print(f"rank {rank} failed: {error!r}", file=sys.stderr, flush=True)
        sys.exit(3)
    return view


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("scenario", choices=["gather", "deepspeed", "hardfail"])
    p.add_argument("out", type=Path)
    p.add_argument("--model")
    args, _ = p.parse_known_args()  # the deepspeed launcher appends --local_rank=N
    if args.scenario == "gather":
        seen = scenario_gather(args.out)
    elif args.scenario == "deepspeed":
        seen = scenario_deepspeed(args.out, args.model)
    else:
        seen = scenario_hardfail(args.out, args.model)
    write_json(args.out / f"rank{get_rank()}.json", seen)
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
