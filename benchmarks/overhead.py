"""Overhead of a TimingStreamer: per-put cost (µs) and generate() wall time with vs without it.

1. Per ``put()``: blocks of synthetic puts of a 1-D ``[1]`` tensor (what ``generate()`` puts at each
   step), the variants interleaved block by block; median µs per put over blocks. On CPU there is
   no device sync, so this is the streamer's own cost (timestamps, records, memory probe).
2. ``generate()``: the same greedy generation (``min_new_tokens = max_new_tokens``) without a
   streamer, with a no-op streamer (what transformers' streamer plumbing costs by itself: the
   ``.cpu()`` copies and calls), and with ``TimingStreamer(memory=False)`` / ``(memory=True)``.
   Variants run interleaved in one process, one round = one call of each in a shuffled order
   (seeded; a rotation would give each variant the same predecessor every round); the ratio per
   round is ``variant / none``, reported as the median over rounds (with the 25th-75th
   percentile, the noise floor of this machine). ``vs minimal`` divides by the least a timing
   streamer can do (one ``perf_counter()`` appended per put): the cost of streambench's design
   beyond the timestamp itself.

Run:  .venv/bin/python benchmarks/overhead.py            (about 3 min on 2 cores)
      .venv/bin/python benchmarks/overhead.py --quick    (a few seconds, for a smoke test)
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
from typing import Any

import _common as C

PUT_VARIANTS = ("noop", "minimal", "sb_memory_off", "sb_memory_on")
GEN_VARIANTS = (
    "none",
    "noop_streamer",
    "minimal_streamer",
    "rss_read_only",
    "sb_memory_off",
    "sb_memory_on",
    "sb_memory_every_token",
)


class NoopStreamer:
    """A streamer that does nothing: the floor of any streamer (transformers' own plumbing)."""

    def put(self, value: Any) -> None:
        pass

    def end(self) -> None:
        pass


class RssOnlyStreamer:
    """Reads the process RSS at every put and nothing else: the floor of any per-token CPU
    memory probe (one system call per token), without streambench's code around it."""

    def __init__(self) -> None:
        from streambench.devices import get_backend

        self.read = get_backend("cpu", memory=True).read_memory
        self.readings: list[int] = []

    def put(self, value: Any) -> None:
        if self.read is not None:
            self.readings.append(self.read())

    def end(self) -> None:
        self.readings.clear()


class MinimalStreamer:
    """The least a timing streamer must do per put: one timestamp appended to a list."""

    def __init__(self) -> None:
        from time import perf_counter

        self._clock = perf_counter
        self.times: list[float] = []

    def put(self, value: Any) -> None:
        self.times.append(self._clock())

    def end(self) -> None:
        pass


def quantiles(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    q = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else values * 3
    return {"p25": q[0], "median": statistics.median(values), "p75": q[2], "min": values[0]}


def make_put_target(kind: str) -> tuple[Any, Any]:
    import torch

    from streambench import TimingStreamer

    if kind == "noop":
        s: Any = NoopStreamer()
    elif kind == "minimal":
        s = MinimalStreamer()
    else:
        s = TimingStreamer(device="cpu", memory=kind == "sb_memory_on")
    prompt = torch.zeros((1, 16), dtype=torch.long)
    return s, prompt


def per_put(blocks: int, puts: int) -> dict[str, Any]:
    """µs per put of each variant, blocks interleaved (median over blocks)."""
    import torch

    token = torch.zeros((1,), dtype=torch.long)
    targets = {k: make_put_target(k) for k in PUT_VARIANTS}
    per_block: dict[str, list[float]] = {k: [] for k in PUT_VARIANTS}
    for b in range(blocks + 1):  # block 0 warms up
        order = PUT_VARIANTS[b % 4 :] + PUT_VARIANTS[: b % 4]
        for k in order:
            s, prompt = targets[k]
            if hasattr(s, "reset"):
                s.reset()
            s.put(prompt)
            put = s.put
            t0 = time.perf_counter()
            for _ in range(puts):
                put(token)
            dt = time.perf_counter() - t0
            s.end()
            if b:
                per_block[k].append(dt / puts * 1e6)
    out = {k: quantiles(v) for k, v in per_block.items()}
    return {"blocks": blocks, "puts_per_block": puts, "us_per_put": out}


def hot_path_parts(n: int = 20000) -> dict[str, float]:
    """µs of the pieces a CPU put() is made of (min over 5 repetitions)."""
    from time import perf_counter

    import torch

    from streambench.devices import _rss_reader

    token = torch.zeros((1,), dtype=torch.long)
    rss = _rss_reader()
    lst: list[float] = []
    parts = {
        "perf_counter()": perf_counter,
        "tensor.dim()": token.dim,
        "list.append(float)": lambda: lst.append(1.0),
        "empty lambda (call floor)": lambda: None,
    }
    if rss is not None:
        parts["memory probe: RSS read (/proc/self/statm pread)"] = rss
    out = {}
    for name, fn in parts.items():
        best = float("inf")
        for _ in range(5):
            lst.clear()
            t0 = perf_counter()
            for _ in range(n):
                fn()
            best = min(best, (perf_counter() - t0) / n * 1e6)
        out[name] = best
    return out


def generate_overhead(model: Any, tokens: int, rounds: int, prompt_len: int = 16) -> dict[str, Any]:
    import torch

    from streambench import TimingStreamer

    torch.manual_seed(0)
    ids = torch.randint(3, 200, (1, prompt_len))
    kw = dict(
        max_new_tokens=tokens,
        min_new_tokens=tokens,
        do_sample=False,
        pad_token_id=0,
        attention_mask=torch.ones_like(ids),
    )
    streamers: dict[str, Any] = {
        "none": None,
        "noop_streamer": NoopStreamer(),
        "minimal_streamer": MinimalStreamer(),
        "rss_read_only": RssOnlyStreamer(),
        "sb_memory_off": TimingStreamer(device="cpu", memory=False),
        "sb_memory_on": TimingStreamer(device="cpu", memory=True),
        "sb_memory_every_token": TimingStreamer(device="cpu", memory="every-token"),
    }
    times: dict[str, list[float]] = {k: [] for k in GEN_VARIANTS}
    # the time the streamer spent after its timestamps (what it subtracts from the latencies:
    # memory readings, the prompt's bookkeeping), µs per token of each run
    inside_us: dict[str, list[float]] = {
        "sb_memory_off": [],
        "sb_memory_on": [],
        "sb_memory_every_token": [],
    }
    readings: dict[str, list[int]] = {k: [] for k in inside_us}
    rng = random.Random(0)
    with torch.inference_mode():
        for _ in range(3):  # warm-up
            for s in streamers.values():
                model.generate(ids, streamer=s, **kw)
        for _ in range(rounds):
            order = list(GEN_VARIANTS)
            rng.shuffle(order)
            for k in order:
                s = streamers[k]
                if isinstance(s, TimingStreamer):
                    s.reset()
                gc.collect()
                t0 = time.perf_counter()
                model.generate(ids, streamer=s, **kw)
                times[k].append(time.perf_counter() - t0)
                if isinstance(s, TimingStreamer):
                    run = s.summary()
                    inside_us[k].append(run.streamer_overhead_s / run.new_tokens * 1e6)
                    mem = run.memory_per_token_bytes
                    readings[k].append(sum(m is not None for m in mem))
    base = times["none"]
    ratios = {k: [t / b for t, b in zip(times[k], base)] for k in GEN_VARIANTS if k != "none"}
    later = (
        "minimal_streamer",
        "rss_read_only",
        "sb_memory_off",
        "sb_memory_on",
        "sb_memory_every_token",
    )
    vs_noop = {k: [t / b for t, b in zip(times[k], times["noop_streamer"])] for k in later}
    vs_minimal = {
        k: [t / b for t, b in zip(times[k], times["minimal_streamer"])] for k in later[1:]
    }
    return {
        "new_tokens": tokens,
        "prompt_tokens": prompt_len,
        "rounds": rounds,
        "ms_per_token_none": statistics.median(base) / tokens * 1e3,
        "wall_s": {k: quantiles(v) for k, v in times.items()},
        "ratio_vs_none": {k: quantiles(v) for k, v in ratios.items()},
        "ratio_vs_noop_streamer": {k: quantiles(v) for k, v in vs_noop.items()},
        "ratio_vs_minimal_streamer": {k: quantiles(v) for k, v in vs_minimal.items()},
        "streamer_time_us_per_token": {k: quantiles(v) for k, v in inside_us.items()},
        "memory_readings_per_run": {k: statistics.median(v) for k, v in readings.items() if v},
    }


def larger_config() -> Any:
    from streambench.tiny import tiny_llama_config

    return tiny_llama_config(
        hidden_size=768,
        intermediate_size=2048,
        num_hidden_layers=6,
        num_attention_heads=12,
        num_key_value_heads=4,
        vocab_size=8192,
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test, not numbers")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--rounds", type=int, default=200, help="generate() rounds, tiny model")
    ap.add_argument("--rounds-larger", type=int, default=30, help="rounds, larger model")
    ap.add_argument("--tokens", type=int, default=64, help="new tokens per generate()")
    ap.add_argument("--tokens-larger", type=int, default=32, help="new tokens, larger model")
    ap.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    args = ap.parse_args(argv)

    import torch

    from streambench.tiny import build_model

    torch.set_num_threads(args.threads)
    if args.quick:
        args.rounds, args.rounds_larger, args.tokens = 4, 0, 16
    info = C.machine_info()
    data: dict[str, Any] = {"machine": info, "threads": args.threads}
    blocks, puts = (4, 2000) if args.quick else (30, 20000)
    data["per_put"] = per_put(blocks, puts)
    data["hot_path_parts_us"] = hot_path_parts(2000 if args.quick else 20000)
    models = {"tiny": build_model()}
    rounds = {"tiny": args.rounds}
    tokens = {"tiny": args.tokens, "larger": args.tokens_larger}
    if args.rounds_larger:
        models["larger"] = build_model(larger_config())
        rounds["larger"] = args.rounds_larger
    data["generate"] = {}
    for name, model in models.items():
        n_params = sum(p.numel() for p in model.parameters())
        res = generate_overhead(model, tokens[name], rounds[name])
        res["parameters"] = n_params
        data["generate"][name] = res
    data["load_average_after"] = C.load_average()
    md = render(data)
    C.write_results("overhead", data, md, C.out_dir(args.out, args.quick))
    print(md)
    return data


def render(data: dict[str, Any]) -> str:
    pp = data["per_put"]["us_per_put"]
    rows = []
    label = {
        "noop": "no-op streamer (call floor)",
        "minimal": "minimal timing streamer (perf_counter + append)",
        "sb_memory_off": "TimingStreamer(memory=False)",
        "sb_memory_on": "TimingStreamer(memory=True)",
        "sb_memory_every_token": 'TimingStreamer(memory="every-token")',
    }
    target = {"sb_memory_off": "≤ 5", "sb_memory_on": "≤ 20"}
    for k in PUT_VARIANTS:
        q = pp[k]
        rows.append(
            [
                label[k],
                C.fmt(q["median"], 2),
                C.fmt(q["p25"], 2),
                C.fmt(q["p75"], 2),
                target.get(k, ""),
            ]
        )
    out = [
        "### Cost per put() (CPU, µs)",
        "",
        C.md_table(["streamer", "median µs/put", "p25", "p75", "target"], rows),
    ]
    parts = data["hot_path_parts_us"]
    out += ["", "Pieces of the hot path (µs, best of 5):", ""]
    out.append(C.md_table(["operation", "µs"], [[k, C.fmt(v, 3)] for k, v in parts.items()]))
    for name, g in data["generate"].items():
        rows = []
        for k in (
            "noop_streamer",
            "minimal_streamer",
            "rss_read_only",
            "sb_memory_off",
            "sb_memory_on",
            "sb_memory_every_token",
        ):
            r = g["ratio_vs_none"][k]
            vn = g["ratio_vs_noop_streamer"].get(k)
            vm = g.get("ratio_vs_minimal_streamer", {}).get(k)
            rows.append(
                [
                    k,
                    C.fmt(r["median"], 4),
                    f"{C.fmt(r['p25'], 4)} – {C.fmt(r['p75'], 4)}",
                    C.fmt(vn["median"], 4) if vn else "",
                    C.fmt(vm["median"], 4) if vm else "",
                    {"sb_memory_off": "≤ 1.005", "sb_memory_on": "≤ 1.01"}.get(k, ""),
                ]
            )
        out += [
            "",
            f"### generate() wall time, {name} model ({g['parameters']:,} parameters, "
            f"{g['ms_per_token_none']:.2f} ms/token, {g['new_tokens']} new tokens, "
            f"{g['rounds']} rounds)",
            "",
            C.md_table(
                [
                    "variant",
                    "median ratio vs no streamer",
                    "p25 – p75",
                    "ratio vs no-op streamer",
                    "ratio vs minimal streamer",
                    "target (vs no streamer)",
                ],
                rows,
            ),
            "",
            "Time the streamer spent after its timestamps and subtracted from the latencies "
            "(`streamer_overhead_s` per token of a run, µs; a token without a memory reading "
            "adds nothing): "
            + ", ".join(
                f"{k} median {v['median']:.2f} (p25 {v['p25']:.2f}, p75 {v['p75']:.2f})"
                for k, v in g["streamer_time_us_per_token"].items()
            )
            + ". Memory readings per run (median): "
            + ", ".join(f"{k} {v:g}" for k, v in g["memory_readings_per_run"].items()),
        ]
    out += [
        "",
        f"Machine: {C.machine_line(data['machine'])} · load after {data['load_average_after']}",
    ]
    return "\n".join(out)


if __name__ == "__main__":
    main()
