"""The seed document's CPU example ("CPU Usage" of ipex-llm's benchmark_util README), with
streambench's BenchmarkWrapper. The body below is the seed's, line for line, except:

- the import line: ``from streambench import BenchmarkWrapper``
  (was ``from ipex_llm.utils import BenchmarkWrapper``);
- a local model path (first argument) instead of ``THUDM/chatglm-6b``; without one, a tiny
  random-weight Llama is built in a temporary folder (no download). A Llama loads with
  ``AutoModelForCausalLM`` (chatglm-6b's remote code used ``AutoModel``).
- ipex-llm is optional: where it is installed (transformers 4.37), the model is loaded in 4-bit
  through it exactly as in the seed (``load_in_4bit=True``); elsewhere with plain transformers.

    python examples/seed_cpu.py [MODEL_DIR]

Prints the seed's two lines:
    =========First token cost 0.0123 s and 0.3 GB=========
    =========Rest tokens cost average 0.0021 s (31 tokens in all) and 0.3 GB=========
"""

import sys
import tempfile

try:  # the seed's int4 loader, where ipex-llm is installed
    from ipex_llm.transformers import AutoModelForCausalLM

    LOW_BIT = {"load_in_4bit": True}
except ImportError:
    from transformers import AutoModelForCausalLM

    LOW_BIT = {}

if len(sys.argv) > 1:
    model_path = sys.argv[1]
else:  # a tiny random Llama; no EOS token, so it generates the seed's 32 tokens every time
    from streambench.tiny import save_tiny_model

    model_path = str(save_tiny_model(tempfile.mkdtemp(prefix="streambench-"), eos_token_id=None))

# ---- the seed's code -------------------------------------------------------------------------
import torch
from transformers import AutoTokenizer

from streambench import BenchmarkWrapper

model = AutoModelForCausalLM.from_pretrained(model_path, trust_remote_code=True, **LOW_BIT)
model = BenchmarkWrapper(model, do_print=True)
tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=True)
prompt = "今天睡不着怎么办"

with torch.inference_mode():
    input_ids = tokenizer.encode(prompt, return_tensors="pt")
    output = model.generate(input_ids, do_sample=False, max_new_tokens=32)
    output_str = tokenizer.decode(output[0], skip_special_tokens=True)
