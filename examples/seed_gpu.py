"""The seed document's GPU example: 2 warm-up ``generate()`` calls, then 5 measured ones, each
printing the seed's lines — plus the statistics over the 5 measured runs at the end, which the
original could not give (it kept only the last call's numbers).

Runs on an Intel XPU, a CUDA GPU or Apple MPS, whichever is there, else on the CPU (say so with
``--device``). Where ipex-llm is installed the model is loaded in 4-bit through it, as in the seed.

    python examples/seed_gpu.py [--model MODEL_DIR] [--device auto|xpu|cuda|mps|cpu]
                                [--max-new-tokens 32]

Without ``--model`` a tiny random-weight Llama is built in a temporary folder (no download).
"""

import argparse
import tempfile

import torch
from transformers import AutoTokenizer

from streambench import BenchmarkWrapper
from streambench.devices import resolve_device

try:  # the seed's int4 loader, where ipex-llm is installed
    from ipex_llm.transformers import AutoModelForCausalLM

    LOW_BIT = {"load_in_4bit": True}
except ImportError:
    from transformers import AutoModelForCausalLM

    LOW_BIT = {}

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--model", help="local model folder (default: build a tiny random Llama)")
parser.add_argument("--device", default="auto", help="auto (default), xpu, cuda, mps or cpu")
parser.add_argument("--max-new-tokens", type=int, default=32)
args = parser.parse_args()

device = resolve_device(args.device)  # auto: the first of cuda, xpu, mps; else cpu
if device.type == "cpu":
    print("no GPU here: running the GPU example on the CPU")
model_path = args.model
if model_path is None:
    from streambench.tiny import save_tiny_model

    model_path = str(save_tiny_model(tempfile.mkdtemp(prefix="streambench-"), eos_token_id=None))

# ---- the seed's code -------------------------------------------------------------------------
model = AutoModelForCausalLM.from_pretrained(model_path, trust_remote_code=True, **LOW_BIT)
model = model.to(device)
model = BenchmarkWrapper(model, do_print=True)
tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=True)
prompt = "今天睡不着怎么办"
n = args.max_new_tokens

with torch.inference_mode():
    # warm up two times
    for i in range(2):  # noqa: B007 - the seed's loop, kept as it was
        input_ids = tokenizer.encode(prompt, return_tensors="pt").to(device)
        output = model.generate(input_ids, do_sample=False, max_new_tokens=n, min_new_tokens=n)
        output_str = tokenizer.decode(output[0], skip_special_tokens=True)
    # collect performance data now
    for i in range(5):  # noqa: B007
        input_ids = tokenizer.encode(prompt, return_tensors="pt").to(device)
        output = model.generate(input_ids, do_sample=False, max_new_tokens=n, min_new_tokens=n)
        output_str = tokenizer.decode(output[0], skip_special_tokens=True)

# ---- what the original could not print: statistics over the measured runs ---------------------
st = model.stats(warmup=2)
first, rest = st.first_token_s, st.rest_token_mean_s
print(f"---- {st.runs} measured runs on {device} ({st.new_tokens} new tokens each) ----")
print(
    f"first token: median {first.median * 1e3:.2f} ms, mean {first.mean * 1e3:.2f} ms, "
    f"p90 {first.p90 * 1e3:.2f} ms, stdev {first.stdev * 1e3:.2f} ms"
)
print(
    f"rest tokens: median {rest.median * 1e3:.3f} ms/token, mean {rest.mean * 1e3:.3f} ms/token, "
    f"p90 {rest.p90 * 1e3:.3f} ms/token ({st.decode_tokens_per_s.median:.1f} tokens/s)"
)
if st.peak_memory_bytes is not None:
    print(f"peak memory: {st.peak_memory_bytes / 2**30:.4f} GB")
