"""Accuracy against a known-latency model: streambench beside the methods peers use.

The model is the embedded tiny Llama whose forward pass sleeps a set time (50 ms for the prompt,
10 ms per decoding step by default); a forward pre-hook and a forward hook stamp
``time.perf_counter()`` around each forward. Ground truth per ``generate()`` call:

* **first token (TTFT)** = end of the first forward − the moment ``generate()`` was called
  (stamped by this script right before the call);
* **rest tokens** = (end of the last forward − end of the first) / (forwards − 1), the mean
  interval between tokens; per token, the intervals between consecutive forward ends.

Methods (each runs where it can be imported; ``--peer-python`` runs this script again under other
interpreters, e.g. a transformers 4.37 venv with ipex-llm, and merges the results):

* ``streambench streamer``: ``TimingStreamer`` + ``mark_start()`` (greedy only: transformers
  refuses streamers in beam search); ``... from prompt put``: without ``mark_start()``, so the
  truth is counted from the prompt ``put()`` (stamped by an inner streamer).
* ``streambench BenchmarkWrapper``: ``streambench.wrapper`` (streamer for greedy, its
  logits-processor ``StepTimer`` for beam search) — when that module exists.
* ``optimum-benchmark``: its ``PerTokenLatencySessionTrackerLogitsProcessor`` used as its
  inference scenario does (one session over all calls, ``track()`` around each), when the package
  imports; otherwise and additionally ``optimum-benchmark method (re-implemented)`` from
  ``_peers.py``. Its rest-token figure is the mean of its per-token list; ``(per call)`` rows
  reset that list per call to show what its session accumulation does.
* ``ipex-llm BenchmarkWrapper``: ``ipex_llm.utils.BenchmarkWrapper`` (needs transformers < 4.54).

Error = measured − true. Target (streambench): |error| ≤ max(1 % of true, 0.5 ms) in every run.

Run:  .venv/bin/python benchmarks/accuracy.py [--peer-python /tmp/venvs/sb-ipex/bin/python ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as C

if not C.importable("streambench"):  # a peer's venv without streambench installed: use the repo
    sys.path.insert(0, str(C.ROOT))

SCENARIOS = {
    "greedy": dict(num_beams=1, new_tokens=32),
    "beam search (4 beams)": dict(num_beams=4, new_tokens=16),
}


class PromptStamp:
    """Inner streamer: the time of every put (the first is the prompt hand-over)."""

    def __init__(self) -> None:
        self.t_prompt: float | None = None
        self.puts: list[float] = []

    def put(self, value: Any) -> None:
        t = time.perf_counter()
        self.puts.append(t)
        if self.t_prompt is None:
            self.t_prompt = t

    def end(self) -> None:
        pass


def within_target(err_s: float, true_s: float) -> bool:
    return abs(err_s) <= max(0.01 * abs(true_s), 0.0005)


def truth(k: C.KnownLatency, t_call: float) -> dict[str, Any]:
    ends = list(k.ends)
    gaps = [b - a for a, b in zip(ends, ends[1:])]
    return {
        "ttft_s": ends[0] - t_call,
        "prefill_forward_s": ends[0] - k.starts[0],
        "rest_mean_s": (ends[-1] - ends[0]) / (len(ends) - 1),
        "per_token_s": gaps,
        "forwards": len(ends),
    }


class Harness:
    def __init__(self, args: argparse.Namespace) -> None:
        import torch

        from streambench.tiny import build_model

        torch.set_num_threads(args.threads)
        self.args = args
        self.model = build_model()
        self.k = C.KnownLatency(
            self.model, prefill_s=args.prefill_ms / 1e3, decode_s=args.decode_ms / 1e3
        )
        torch.manual_seed(0)
        self.ids = torch.randint(3, 200, (1, args.prompt_tokens))
        self.torch = torch

    def kwargs(self, scenario: dict[str, Any]) -> dict[str, Any]:
        n = scenario["new_tokens"]
        kw = dict(
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            pad_token_id=0,
            attention_mask=self.torch.ones_like(self.ids),
        )
        if scenario["num_beams"] > 1:
            kw.update(num_beams=scenario["num_beams"], early_stopping=False)
        return kw

    def call(self, fn: Any) -> tuple[float, Any]:
        """Run ``fn()`` (which calls generate) with fresh hooks; returns (t_call, fn's result)."""
        self.k.clear()
        t_call = time.perf_counter()
        with self.torch.inference_mode():
            out = fn(t_call)
        return t_call, out


def row(method: str, scenario: str, runs: list[dict[str, Any]], note: str = "") -> dict[str, Any]:
    return {"method": method, "scenario": scenario, "runs": runs, "note": note}


def m_streamer(h: Harness, scenario: dict[str, Any], from_prompt: bool) -> list[dict[str, Any]]:
    from streambench import TimingStreamer

    out = []
    kw = h.kwargs(scenario)
    for i in range(h.args.runs + 1):
        stamp = PromptStamp()
        s = TimingStreamer(device="cpu", inner=stamp)

        def go(t_call: float, s: Any = s) -> Any:
            if not from_prompt:
                s.mark_start()
            return h.model.generate(h.ids, streamer=s, **kw)

        t_call, _ = h.call(go)
        if i == 0:
            continue
        r = s.summary()
        tr = truth(h.k, t_call)
        if from_prompt:
            assert stamp.t_prompt is not None
            tr["ttft_s"] = h.k.ends[0] - stamp.t_prompt
        # generate()'s own work between a forward's end and the token's put() (logits
        # processing, token choice, .cpu()): part of what the streamer measures, not of the truth
        lags = [p - e for p, e in zip(stamp.puts[1:], h.k.ends)]
        out.append(
            dict(
                first_s=r.first_token_s,
                rest_s=r.rest_token_mean_s,
                per_token_s=list(r.token_latencies_s[1:]),
                truth=tr,
                handover_first_s=lags[0],
                handover_rest_median_s=statistics.median(lags[1:]),
            )
        )
    return out


def m_wrapper(h: Harness, scenario: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    from streambench.wrapper import BenchmarkWrapper

    wrapped = BenchmarkWrapper(h.model, device="cpu")
    kw = h.kwargs(scenario)
    out = []
    timed_by = ""
    for i in range(h.args.runs + 1):
        t_call, _ = h.call(lambda t, kw=kw: wrapped.generate(h.ids, **kw))
        if i == 0:
            continue
        timed_by = str(getattr(wrapped, "timed_by", ""))
        res = wrapped.last_result
        out.append(
            dict(
                first_s=wrapped.first_cost,
                rest_s=wrapped.rest_cost_mean,
                per_token_s=list(res.token_latencies_s[1:]) if res is not None else None,
                truth=truth(h.k, t_call),
            )
        )
    return out, f"timed by {timed_by}"


def m_optimum(
    h: Harness, scenario: dict[str, Any], real: bool, per_call: bool
) -> list[dict[str, Any]]:
    """optimum-benchmark's per-token logits processor, driven as its inference scenario does."""
    from transformers import LogitsProcessorList

    if real:
        from optimum_benchmark.trackers.latency import (
            PerTokenLatencySessionTrackerLogitsProcessor as Tracker,
        )

        tracker: Any = Tracker(device="cpu", backend="pytorch")
    else:
        from _peers import OptimumStyleTimer

        tracker = OptimumStyleTimer(device="cpu")
    kw = h.kwargs(scenario)
    out = []
    truths = []
    # warm-up outside the session (optimum runs warm-up iterations before tracking)
    h.call(lambda t: h.model.generate(h.ids, **kw))
    n = h.args.runs
    if per_call:
        for _ in range(n):
            with tracker.session():
                t_call, _ = h.call(lambda t: _tracked(tracker, h, kw, LogitsProcessorList))
                prefill = _prefill(tracker, real)[-1]
                per_token = _per_token(tracker, real)
            out.append(
                dict(
                    first_s=prefill,
                    rest_s=statistics.fmean(per_token),
                    per_token_s=per_token,
                    truth=truth(h.k, t_call),
                )
            )
        return out
    with tracker.session():
        for _ in range(n):
            t_call, _ = h.call(lambda t: _tracked(tracker, h, kw, LogitsProcessorList))
            truths.append(truth(h.k, t_call))
        prefills = _prefill(tracker, real)
        per_token = _per_token(tracker, real)
    # One per-token list for the whole session (what optimum reports): its mean is each run's
    # rest-token figure; compare with the mean of the true per-token intervals of all runs.
    session_rest = statistics.fmean(per_token)
    for prefill, tr in zip(prefills, truths):
        out.append(dict(first_s=prefill, rest_s=session_rest, per_token_s=None, truth=tr))
    return out


def _tracked(tracker: Any, h: Harness, kw: dict[str, Any], lpl: Any) -> Any:
    with tracker.track():
        return h.model.generate(h.ids, logits_processor=lpl([tracker]), **kw)


def _prefill(tracker: Any, real: bool) -> list[float]:
    if real:
        return list(tracker.get_prefill_latency().values)
    return tracker.prefill_latencies()


def _per_token(tracker: Any, real: bool) -> list[float]:
    if real:
        return [float(v) for v in tracker.get_per_token_latency().values]
    return tracker.per_token_latencies()


def m_ipex(h: Harness, scenario: dict[str, Any]) -> list[dict[str, Any]]:
    from ipex_llm.utils import BenchmarkWrapper

    wrapped = BenchmarkWrapper(h.model, do_print=False)
    kw = h.kwargs(scenario)
    out = []
    for i in range(h.args.runs + 1):
        t_call, _ = h.call(lambda t: wrapped.generate(h.ids, **kw))
        if i == 0:
            continue
        out.append(
            dict(
                first_s=float(wrapped.first_cost),
                rest_s=float(wrapped.rest_cost_mean),
                per_token_s=None,
                truth=truth(h.k, t_call),
            )
        )
    return out


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    import transformers

    h = Harness(args)
    tv = transformers.__version__
    rows: list[dict[str, Any]] = []
    have_wrapper = C.importable("streambench.wrapper")
    have_optimum = C.importable("optimum_benchmark")
    have_ipex = C.importable("ipex_llm")
    for sname, sc in SCENARIOS.items():
        beam = sc["num_beams"] > 1
        if not args.peers_only:
            if not beam:
                rows.append(
                    row(
                        f"streambench streamer (transformers {tv})", sname, m_streamer(h, sc, False)
                    )
                )
                rows.append(
                    row(
                        f"streambench streamer, from prompt put (transformers {tv})",
                        sname,
                        m_streamer(h, sc, True),
                        "reference: the prompt put(), not the generate() call",
                    )
                )
            if have_wrapper:
                runs, note = m_wrapper(h, sc)
                rows.append(
                    row(f"streambench BenchmarkWrapper (transformers {tv})", sname, runs, note)
                )
        if have_optimum:
            rows.append(
                row(f"optimum-benchmark (transformers {tv})", sname, m_optimum(h, sc, True, False))
            )
            rows.append(
                row(
                    f"optimum-benchmark, per-token list reset per call (transformers {tv})",
                    sname,
                    m_optimum(h, sc, True, True),
                )
            )
        elif not args.peers_only:
            rows.append(
                row(
                    f"optimum-benchmark method, re-implemented (transformers {tv})",
                    sname,
                    m_optimum(h, sc, False, False),
                )
            )
        if have_ipex:
            rows.append(row(f"ipex-llm BenchmarkWrapper (transformers {tv})", sname, m_ipex(h, sc)))
    h.k.remove()
    return rows


def summarize(r: dict[str, Any]) -> dict[str, Any]:
    """Per method and scenario: errors in ms (median, max |error|), and whether all runs pass."""
    runs = r["runs"]
    if not runs:
        return {}
    fe = [x["first_s"] - x["truth"]["ttft_s"] for x in runs]
    re_ = [x["rest_s"] - x["truth"]["rest_mean_s"] for x in runs]
    fe_fwd = [x["first_s"] - x["truth"]["prefill_forward_s"] for x in runs]
    pt_err: list[float] = []
    for x in runs:
        if x.get("per_token_s") and len(x["per_token_s"]) == len(x["truth"]["per_token_s"]):
            pt_err += [m - t for m, t in zip(x["per_token_s"], x["truth"]["per_token_s"])]
    ok_first = all(within_target(e, x["truth"]["ttft_s"]) for e, x in zip(fe, runs))
    ok_rest = all(within_target(e, x["truth"]["rest_mean_s"]) for e, x in zip(re_, runs))
    return {
        "runs": len(runs),
        "true_first_ms": statistics.median(x["truth"]["ttft_s"] for x in runs) * 1e3,
        "true_rest_ms": statistics.median(x["truth"]["rest_mean_s"] for x in runs) * 1e3,
        "first_err_ms_median": statistics.median(fe) * 1e3,
        "first_err_ms_max_abs": max(abs(e) for e in fe) * 1e3,
        "first_err_pct_median": statistics.median(
            e / x["truth"]["ttft_s"] for e, x in zip(fe, runs)
        )
        * 100,
        "first_err_vs_prefill_forward_ms_median": statistics.median(fe_fwd) * 1e3,
        "rest_err_ms_median": statistics.median(re_) * 1e3,
        "rest_err_ms_max_abs": max(abs(e) for e in re_) * 1e3,
        "rest_err_pct_median": statistics.median(
            e / x["truth"]["rest_mean_s"] for e, x in zip(re_, runs)
        )
        * 100,
        "per_token_abs_err_ms_p50": statistics.median(abs(e) for e in pt_err) * 1e3
        if pt_err
        else None,
        "per_token_abs_err_ms_max": max(abs(e) for e in pt_err) * 1e3 if pt_err else None,
        "handover_first_ms": statistics.median(x["handover_first_s"] for x in runs) * 1e3
        if "handover_first_s" in runs[0]
        else None,
        "handover_rest_ms": statistics.median(x["handover_rest_median_s"] for x in runs) * 1e3
        if "handover_rest_median_s" in runs[0]
        else None,
        "first_within_target": ok_first,
        "rest_within_target": ok_rest,
    }


def render(data: dict[str, Any]) -> str:
    a = data["args"]
    out = [
        f"Known-latency tiny Llama: prefill forward sleeps {a['prefill_ms']} ms, each decoding "
        f"forward {a['decode_ms']} ms; prompt {a['prompt_tokens']} tokens; {a['runs']} measured "
        "runs per row after 1 warm-up. Error = measured − true, ms (median over runs; max |error| "
        "in brackets). Target: |error| ≤ max(1 % of true, 0.5 ms) in every run.",
    ]
    for sname in SCENARIOS:
        rows = []
        for r in data["rows"]:
            if r["scenario"] != sname or not r.get("summary"):
                continue
            s = r["summary"]
            rows.append(
                [
                    r["method"] + (f" — {r['note']}" if r.get("note") else ""),
                    C.fmt(s["true_first_ms"], 2),
                    f"{s['first_err_ms_median']:+.3f} ({s['first_err_ms_max_abs']:.3f})",
                    f"{s['first_err_pct_median']:+.2f} %",
                    C.fmt(s["true_rest_ms"], 3),
                    f"{s['rest_err_ms_median']:+.3f} ({s['rest_err_ms_max_abs']:.3f})",
                    f"{s['rest_err_pct_median']:+.2f} %",
                    "–"
                    if s["per_token_abs_err_ms_p50"] is None
                    else f"{s['per_token_abs_err_ms_p50']:.3f} / "
                    f"{s['per_token_abs_err_ms_max']:.3f}",
                    ("yes" if s["first_within_target"] else "**no**")
                    + " / "
                    + ("yes" if s["rest_within_target"] else "**no**"),
                ]
            )
        out += [
            "",
            f"### {sname}",
            "",
            C.md_table(
                [
                    "method",
                    "true TTFT ms",
                    "TTFT error ms",
                    "TTFT error %",
                    "true rest ms/token",
                    "rest error ms",
                    "rest error %",
                    "per-token |error| ms p50 / max",
                    "within target (first / rest)",
                ],
                rows,
            ),
        ]
        notes = [
            f"- {r['method']}: first token {r['summary']['handover_first_ms']:.3f} ms, "
            f"later tokens {r['summary']['handover_rest_ms']:.3f} ms (median)"
            for r in data["rows"]
            if r["scenario"] == sname and (r.get("summary") or {}).get("handover_first_ms")
        ]
        if notes:
            out += [
                "",
                "generate()'s own work between the end of a forward pass and the put() of its "
                "token (logits processing, token choice, `.cpu()`), included in what a streamer "
                "sees and not in the truth:",
                "",
                *notes,
            ]
    machines = data["machines"]
    out += ["", "Ran on:"] + [f"- {C.machine_line(m)}" for m in machines]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="measured runs per method and scenario")
    ap.add_argument("--prefill-ms", type=float, default=50.0)
    ap.add_argument("--decode-ms", type=float, default=10.0)
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--peer-python",
        action="append",
        default=[],
        help="another interpreter to run this script under (its methods are merged)",
    )
    ap.add_argument("--peers-only", action="store_true", help="only peers' methods (child runs)")
    ap.add_argument("--child-json", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--parent-transformers", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="2 runs, short sleeps: a smoke test")
    ap.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    args = ap.parse_args(argv)
    if args.quick:
        args.runs, args.prefill_ms, args.decode_ms = 2, 20.0, 4.0
    if args.parent_transformers:
        import transformers

        # same transformers as the parent: its streambench rows would only repeat the parent's
        args.peers_only = transformers.__version__ == args.parent_transformers
    rows = measure(args)
    info = C.machine_info()
    if args.child_json:
        Path(args.child_json).write_text(json.dumps({"rows": rows, "machine": info}, default=str))
        return {}
    machines = [info]
    for py in args.peer_python:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "child.json"
            import transformers

            cmd = [py, str(Path(__file__).resolve()), "--child-json", str(out)]
            cmd += ["--parent-transformers", transformers.__version__]
            cmd += ["--runs", str(args.runs), "--prefill-ms", str(args.prefill_ms)]
            cmd += ["--decode-ms", str(args.decode_ms), "--prompt-tokens", str(args.prompt_tokens)]
            cmd += ["--threads", str(args.threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0 or not out.exists():
                print(f"peer run under {py} failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
                continue
            child = json.loads(out.read_text())
        rows += child["rows"]
        machines.append(child["machine"])
    for r in rows:
        r["summary"] = summarize(r)
    data = {"args": vars(args), "machines": machines, "rows": rows}
    md = render(data)
    C.write_results("accuracy", data, md, C.out_dir(args.out, args.quick))
    print(md)
    return data


if __name__ == "__main__":
    main()
