"""Time a tiny random-weight Llama (built in memory, no download) with TimingStreamer.

python examples/quickstart.py
"""

import torch

from streambench import TimingStreamer
from streambench.tiny import build_model

model = build_model()  # 2-layer, 64-wide Llama with random weights
streamer = TimingStreamer(device="cpu", do_print=True)
input_ids = torch.randint(3, 259, (1, 32))

with torch.inference_mode():
    for _ in range(3):  # 1 warm-up + 2 measured runs
        streamer.mark_start()
        model.generate(
            input_ids,
            streamer=streamer,
            max_new_tokens=32,
            min_new_tokens=32,
            do_sample=False,
            pad_token_id=0,
        )

s = streamer.summary()
print(
    f"first token {s.first_token_s * 1e3:.2f} ms, then {s.rest_token_mean_s * 1e3:.3f} ms/token "
    f"({s.decode_tokens_per_s:.0f} tokens/s), peak RSS {s.peak_memory_bytes / 2**20:.0f} MiB"
)
st = streamer.stats(warmup=1)
print(
    f"over {st.runs} measured runs: first token median {st.first_token_s.median * 1e3:.2f} ms, "
    f"rest median {st.rest_token_mean_s.median * 1e3:.3f} ms/token"
)
