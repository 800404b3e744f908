"""Device validation, and the accelerator code paths run against fake backends (plus a real
accelerator run under ``-m gpu`` that skips cleanly without one)."""

from __future__ import annotations

import pytest
import torch
from conftest import gen_kwargs

from streambench import DeviceNotAvailableError, TimingStreamer
from streambench.devices import get_backend, resolve_device


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "tpu", "npu:0", ""])
def test_unknown_device_is_a_value_error_naming_it(bad):
    with pytest.raises(ValueError, match=repr(bad) if bad else "device"):
        TimingStreamer(device=bad)


@pytest.mark.parametrize("kind", ["cuda", "xpu", "mps", "cuda:1"])
def test_missing_device_fails_at_construction(kind):
    if kind.split(":")[0] != "cpu":
        try:
            resolve_device(kind)
            pytest.skip(f"this machine has {kind}")
        except DeviceNotAvailableError:
            pass
    with pytest.raises(DeviceNotAvailableError, match=kind.split(":")[0]):
        TimingStreamer(device=kind)


def test_auto_and_torch_device():
    assert resolve_device(torch.device("cpu")).type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "xpu", "mps")


class FakeAccelerator:
    """Stands in for torch.cuda / torch.xpu: counts syncs, hands out peak-memory readings."""

    def __init__(self):
        self.syncs = 0
        self.resets = 0
        self.peak = 1000

    def is_available(self):
        return True

    def device_count(self):
        return 2

    def current_device(self):
        return 0

    def synchronize(self, index=None):
        self.syncs += 1

    def max_memory_allocated(self, index=None):
        self.peak += 10
        return self.peak

    def reset_peak_memory_stats(self, index=None):
        self.resets += 1

    def memory_reserved(self, index=None):
        return 5000


@pytest.mark.parametrize("kind", ["cuda", "xpu"])
def test_accelerator_path_with_fake_backend(monkeypatch, llama, prompt, kind):
    fake = FakeAccelerator()
    mod = getattr(torch, kind)
    for name in (
        "is_available",
        "device_count",
        "current_device",
        "synchronize",
        "max_memory_allocated",
        "reset_peak_memory_stats",
        "memory_reserved",
    ):
        monkeypatch.setattr(mod, name, getattr(fake, name))
    s = TimingStreamer(device=f"{kind}:1", memory="every-token")  # a reading at every token
    assert s.device == f"{kind}:1"
    s.mark_start()
    llama.generate(prompt, streamer=s, **gen_kwargs(5))
    r = s.summary()
    assert fake.syncs == 1 + 1 + 5  # mark, prompt put, 5 token puts
    assert r.memory_kind == "peak_allocated"
    assert r.memory_per_token_bytes == (1010, 1020, 1030, 1040, 1050)
    assert r.peak_memory_bytes == 1050 and r.reserved_memory_bytes == 5000
    assert fake.resets == 1 + 5  # at the mark, then after every reading
    with pytest.raises(DeviceNotAvailableError, match="only 2"):
        TimingStreamer(device=f"{kind}:2")


def test_mps_path_with_fake_backend(monkeypatch, llama, prompt):
    syncs = []
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.mps, "synchronize", lambda: syncs.append(1))
    monkeypatch.setattr(torch.mps, "current_allocated_memory", lambda: 4096)
    monkeypatch.setattr(torch.mps, "driver_allocated_memory", lambda: 8192)
    s = TimingStreamer(device="mps", memory="every-token")
    llama.generate(prompt, streamer=s, **gen_kwargs(3))
    r = s.summary()
    assert len(syncs) == 4
    assert r.memory_kind == "current_allocated" and r.memory_per_token_bytes == (4096,) * 3
    assert r.reserved_memory_bytes == 8192


def test_xpu_without_torch_xpu_and_without_ipex(monkeypatch):
    monkeypatch.delattr(torch, "xpu")
    monkeypatch.setitem(__import__("sys").modules, "intel_extension_for_pytorch", None)
    with pytest.raises(DeviceNotAvailableError, match="xpu"):
        TimingStreamer(device="xpu")


def test_cpu_backend_has_no_sync_and_reads_rss():
    b = get_backend("cpu")
    assert b.sync is None and b.memory_kind == "rss"
    assert b.read_memory() > 10 * 2**20


def test_rss_reader_reads_its_own_process_after_a_fork():
    """/proc/self resolves when opened: a forked child must not go on reading its parent's RSS
    through the inherited descriptor. A child that writes 256 MiB must see its reading grow by
    most of them (the kernel syncs RSS counters lazily); through the parent's file it stays put.
    Both readings are the child's: its RSS starts below the parent's (fork does not copy the
    page tables of file-backed mappings)."""
    import os

    read = get_backend("cpu").read_memory
    read()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: read, write, read, report, leave without running pytest's exit
        try:
            before = read()
            block = b"x" * (256 * 2**20)  # written, so resident (no torch: OpenMP after fork)
            os.write(w, f"{read() - before} {len(block)}".encode())
        finally:
            os._exit(0)
    os.close(w)
    grown, _ = os.read(r, 100).decode().split()
    os.close(r)
    os.waitpid(pid, 0)
    assert int(grown) >= 128 * 2**20, f"the child's reading grew by {int(grown) >> 20} MiB"


def _accelerators():
    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    if hasattr(torch, "xpu") and torch.xpu.is_available():
        found.append("xpu")
    if torch.backends.mps.is_available():
        found.append("mps")
    return found


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["cuda", "xpu", "mps"])
def test_real_accelerator(kind):
    if kind not in _accelerators():
        pytest.skip(f"no {kind} on this machine")
    from streambench.tiny import build_model, tiny_llama_config

    model = build_model(tiny_llama_config()).to(kind)
    ids = torch.randint(3, 259, (1, 16), device=kind)
    s = TimingStreamer(device=kind)
    model.generate(ids, streamer=s, **gen_kwargs(16))
    r = s.summary()
    assert r.new_tokens == 16 and r.first_token_s > 0 and r.rest_token_mean_s > 0
    assert r.peak_memory_bytes > 0 and r.device.startswith(kind)
