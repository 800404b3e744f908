"""The seed document's CPU example ("CPU Usage" of ipex-llm's benchmark_util README), with
streambench's BenchmarkWrapper. Below the marked line is the seed's code, with these changes only:

- the import line: ``from streambench import BenchmarkWrapper``
  (was ``from ipex_llm.utils import BenchmarkWrapper``);
- ``model_path``: a local folder (first argument) instead of ``THUDM/chatglm-6b``. Without one, a
  tiny random-weight Llama is written to a temporary folder (no download), packaged like
  chatglm-6b as *remote code* (``auto_map`` + ``modeling_tiny.py``), so the seed's
  ``AutoModel.from_pretrained(..., trust_remote_code=True)`` loads a model that can generate;
- where ipex-llm cannot be installed (it does not import on transformers >= 4.54), ``AutoModel``
  comes from transformers and ``load_in_4bit=True`` is left out: ipex-llm's int4 is not available
  there. With ipex-llm (transformers 4.37) the model is loaded in int4 through it, as in the seed;
- an ordinary causal-LM folder (Llama, Qwen, Mistral … without chatglm's ``auto_map``) is loaded
  with ``AutoModelForCausalLM`` under the name ``AutoModel``: ``AutoModel`` would give its bare
  backbone (``LlamaModel``), which cannot generate.

    python examples/seed_cpu.py [MODEL_DIR]

Prints the seed's two lines:
    =========First token cost 0.0123 s and 0.3 GB=========
    =========Rest tokens cost average 0.0021 s (31 tokens in all) and 0.3 GB=========
"""

import json
import sys
import tempfile
from pathlib import Path

try:  # the seed's stack: ipex-llm's int4 loader (transformers 4.37)
    from ipex_llm.transformers import AutoModel, AutoModelForCausalLM

    LOW_BIT = {"load_in_4bit": True}
except ImportError:  # newer transformers: ipex-llm does not import there
    from transformers import AutoModel, AutoModelForCausalLM

    LOW_BIT = {}


def generates_through_automodel(path: str) -> bool:
    """Whether ``AutoModel`` loads a model that can generate from ``path``: remote code mapping
    ``AutoModel`` to its own class (chatglm-6b, the seed's model). A folder without
    ``config.json`` (a hub id) is left to the seed's ``AutoModel``."""
    config = Path(path, "config.json")
    if not config.is_file():
        return True
    auto_map = json.loads(config.read_text(encoding="utf-8")).get("auto_map") or {}
    return "AutoModel" in auto_map


def tiny_remote_code_model(path: str) -> str:
    """A tiny random Llama packaged as remote code, like chatglm-6b: ``AutoModel`` with
    ``trust_remote_code=True`` loads its causal-LM class. No EOS token, so every run generates
    the seed's 32 tokens."""
    from streambench.tiny import save_tiny_model

    folder = save_tiny_model(path, eos_token_id=None)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_tiny.TinyLlamaForCausalLM"}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "modeling_tiny.py").write_text(
        "from transformers.models.llama import modeling_llama\n\n"
        "# ipex-llm looks up the Llama building blocks in the model's own module\n"
        "globals().update({k: v for k, v in vars(modeling_llama).items() if k[:2] != '__'})\n\n\n"
        "class TinyLlamaForCausalLM(modeling_llama.LlamaForCausalLM):\n"
        "    pass\n"
    )
    return str(folder)


if len(sys.argv) > 1:
    model_path = sys.argv[1]
else:
    model_path = tiny_remote_code_model(str(Path(tempfile.mkdtemp(prefix="streambench-"))))
if not generates_through_automodel(model_path):  # an ordinary Llama folder, say
    AutoModel = AutoModelForCausalLM

# ---- the seed's code (import line and model path changed, see above) -------------------------
import torch  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from streambench import BenchmarkWrapper  # noqa: E402

model = AutoModel.from_pretrained(model_path, trust_remote_code=True, **LOW_BIT)
model = BenchmarkWrapper(model, do_print=True)
tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=True)
prompt = "今天睡不着怎么办"

with torch.inference_mode():
    input_ids = tokenizer.encode(prompt, return_tensors="pt")
    output = model.generate(input_ids, do_sample=False, max_new_tokens=32)
    output_str = tokenizer.decode(output[0], skip_special_tokens=True)
