"""Cheap overhead regression guard (``pytest -m bench``; about 2 s).

No absolute times: every bound is a ratio to a baseline measured in the same process, moments
before, with the same tensors. The baselines are the least a per-token timing streamer must do:

* memory off: one ``perf_counter()``, a shape look-up and two list appends per put
  (TimingStreamer(memory=False) measured ~1.9x that on the development machine, 0.30 µs vs
  0.16 µs; the bound, 8x, fails when the streamer's own per-put work grows ~4-fold);
* memory on: the same plus one reading of the same memory probe the streamer uses (measured
  ~1.13x; the bound, 4x, fails when the probe or the streamer around it grows ~3.5-fold, e.g.
  a switch to a psutil call per token);
* ``generate()`` on the tiny model with a TimingStreamer vs a no-op streamer (median ratio of
  interleaved calls ~1.01; the bound, 1.5, catches a gross per-token cost of ~0.5 ms).

Each check takes the best of up to three attempts, so that a burst of load on a shared CI
machine cannot fail it, while a real regression fails all three.
"""

from __future__ import annotations

import statistics
from time import perf_counter

import pytest
import torch
from conftest import gen_kwargs

from streambench import TimingStreamer
from streambench.devices import get_backend

pytestmark = pytest.mark.bench

PROMPT = torch.zeros((1, 16), dtype=torch.long)
TOKEN = torch.zeros((1,), dtype=torch.long)


class Baseline:
    """The least a per-token timing streamer does: a timestamp, a token count, records."""

    def __init__(self, read_memory=None):
        self.times: list[float] = []
        self.tokens: list[int] = []
        self.memory: list[int] = []
        self.read_memory = read_memory

    def put(self, value):
        t = perf_counter()
        self.times.append(t)
        self.tokens.append(1 if value.dim() < 2 else value.shape[-1])
        if self.read_memory is not None:
            self.memory.append(self.read_memory())

    def end(self):
        pass


class Noop:
    def put(self, value):
        pass

    def end(self):
        pass


def best_us_per_put(make, puts: int = 4000, blocks: int = 5) -> float:
    """Fastest block's µs per put; a fresh streamer (run) per block."""
    best = float("inf")
    for _ in range(blocks):
        s = make()
        s.put(PROMPT)
        put = s.put
        t0 = perf_counter()
        for _ in range(puts):
            put(TOKEN)
        best = min(best, (perf_counter() - t0) / puts)
        s.end()
    return best * 1e6


def best_ratio(measure, bound: float, attempts: int = 3) -> tuple[float, list]:
    seen = []
    for _ in range(attempts):
        ratio, detail = measure()
        seen.append((round(ratio, 3), detail))
        if ratio <= bound:
            return ratio, seen
    return min(r for r, _ in seen), seen


def test_put_overhead_memory_off():
    def measure():
        base = best_us_per_put(Baseline)
        ours = best_us_per_put(lambda: TimingStreamer(device="cpu", memory=False))
        return ours / base, {"baseline_us": round(base, 3), "streamer_us": round(ours, 3)}

    ratio, seen = best_ratio(measure, 8.0)
    assert ratio <= 8.0, f"per-put cost (memory off) grew: ratio to baseline {seen}"


def test_put_overhead_memory_on():
    read_memory = get_backend("cpu", memory=True).read_memory
    if read_memory is None:
        pytest.skip("no memory probe on this platform")

    def measure():
        base = best_us_per_put(lambda: Baseline(read_memory))
        ours = best_us_per_put(lambda: TimingStreamer(device="cpu", memory=True))
        return ours / base, {"baseline_us": round(base, 3), "streamer_us": round(ours, 3)}

    ratio, seen = best_ratio(measure, 4.0)
    assert ratio <= 4.0, f"per-put cost (memory on) grew: ratio to baseline {seen}"


@pytest.fixture
def one_thread():
    """One intra-op thread: on a loaded 2-core machine two OpenMP threads wait on each other
    for milliseconds per op, which would drown the streamer's microseconds in noise."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_generate_overhead_vs_noop_streamer(llama, prompt, one_thread):
    kw = gen_kwargs(16)
    ts = TimingStreamer(device="cpu")
    noop = Noop()
    with torch.inference_mode():
        for s in (noop, ts, noop, ts):  # warm-up
            llama.generate(prompt, streamer=s, **kw)

        def measure():
            ratios = []
            for i in range(8):
                pair = (noop, ts) if i % 2 else (ts, noop)
                t = {}
                for s in pair:
                    ts.reset()
                    t0 = perf_counter()
                    llama.generate(prompt, streamer=s, **kw)
                    t[id(s)] = perf_counter() - t0
                ratios.append(t[id(ts)] / t[id(noop)])
            return statistics.median(ratios), [round(r, 3) for r in ratios]

        ratio, seen = best_ratio(measure, 1.5)
    assert ratio <= 1.5, f"generate() with a TimingStreamer vs a no-op streamer: {seen}"


class NestedStatsAccelerator:
    """Stands in for torch.cuda: allocator statistics as the nested dict torch returns, and
    counters for the per-name helpers that flatten and sort all of them on every call."""

    def __init__(self):
        self.peak, self.nested_calls, self.slow_calls, self.resets = 1000, 0, 0, 0

    def is_available(self):
        return True

    def device_count(self):
        return 1

    def current_device(self):
        return 0

    def synchronize(self, index=None):
        pass

    def memory_stats_as_nested_dict(self, index=None):
        self.nested_calls += 1
        self.peak += 10
        return {
            "allocated_bytes": {"all": {"peak": self.peak, "current": 1}},
            "reserved_bytes": {"all": {"current": 4096, "peak": 8192}},
        }

    def max_memory_allocated(self, index=None):
        self.slow_calls += 1
        return 0

    def memory_reserved(self, index=None):
        self.slow_calls += 1
        return 0

    def reset_peak_memory_stats(self, index=None):
        self.resets += 1


def test_accelerator_memory_probe_is_one_allocator_query_per_token(monkeypatch):
    """CUDA/XPU: max_memory_allocated() + memory_reserved() flatten ~120 statistics each
    (~100 µs a call on a CPU); the probe reads both from one nested-dict query per token."""
    fake = NestedStatsAccelerator()
    for name in (
        "is_available",
        "device_count",
        "current_device",
        "synchronize",
        "memory_stats_as_nested_dict",
        "max_memory_allocated",
        "memory_reserved",
        "reset_peak_memory_stats",
    ):
        monkeypatch.setattr(torch.cuda, name, getattr(fake, name))
    s = TimingStreamer(device="cuda", memory="every-token")  # a reading at every token
    s.put(PROMPT)
    for _ in range(5):
        s.put(TOKEN)
    s.end()
    r = s.summary()
    assert fake.slow_calls == 0
    assert fake.nested_calls == 1 + 5  # the prompt's reserved bytes, then one per token
    assert r.memory_per_token_bytes == (1020, 1030, 1040, 1050, 1060)
    assert r.reserved_memory_bytes == 4096 and fake.resets == 1 + 5
