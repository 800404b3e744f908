"""GPU check: streambench's overhead and accuracy on CUDA, against torch.cuda.Event timings.

A ~1B-parameter random-weight Llama (hidden 2048, 16 layers, GQA 32/8 heads, vocab 32000, bf16)
is built on the GPU from a config (nothing downloaded). Then:

1. Cost per ``put()`` (synthetic puts on the CUDA streamer): memory probe off/on, with and
   without the device sync (the sync is what the semantics require; the rest is streambench's).
2. ``generate()`` wall time, interleaved rounds: no streamer / a no-op streamer /
   ``TimingStreamer(memory=False)`` / ``TimingStreamer(memory=True)``; median ratio per round.
3. Accuracy: a forward pre-hook and a forward hook record ``torch.cuda.Event``s around every
   forward pass; the truth per token is the GPU time between the ends of consecutive forwards,
   and the first token's is from an event recorded at the prompt ``put()`` (or right before the
   ``generate()`` call) to the end of the first forward. Compared: streambench's streamer,
   streambench's ``BenchmarkWrapper`` logits-processor path (beam search), and
   optimum-benchmark's method (CUDA events in a logits processor, re-implemented in
   ``_peers.py``). Peak memory: streambench's per-token peaks vs ``torch.cuda.max_memory_allocated``
   over the same call.

Writes ``$OUT/gpu_check.json`` and ``$OUT/gpu_check.md`` (``$OUT`` defaults to ``./gpu-results``)
and prints the markdown. Needs torch (any CUDA build) and transformers >= 4.37; streambench is
taken from this repository when not installed (``pip install -e . --no-deps`` also works).
Budget: about 2 minutes on an H200 including the model build.

Run:  python benchmarks/gpu_check.py              (CUDA)
      python benchmarks/gpu_check.py --cpu-smoke  (tiny model on the CPU: checks the script)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def versions() -> dict[str, Any]:
    info: dict[str, Any] = {
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "logical_cpus": os.cpu_count(),
    }
    try:
        info["load_average_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_cuda"] = torch.version.cuda
        info["cuda_available"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["gpu_count"] = torch.cuda.device_count()
    except ImportError:
        info["torch"] = None
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        info["transformers"] = None
    return info


# -- clocks: CUDA events on the GPU, perf_counter on the CPU smoke run ----------------------------
class Clock:
    def __init__(self, cuda: bool) -> None:
        import torch

        self.cuda = cuda
        self.torch = torch

    def stamp(self) -> Any:
        if self.cuda:
            ev = self.torch.cuda.Event(enable_timing=True)
            ev.record()
            return ev
        return time.perf_counter()

    def elapsed_s(self, a: Any, b: Any) -> float:
        if self.cuda:
            return a.elapsed_time(b) / 1e3
        return b - a

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()


class ForwardEvents:
    """Records a clock stamp before and after every forward pass of ``model`` (the truth)."""

    def __init__(self, model: Any, clock: Clock) -> None:
        self.clock = clock
        self.starts: list[Any] = []
        self.ends: list[Any] = []
        self._h = [
            model.register_forward_pre_hook(lambda *a: self.starts.append(clock.stamp())),
            model.register_forward_hook(lambda *a: self.ends.append(clock.stamp())),
        ]

    def clear(self) -> None:
        self.starts, self.ends = [], []

    def remove(self) -> None:
        for h in self._h:
            h.remove()


class PutEvents:
    """Inner streamer: a clock stamp at every put (the first one is the prompt hand-over)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.stamps: list[Any] = []

    def put(self, value: Any) -> None:
        self.stamps.append(self.clock.stamp())

    def end(self) -> None:
        pass


class Noop:
    def put(self, value: Any) -> None:
        pass

    def end(self) -> None:
        pass


def q(values: list[float]) -> dict[str, float]:
    v = sorted(values)
    qs = statistics.quantiles(v, n=4, method="inclusive") if len(v) > 1 else v * 3
    return {"median": statistics.median(v), "p25": qs[0], "p75": qs[2], "min": v[0], "max": v[-1]}


# -- the model ------------------------------------------------------------------------------------
def build(args: argparse.Namespace) -> tuple[Any, Any, str]:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if args.cpu_smoke:
        from streambench.tiny import build_model, tiny_llama_config

        return build_model(tiny_llama_config()), torch.float32, "cpu"
    cfg = LlamaConfig(
        vocab_size=32000,
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    dtype = torch.bfloat16
    before = torch.get_default_dtype()
    torch.manual_seed(0)
    try:
        torch.set_default_dtype(dtype)
        with torch.device("cuda"):
            model = LlamaForCausalLM(cfg)
    finally:
        torch.set_default_dtype(before)
    return model.eval(), dtype, "cuda"


def gen_kwargs(ids: Any, n: int, beams: int = 1) -> dict[str, Any]:
    import torch

    kw = dict(
        max_new_tokens=n,
        min_new_tokens=n,
        do_sample=False,
        pad_token_id=0,
        attention_mask=torch.ones_like(ids),
    )
    if beams > 1:
        kw.update(num_beams=beams, early_stopping=False)
    return kw


# -- 1. per put -----------------------------------------------------------------------------------
def per_put(device: str, puts: int, blocks: int) -> dict[str, Any]:
    import torch

    from streambench import TimingStreamer

    token = torch.zeros((1,), dtype=torch.long)
    prompt = torch.zeros((1, 16), dtype=torch.long)
    makers = {
        "noop streamer": Noop,
        "memory off, no sync": lambda: TimingStreamer(device=device, memory=False, sync=False),
        "memory on, no sync": lambda: TimingStreamer(device=device, memory=True, sync=False),
        "memory off, sync": lambda: TimingStreamer(device=device, memory=False),
        "memory on, sync": lambda: TimingStreamer(device=device, memory=True),
    }
    out: dict[str, list[float]] = {k: [] for k in makers}
    for b in range(blocks + 1):
        for k, make in makers.items():
            s = make()
            s.put(prompt)
            t0 = time.perf_counter()
            for _ in range(puts):
                s.put(token)
            dt = (time.perf_counter() - t0) / puts * 1e6
            s.end()
            if b:
                out[k].append(dt)
    return {k: q(v) for k, v in out.items()}


def probe_calls(device: str, n: int) -> dict[str, float]:
    """µs per call of the allocator/sync functions a CUDA put() may use (best of 5 blocks)."""
    if device != "cuda":
        return {}
    import torch

    c = torch.cuda
    calls = {
        "torch.cuda.synchronize(0) (idle GPU)": lambda: c.synchronize(0),
        "torch.cuda.max_memory_allocated(0)": lambda: c.max_memory_allocated(0),
        "torch.cuda.memory_reserved(0)": lambda: c.memory_reserved(0),
        "torch.cuda.memory_stats_as_nested_dict(0)": lambda: c.memory_stats_as_nested_dict(0),
        "torch.cuda.reset_peak_memory_stats(0)": lambda: c.reset_peak_memory_stats(0),
    }
    out = {}
    for name, fn in calls.items():
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            best = min(best, (time.perf_counter() - t0) / n * 1e6)
        out[name] = best
    return out


# -- 2. generate() overhead -----------------------------------------------------------------------
def overhead(model: Any, ids: Any, device: str, tokens: int, rounds: int) -> dict[str, Any]:
    import torch

    from streambench import TimingStreamer

    clock_sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    variants: dict[str, Any] = {
        "none": None,
        "noop streamer": Noop(),
        "TimingStreamer(memory=False)": TimingStreamer(device=device, memory=False),
        "TimingStreamer(memory=True)": TimingStreamer(device=device, memory=True),
    }
    names = list(variants)
    kw = gen_kwargs(ids, tokens)
    times: dict[str, list[float]] = {k: [] for k in names}
    with torch.inference_mode():
        for s in variants.values():  # warm-up
            model.generate(ids, streamer=s, **kw)
        for r in range(rounds):
            for k in names[r % 4 :] + names[: r % 4]:
                s = variants[k]
                if isinstance(s, TimingStreamer):
                    s.reset()
                clock_sync()
                t0 = time.perf_counter()
                model.generate(ids, streamer=s, **kw)
                clock_sync()
                times[k].append(time.perf_counter() - t0)
    base = times["none"]
    return {
        "new_tokens": tokens,
        "rounds": rounds,
        "ms_per_token_none": statistics.median(base) / tokens * 1e3,
        "ratio_vs_none": {
            k: q([t / b for t, b in zip(times[k], base)]) for k in names if k != "none"
        },
        "wall_s": {k: q(v) for k, v in times.items()},
    }


# -- 3. accuracy ----------------------------------------------------------------------------------
def errors(measured: list[float], true: list[float]) -> dict[str, float]:
    e = [abs(m - t) for m, t in zip(measured, true)]
    return {"abs_err_ms_p50": statistics.median(e) * 1e3, "abs_err_ms_max": max(e) * 1e3}


def accuracy_streamer(model: Any, ids: Any, device: str, clock: Clock, tokens: int, runs: int):
    import torch

    from streambench import TimingStreamer

    fw = ForwardEvents(model, clock)
    kw = gen_kwargs(ids, tokens)
    rows = []
    try:
        with torch.inference_mode():
            for i in range(runs + 1):
                for marked in (False, True):
                    inner = PutEvents(clock)
                    s = TimingStreamer(device=device, inner=inner)
                    fw.clear()
                    clock.sync()
                    t_call = clock.stamp()
                    if marked:
                        s.mark_start()
                    model.generate(ids, streamer=s, **kw)
                    clock.sync()
                    if i == 0:
                        continue
                    r = s.summary()
                    ref = t_call if marked else inner.stamps[0]
                    true_first = clock.elapsed_s(ref, fw.ends[0])
                    gaps = [clock.elapsed_s(a, b) for a, b in zip(fw.ends, fw.ends[1:])]
                    rows.append(
                        {
                            "reference": "generate() call" if marked else "prompt put",
                            "first_s": r.first_token_s,
                            "true_first_s": true_first,
                            "rest_s": r.rest_token_mean_s,
                            "true_rest_s": statistics.fmean(gaps),
                            "per_token": errors(list(r.token_latencies_s[1:]), gaps),
                            "overhead_s": r.streamer_overhead_s,
                            # generate()'s own work between a forward's end and its token's put
                            "handover_first_s": clock.elapsed_s(fw.ends[0], inner.stamps[1]),
                            "handover_rest_s": statistics.median(
                                clock.elapsed_s(e, p) for e, p in zip(fw.ends[1:], inner.stamps[2:])
                            ),
                        }
                    )
    finally:
        fw.remove()
    return rows


def accuracy_peak_memory(model: Any, ids: Any, device: str, tokens: int) -> dict[str, Any] | None:
    if device != "cuda":
        return None
    import torch

    from streambench import TimingStreamer

    kw = gen_kwargs(ids, tokens)
    with torch.inference_mode():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        model.generate(ids, **kw)
        torch.cuda.synchronize()
        true_peak = torch.cuda.max_memory_allocated()
        s = TimingStreamer(device="cuda")
        s.mark_start()
        model.generate(ids, streamer=s, **kw)
    r = s.summary()
    return {
        "torch_max_memory_allocated_bytes": true_peak,
        "streambench_peak_memory_bytes": r.peak_memory_bytes,
        "difference_bytes": (r.peak_memory_bytes or 0) - true_peak,
        "reserved_memory_bytes": r.reserved_memory_bytes,
    }


def accuracy_beam(model: Any, ids: Any, device: str, clock: Clock, tokens: int, runs: int):
    """streambench's BenchmarkWrapper (logits-processor path) and optimum's method, beam search."""
    import torch
    from transformers import LogitsProcessorList

    sys.path.insert(0, str(HERE))
    from _peers import OptimumStyleTimer

    rows: list[dict[str, Any]] = []
    try:
        from streambench.wrapper import BenchmarkWrapper
    except ImportError:
        BenchmarkWrapper = None
    fw = ForwardEvents(model, clock)
    try:
        with torch.inference_mode():
            for beams in (1, 4):
                kw = gen_kwargs(ids, tokens, beams)
                if BenchmarkWrapper is not None:
                    w = BenchmarkWrapper(model, device=device)
                    for i in range(runs + 1):
                        fw.clear()
                        clock.sync()
                        t_call = clock.stamp()
                        w.generate(ids, **kw)
                        clock.sync()
                        if i == 0:
                            continue
                        res = w.last_result
                        gaps = [clock.elapsed_s(a, b) for a, b in zip(fw.ends, fw.ends[1:])]
                        rows.append(
                            {
                                "method": f"streambench BenchmarkWrapper ({w.timed_by})",
                                "beams": beams,
                                "first_s": w.first_cost,
                                "true_first_s": clock.elapsed_s(t_call, fw.ends[0]),
                                "rest_s": w.rest_cost_mean,
                                "true_rest_s": statistics.fmean(gaps),
                                "per_token": errors(list(res.token_latencies_s[1:]), gaps),
                            }
                        )
                for i in range(runs + 1):  # optimum-benchmark's method, one call per session
                    timer = OptimumStyleTimer(device=device, reset_per_call=True)
                    fw.clear()
                    clock.sync()
                    with timer.session():
                        t_call = clock.stamp()
                        with timer.track():
                            model.generate(ids, logits_processor=LogitsProcessorList([timer]), **kw)
                    clock.sync()
                    if i == 0:
                        continue
                    gaps = [clock.elapsed_s(a, b) for a, b in zip(fw.ends, fw.ends[1:])]
                    per_token = timer.per_token_latencies()
                    rows.append(
                        {
                            "method": "optimum-benchmark method (re-implemented"
                            + (", CUDA events)" if clock.cuda else ", perf_counter)"),
                            "beams": beams,
                            "first_s": timer.prefill_latencies()[0],
                            "true_first_s": clock.elapsed_s(t_call, fw.ends[0]),
                            "rest_s": statistics.fmean(per_token),
                            "true_rest_s": statistics.fmean(gaps),
                            "per_token": errors(per_token, gaps),
                        }
                    )
    finally:
        fw.remove()
    return rows


def summarize_rows(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    groups: dict[Any, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r.get(key), r.get("beams", 1)), []).append(r)
    out = []
    for (name, beams), rs in groups.items():
        fe = [r["first_s"] - r["true_first_s"] for r in rs]
        re_ = [r["rest_s"] - r["true_rest_s"] for r in rs]
        out.append(
            {
                "method": name,
                "beams": beams,
                "runs": len(rs),
                "true_first_ms": statistics.median(r["true_first_s"] for r in rs) * 1e3,
                "first_err_ms": statistics.median(fe) * 1e3,
                "first_err_pct": statistics.median(
                    e / r["true_first_s"] * 100 for e, r in zip(fe, rs)
                ),
                "true_rest_ms": statistics.median(r["true_rest_s"] for r in rs) * 1e3,
                "rest_err_ms": statistics.median(re_) * 1e3,
                "rest_err_pct": statistics.median(
                    e / r["true_rest_s"] * 100 for e, r in zip(re_, rs)
                ),
                "per_token_abs_err_ms_p50": statistics.median(
                    r["per_token"]["abs_err_ms_p50"] for r in rs
                ),
                "per_token_abs_err_ms_max": max(r["per_token"]["abs_err_ms_max"] for r in rs),
                "handover_first_ms": statistics.median(r["handover_first_s"] for r in rs) * 1e3
                if "handover_first_s" in rs[0]
                else None,
                "handover_rest_ms": statistics.median(r["handover_rest_s"] for r in rs) * 1e3
                if "handover_rest_s" in rs[0]
                else None,
            }
        )
    return out


def render(data: dict[str, Any]) -> str:
    v = data["versions"]
    lines = [
        "## streambench GPU check"
        + (" (CPU smoke run: numbers mean nothing)" if data["cpu_smoke"] else ""),
        "",
        f"{v.get('gpu', 'CPU')} · torch {v.get('torch')} (CUDA {v.get('torch_cuda')}) · "
        f"transformers {v.get('transformers')} · Python {v.get('python')} · {v.get('date_utc')}",
        f"Model: {data['model']['parameters'] / 1e9:.2f} B parameters, {data['model']['dtype']}, "
        f"built in {data['model']['build_s']:.1f} s · prompt {data['prompt_tokens']} tokens",
        "",
        "### Cost per put() (µs, median over blocks)",
        "",
        "| streamer | µs/put |",
        "|---|---|",
    ]
    for k, s in data["per_put_us"].items():
        lines.append(f"| {k} | {s['median']:.2f} |")
    if data.get("probe_calls_us"):
        lines += ["", "| call | µs |", "|---|---|"]
        lines += [f"| {k} | {v:.2f} |" for k, v in data["probe_calls_us"].items()]
    o = data["overhead"]
    lines += [
        "",
        f"### generate() wall time ({o['new_tokens']} new tokens, {o['rounds']} rounds, "
        f"{o['ms_per_token_none']:.2f} ms/token without a streamer)",
        "",
        "| variant | median ratio vs no streamer | p25 – p75 |",
        "|---|---|---|",
    ]
    for k, s in o["ratio_vs_none"].items():
        lines.append(f"| {k} | {s['median']:.4f} | {s['p25']:.4f} – {s['p75']:.4f} |")
    lines += [
        "",
        "### Accuracy vs torch.cuda.Event around each forward (error = measured − true)",
        "",
        "| method | beams | runs | true first ms | first error ms (%) | true rest ms | "
        "rest error ms (%) | per-token abs error ms p50 / max |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in data["accuracy_summary"]:
        lines.append(
            f"| {s['method']} | {s['beams']} | {s['runs']} | {s['true_first_ms']:.3f} | "
            f"{s['first_err_ms']:+.3f} ({s['first_err_pct']:+.2f} %) | {s['true_rest_ms']:.3f} | "
            f"{s['rest_err_ms']:+.4f} ({s['rest_err_pct']:+.2f} %) | "
            f"{s['per_token_abs_err_ms_p50']:.4f} / {s['per_token_abs_err_ms_max']:.3f} |"
        )
    hand = [s for s in data["accuracy_summary"] if s.get("handover_first_ms") is not None]
    if hand:
        lines += ["", "generate()'s own work from the end of a forward pass to its token's put():"]
        lines += [
            f"- {s['method']}: first token {s['handover_first_ms']:.3f} ms, later tokens "
            f"{s['handover_rest_ms']:.3f} ms (median)"
            for s in hand
        ]
    pm = data.get("peak_memory")
    if pm:
        lines += [
            "",
            f"Peak memory: streambench {pm['streambench_peak_memory_bytes'] / 2**20:.1f} MiB vs "
            f"torch.cuda.max_memory_allocated {pm['torch_max_memory_allocated_bytes'] / 2**20:.1f}"
            f" MiB (difference {pm['difference_bytes'] / 2**20:+.2f} MiB)",
        ]
    lines += ["", f"Total time of this check: {data['total_s']:.0f} s"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    t_start = time.perf_counter()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--cpu-smoke", action="store_true", help="tiny model on the CPU (tests this script)"
    )
    ap.add_argument("--tokens", type=int, default=128, help="new tokens per generate()")
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument(
        "--rounds",
        type=int,
        default=30,
        help="interleaved overhead rounds (at most; see --budget-s)",
    )
    ap.add_argument("--runs", type=int, default=3, help="measured accuracy runs per method")
    ap.add_argument(
        "--budget-s",
        type=float,
        default=150.0,
        help="seconds the measurements should take (tokens and rounds shrink to fit)",
    )
    ap.add_argument("--out", default=os.environ.get("OUT") or "gpu-results", help="results folder")
    args = ap.parse_args(argv)

    info = versions()
    print("versions: " + json.dumps(info), flush=True)
    if info.get("torch") is None:
        print("torch is not installed: install a CUDA build of torch first", file=sys.stderr)
        return 2
    if info.get("transformers") is None:
        print(
            "transformers is not installed: `pip install 'transformers>=4.37'` (and, if "
            "streambench is not installed, nothing else: it is taken from this repository)",
            file=sys.stderr,
        )
        return 2
    if not args.cpu_smoke and not info.get("cuda_available"):
        print(
            "no CUDA GPU is visible to torch; run with --cpu-smoke to test the script on the CPU",
            file=sys.stderr,
        )
        return 2
    try:
        import streambench
    except ImportError:
        sys.path.insert(0, str(ROOT))
    import streambench

    info["streambench"] = streambench.__version__
    info["streambench_path"] = str(Path(streambench.__file__).parent)
    if args.cpu_smoke:
        args.tokens, args.prompt_tokens, args.rounds, args.runs = 8, 16, 2, 1

    import torch

    t0 = time.perf_counter()
    model, dtype, device = build(args)
    if device == "cuda":
        torch.cuda.synchronize()
    build_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"model: {n_params / 1e9:.3f} B parameters, {dtype}, built in {build_s:.1f} s", flush=True
    )
    torch.manual_seed(1)
    ids = torch.randint(
        3, 1000 if device == "cuda" else 250, (1, args.prompt_tokens), device=device
    )
    clock = Clock(device == "cuda")

    data: dict[str, Any] = {
        "versions": info,
        "cpu_smoke": args.cpu_smoke,
        "model": {"parameters": n_params, "dtype": str(dtype), "build_s": build_s},
        "prompt_tokens": args.prompt_tokens,
    }
    data["per_put_us"] = per_put(
        device, 200 if args.cpu_smoke else 2000, 3 if args.cpu_smoke else 10
    )
    data["probe_calls_us"] = probe_calls(device, 500)
    print("per put done", flush=True)
    # Fit the time budget: one timed call decides the tokens and rounds (4 calls per round).
    with torch.inference_mode():
        # first call at full length: kernels load, every cache shape is seen once (a first call
        # took 4x a steady one on an H200, which shrank the run needlessly)
        model.generate(ids, **gen_kwargs(ids, args.tokens))
        clock.sync()
        t0 = time.perf_counter()
        model.generate(ids, **gen_kwargs(ids, args.tokens))
        clock.sync()
        t_gen = time.perf_counter() - t0
    if not args.cpu_smoke:
        while t_gen > 2.0 and args.tokens > 32:  # slow decode: shorter calls
            args.tokens //= 2
            t_gen /= 2
        args.rounds = max(3, min(args.rounds, int(args.budget_s * 0.4 / (4 * t_gen))))
    data["budget"] = {"budget_s": args.budget_s, "probe_call_s": t_gen, "tokens": args.tokens}
    print(f"one call: {t_gen:.2f} s -> {args.tokens} tokens, {args.rounds} rounds", flush=True)
    data["overhead"] = overhead(model, ids, device, args.tokens, args.rounds)
    print("overhead done", flush=True)
    streamer_rows = accuracy_streamer(model, ids, device, clock, args.tokens, args.runs)
    for r in streamer_rows:
        r["method"] = f"streambench streamer (from {r['reference']})"
    beam_rows = accuracy_beam(model, ids, device, clock, min(args.tokens, 32), args.runs)
    data["accuracy_runs"] = streamer_rows + beam_rows
    data["accuracy_summary"] = summarize_rows(streamer_rows + beam_rows, "method")
    data["peak_memory"] = accuracy_peak_memory(model, ids, device, args.tokens)
    print("accuracy done", flush=True)
    data["total_s"] = time.perf_counter() - t_start
    md = render(data)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    (out / "gpu_check.md").write_text(md + "\n")
    print(md)
    print(f"\nwrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
