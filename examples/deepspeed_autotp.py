"""The seed's multi-GPU recipe: ipex-llm's DeepSpeed AutoTP example with the one-line patch that
wraps the tensor-parallel model in ``BenchmarkWrapper`` — now ``from streambench import
BenchmarkWrapper``. Each rank times its own ``generate()``; rank 0 prints the seed's lines.

Launch one process per device::

    deepspeed --num_gpus 2 examples/deepspeed_autotp.py --repo-id-or-model-path PATH
    torchrun --nproc_per_node 2 examples/deepspeed_autotp.py     # same, with torch's launcher

Device per rank: ``xpu:LOCAL_RANK`` on Intel GPUs, ``cuda:LOCAL_RANK`` on NVIDIA, else the CPU —
where DeepSpeed's CPU accelerator talks over gloo, so the recipe runs (slowly) on a laptop too.
Without ``--repo-id-or-model-path``, every rank writes the same seeded tiny random Llama to its
own temporary folder (no download). Where ipex-llm is installed, the sharded model is converted
to ``--low-bit`` (default ``sym_int4``) with ``ipex_llm.optimize_model`` as in the original.
Needs ``pip install deepspeed``.
"""

import argparse
import os
import tempfile
import time

import torch
import transformers  # noqa: F401 - as in the original
from transformers import AutoModelForCausalLM, AutoTokenizer

try:
    import deepspeed
except ImportError as exc:
    raise SystemExit(
        "this example needs DeepSpeed: pip install deepspeed (it runs on CPU over gloo too)"
    ) from exc

from streambench import BenchmarkWrapper


def get_int_from_env(env_keys, default):
    """Returns the first positive env value found in the `env_keys` list or the default."""
    for e in env_keys:
        val = int(os.environ.get(e, -1))
        if val >= 0:
            return val
    return int(default)


local_rank = get_int_from_env(["LOCAL_RANK", "PMI_RANK", "OMPI_COMM_WORLD_LOCAL_RANK"], "0")
world_size = get_int_from_env(["WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE"], "1")
os.environ.setdefault("RANK", str(local_rank))
os.environ.setdefault("WORLD_SIZE", str(world_size))
os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
os.environ.setdefault("MASTER_PORT", "29500")


def rank_device() -> torch.device:
    if getattr(torch, "xpu", None) is not None and torch.xpu.is_available():
        return torch.device("xpu", local_rank)
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def init_distributed():
    # the original's init_distributed(): DeepSpeed picks ccl/nccl, or gloo on a CPU
    deepspeed.init_distributed()
    backend = getattr(deepspeed.comm.comm, "cdb", None)
    if rank_device().type == "cpu" and backend is not None:
        # DeepSpeed's shared-memory all-reduce kernel for CPUs crashed (SIGSEGV) on the machine
        # this was tested on; level 0 makes it fall back to torch.distributed.all_reduce (gloo).
        backend.shm_vector_kernel_level = 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="DeepSpeed AutoTP + BenchmarkWrapper")
    parser.add_argument("--repo-id-or-model-path", type=str, default=None)
    parser.add_argument("--prompt", type=str, default="Once upon a time, there existed")
    parser.add_argument("--n-predict", type=int, default=32)
    parser.add_argument("--low-bit", type=str, default="sym_int4")
    parser.add_argument("--local_rank", type=int, default=local_rank, help="set by `deepspeed`")
    args = parser.parse_args()

    device = rank_device()
    dtype = torch.float16 if device.type != "cpu" else torch.float32
    model_path = args.repo_id_or_model_path
    if model_path is None:  # seeded: every rank builds the same weights
        from streambench.tiny import save_tiny_model

        model_path = str(
            save_tiny_model(tempfile.mkdtemp(prefix="streambench-"), eos_token_id=None)
        )

    init_distributed()
    model = AutoModelForCausalLM.from_pretrained(
        model_path, low_cpu_mem_usage=True, torch_dtype=dtype, trust_remote_code=True
    )
    model = deepspeed.init_inference(
        model,
        tensor_parallel={"tp_size": world_size},
        dtype=dtype,
        replace_with_kernel_inject=False,
    )
    model = model.module  # the sharded model (its linears all-reduce across the ranks)
    try:  # the original converts the shards to low bit with ipex-llm
        from ipex_llm import optimize_model

        model = optimize_model(model.to("cpu"), low_bit=args.low_bit)
    except ImportError:
        pass
    model = model.to(device)

    if local_rank == 0:
        print(model)
    model = BenchmarkWrapper(model, do_print=local_rank == 0)  # <- the seed's one-line patch

    # Load tokenizer
    tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=True)

    # Generate predicted tokens
    with torch.inference_mode():
        input_ids = tokenizer.encode(args.prompt, return_tensors="pt").to(device)
        n = args.n_predict
        # warm-up: the first call pays one-time costs
        output = model.generate(input_ids, max_new_tokens=n, min_new_tokens=n, use_cache=True)
        # start inference
        st = time.time()
        output = model.generate(input_ids, do_sample=False, max_new_tokens=n, min_new_tokens=n)
        end = time.time()
        if local_rank == 0:
            output = output.cpu()
            actual_output_len = output.shape[1] - input_ids.shape[1]
            output_str = tokenizer.decode(output[0], skip_special_tokens=True)
            avg_time = (end - st) / actual_output_len * 1000
            print(
                f"Inference time of generating {actual_output_len} tokens: {end - st} s, "
                f"average token latency is {avg_time} ms/token."
            )
            print(
                f"rank 0 of {world_size}: first_cost {model.first_cost:.4f} s, "
                f"rest_cost_mean {model.rest_cost_mean:.4f} s"
            )
    deepspeed.comm.barrier()
