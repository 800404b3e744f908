"""Telemetry: NVML through a fake pynvml, RAPL through a fake powercap tree (and the real, absent
one), the sampler thread, and the energy-per-phase arithmetic against known counter series."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import types

import pytest

from streambench.telemetry import (
    NvmlSource,
    RaplSource,
    Sample,
    Sampler,
    Telemetry,
    Trace,
    TrialPhases,
    UnavailableSource,
    aggregate_over_trials,
    discover,
    energy_per_phase,
    throttle_reason_names,
)

# ------------------------------------------------------------------------ fake pynvml


class FakeNVMLError(Exception):
    pass


def make_fake_pynvml(watts: float = 300.0, other_pids=(), fail_init: bool = False):
    """A pynvml whose energy counter advances at ``watts`` in real perf_counter time."""
    mod = types.ModuleType("pynvml")
    t0 = time.perf_counter()
    state = {"init": 0}

    def init():
        if fail_init:
            raise FakeNVMLError("Driver Not Loaded")
        state["init"] += 1

    def shutdown():
        state["init"] -= 1

    def energy(h):
        return int((time.perf_counter() - t0) * watts * 1000)  # mJ

    mod.NVMLError = FakeNVMLError
    mod.NVML_CLOCK_SM = 1
    mod.NVML_TEMPERATURE_GPU = 0
    mod.nvmlInit = init
    mod.nvmlShutdown = shutdown
    mod.nvmlDeviceGetHandleByIndex = lambda i: ("handle", i)
    mod.nvmlDeviceGetTotalEnergyConsumption = energy
    mod.nvmlDeviceGetPowerUsage = lambda h: int(watts * 1000)  # mW
    mod.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=87, memory=40)
    mod.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=5 * 2**30, total=80 * 2**30)
    mod.nvmlDeviceGetClockInfo = lambda h, clock: 1980 if clock == 1 else 0
    mod.nvmlDeviceGetTemperature = lambda h, sensor: 61
    mod.nvmlDeviceGetCurrentClocksThrottleReasons = lambda h: 0x4 | 0x20

    def procs(h):
        pids = [os.getpid(), *other_pids]
        return [types.SimpleNamespace(pid=p, usedGpuMemory=2**30) for p in pids]

    mod.nvmlDeviceGetComputeRunningProcesses = procs
    mod.state = state
    return mod


@pytest.fixture
def fake_nvml(monkeypatch):
    mod = make_fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", mod)
    return mod


def test_nvml_readings_units(fake_nvml) -> None:
    src = NvmlSource(0)
    assert src.available() == (True, "")
    r = src.read()
    assert r["power_w"] == 300.0
    assert r["utilization_pct"] == 87.0 and r["memory_utilization_pct"] == 40.0
    assert r["memory_used_bytes"] == 5 * 2**30
    assert r["sm_clock_mhz"] == 1980 and r["temperature_c"] == 61
    assert r["throttle_reasons"] == ["sw_power_cap", "sw_thermal_slowdown"]
    assert r["energy_j"] >= 0
    assert src.resolution_s["energy_j"] == 0.05 and src.resolution_s["power_w"] == 1.0
    assert src.warnings() == []
    src.close()
    assert fake_nvml.state["init"] == 0


def test_nvml_unsupported_field_is_left_out_not_zero(fake_nvml) -> None:
    def not_supported(h):
        raise FakeNVMLError("Not Supported")

    fake_nvml.nvmlDeviceGetTotalEnergyConsumption = not_supported
    src = NvmlSource(0)
    r = src.read()
    assert "energy_j" not in r and r["power_w"] == 300.0
    assert "Not Supported" in src.unsupported["energy_j"]


def test_nvml_other_process_warning(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", make_fake_pynvml(other_pids=(4242, 4343)))
    src = NvmlSource(0)
    assert [pid for pid, _ in src.other_processes()] == [4242, 4343]
    (warning,) = src.warnings()
    assert "2 other process(es)" in warning and "4242, 4343" in warning and "2.0 GiB" in warning
    with Sampler([src], period_s=0.05) as sampler:
        pass
    assert sampler.warnings == [warning]
    assert NvmlSource(0, own_pids=[os.getpid(), 4242, 4343]).warnings() == []


def test_nvml_unavailable_reasons(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import raises ImportError
    ok, reason = NvmlSource(0).available()
    assert not ok and "pynvml not importable" in reason
    (src,) = discover("cuda:0")
    assert isinstance(src, UnavailableSource) and "nvidia-ml-py" in src.available()[1]

    monkeypatch.setitem(sys.modules, "pynvml", make_fake_pynvml(fail_init=True))
    ok, reason = NvmlSource(0).available()
    assert not ok and "nvmlInit failed: Driver Not Loaded" in reason
    with Sampler([NvmlSource(0)]) as sampler:
        pass
    assert "nvmlInit failed" in sampler.unavailable["nvml:0"]
    assert sampler.traces() == {}


def test_discover(fake_nvml, monkeypatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    (src,) = discover("cuda:1")
    assert isinstance(src, NvmlSource) and src.device_index == 3
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert discover("cuda")[0].device_index == 0
    assert isinstance(discover("cpu")[0], RaplSource)
    monkeypatch.setenv("PATH", "")
    (xpu,) = discover("xpu")
    ok, reason = xpu.available()
    assert not ok and "xpu-smi not found on PATH" in reason
    assert not discover("mps")[0].available()[0]


# ------------------------------------------------------------------------ energy arithmetic


def counter_trace(power_at, t_end: float, period: float, t_start: float = 0.0, step=1e-4):
    """Samples every ``period`` of a counter integrating ``power_at(t)`` (W) exactly."""
    samples, energy, t = [], 0.0, t_start
    grid = t_start
    samples.append(Sample(t_start, {"energy_j": 0.0}))
    while grid < t_end:
        nxt = min(grid + period, t_end)
        while t < nxt - 1e-12:
            dt = min(step, nxt - t)
            energy += power_at(t + dt / 2) * dt
            t += dt
        grid = nxt
        samples.append(Sample(grid, {"energy_j": energy}))
    return samples


RES = {"energy_j": 0.05, "power_w": 1.0, "utilization_pct": 1.0}


def test_prefill_and_decode_energy_from_a_constant_counter() -> None:
    # 300 W, sampled every 100 ms: prefill 0.2 s → 60 J; decode 1.0 s over 50 tokens
    trace = Trace("nvml:0", RES, counter_trace(lambda t: 300.0, 2.0, 0.1))
    result = energy_per_phase(trace, 0.33, 0.53, 1.53, new_tokens=50)
    assert result.method == "energy counter" and result.resolution_s == 0.05
    assert result.prefill_energy_j == pytest.approx(60.0, rel=1e-6)
    assert result.prefill_mean_power_w == pytest.approx(300.0, rel=1e-6)
    assert result.decode_energy_j == pytest.approx(300.0, rel=1e-6)
    assert result.decode_energy_j_per_token == pytest.approx(300.0 / 49, rel=1e-9)
    assert result.decode_tokens == 49
    assert result.prefill_mean_utilization_pct is None
    assert result.reasons["prefill_mean_utilization_pct"] == "no utilization readings"


def test_fake_nvml_counter_through_the_sampler(fake_nvml) -> None:
    """The real sampler thread over the fake 300 W counter: per-phase numbers within rounding."""
    with Sampler([NvmlSource(0)], period_s=0.02) as sampler:
        t_prompt = time.perf_counter()
        time.sleep(0.2)
        t_first = time.perf_counter()
        time.sleep(0.3)
        t_last = time.perf_counter()
        time.sleep(0.03)
    telemetry = Telemetry.from_sampler(sampler, [(t_prompt, t_first, t_last, 31)])
    phase = telemetry.phases["nvml:0"]
    # the counter has 1 mJ steps and the samples land 20 ms apart: exact up to a few mJ
    assert phase.prefill_energy_j == pytest.approx(300.0 * (t_first - t_prompt), abs=0.05)
    assert phase.decode_energy_j_per_token == pytest.approx(
        300.0 * (t_last - t_first) / 30, abs=0.01
    )
    assert phase.prefill_mean_utilization_pct is None  # 0.2 s < the ~1 s utilization period
    assert (
        "shorter than the utilization reading's ~1 s resolution"
        in (phase.reasons["prefill_mean_utilization_pct"])
    )
    d = telemetry.to_dict()
    json.dumps(d)
    entry = d["sources"]["nvml:0"]
    assert entry["prefill_energy_j"] == phase.prefill_energy_j
    assert entry["resolution_s"] == 0.05 and entry["method"] == "energy counter"
    assert entry["summary"]["throttle_reasons_seen"] == ["sw_power_cap", "sw_thermal_slowdown"]
    assert entry["summary"]["max_temperature_c"] == 61
    assert d["unavailable"] == {} and d["warnings"] == []


def test_phase_shorter_than_resolution_is_null_with_reason() -> None:
    trace = Trace("nvml:0", RES, counter_trace(lambda t: 300.0, 1.0, 0.01))
    result = energy_per_phase(trace, 0.1, 0.112, 0.9, new_tokens=10)
    assert result.prefill_energy_j is None and result.prefill_mean_power_w is None
    assert (
        result.reasons["prefill_energy_j"]
        == "prefill 12 ms is shorter than the energy counter's ~50 ms resolution"
    )
    assert result.decode_energy_j == pytest.approx(300.0 * 0.788, rel=1e-6)
    assert result.to_dict()["prefill_energy_j"] is None


def test_phase_shorter_than_the_sample_spacing_is_null() -> None:
    trace = Trace("nvml:0", RES, counter_trace(lambda t: 300.0, 2.0, 0.1))
    result = energy_per_phase(trace, 0.33, 0.39, 1.5, new_tokens=10)
    assert result.prefill_energy_j is None
    assert (
        "prefill 60 ms is shorter than the 100 ms between samples"
        in (result.reasons["prefill_energy_j"])
    )


def test_samples_not_covering_the_phase() -> None:
    trace = Trace("nvml:0", RES, counter_trace(lambda t: 300.0, 1.0, 0.1))
    result = energy_per_phase(trace, 0.2, 0.5, 1.5, new_tokens=10)
    assert result.decode_energy_j is None
    assert "do not cover" in result.reasons["decode_energy_j"]


def test_power_integration_fallback() -> None:
    samples = [Sample(i * 0.1, {"power_w": 200.0, "utilization_pct": 50.0}) for i in range(61)]
    result = energy_per_phase(samples, 0.5, 2.0, 5.5, new_tokens=36, resolution_s=RES)
    assert result.method == "power integration" and result.resolution_s == 1.0
    assert result.prefill_energy_j == pytest.approx(300.0)
    assert result.decode_energy_j_per_token == pytest.approx(200.0 * 3.5 / 35)
    assert result.decode_mean_utilization_pct == pytest.approx(50.0)
    short = energy_per_phase(samples, 0.5, 0.7, 5.5, new_tokens=36, resolution_s=RES)
    assert short.prefill_energy_j is None
    assert short.reasons["prefill_energy_j"] == (
        "prefill 200 ms is shorter than the power reading's ~1 s resolution"
    )


def test_no_energy_source_at_all() -> None:
    samples = [Sample(i * 0.1, {"temperature_c": 50}) for i in range(20)]
    result = energy_per_phase(samples, 0.1, 0.5, 1.5, new_tokens=5, resolution_s=RES)
    assert result.method is None and result.prefill_energy_j is None
    assert "no energy counter and no power" in result.reasons["prefill_energy_j"]


def test_aggregate_resolved_trials_sums() -> None:
    trace = Trace("nvml:0", RES, counter_trace(lambda t: 300.0, 10.0, 0.05))
    trials = [TrialPhases(1.0 + 3 * k, 1.2 + 3 * k, 2.2 + 3 * k, 21) for k in range(3)]
    result = aggregate_over_trials(trace, trials)
    assert result.trials == 3 and "summed over 3 trials" in result.note
    assert result.prefill_energy_j == pytest.approx(60.0, rel=1e-6)
    assert result.decode_energy_j_per_token == pytest.approx(300.0 / 20, rel=1e-6)
    assert result.prefill_energy_j_stderr is None


def test_aggregate_short_prefills_by_least_squares() -> None:
    """20 trials of a 20 ms prefill at 300 W, decode at 200 W, 50 W between, sampled every
    100 ms: no trial resolves its prefill, the pooled fit recovers 6 J per prefill."""
    rng = random.Random(1)
    trials, t = [], 0.3
    for _ in range(20):
        t_prompt = t
        t_first = t_prompt + 0.02
        t_last = t_first + 0.4
        trials.append(TrialPhases(t_prompt, t_first, t_last, 41))
        t = t_last + 0.1 + rng.uniform(0.0, 0.1)  # not locked to the sampling period

    def power(t: float) -> float:
        for tr in trials:
            if tr.t_prompt <= t < tr.t_first:
                return 300.0
            if tr.t_first <= t < tr.t_last:
                return 200.0
        return 50.0

    trace = Trace("nvml:0", RES, counter_trace(power, t + 0.3, 0.1, step=2e-4))
    alone = energy_per_phase(trace, *trials[0])
    assert alone.prefill_energy_j is None
    result = aggregate_over_trials(trace, trials)
    assert "least squares" in result.note and "20 trials" in result.note
    assert result.prefill_energy_j == pytest.approx(6.0, rel=0.03)
    assert result.prefill_mean_power_w == pytest.approx(300.0, rel=0.03)
    assert result.decode_energy_j_per_token == pytest.approx(200.0 * 0.4 / 40, rel=0.01)
    assert result.prefill_energy_j_stderr is not None and result.prefill_energy_j_stderr < 0.5


def test_aggregate_refuses_what_pooling_cannot_give() -> None:
    trace = Trace("nvml:0", RES, counter_trace(lambda t: 300.0, 2.0, 0.1))
    one_short = aggregate_over_trials(trace, [(0.5, 0.51, 1.5, 5), (1.55, 1.56, 1.9, 5)])
    assert one_short.prefill_energy_j is None
    assert (
        "shorter than the energy counter's ~50 ms resolution"
        in (one_short.reasons["prefill_energy_j"])
    )
    power = [Sample(i * 0.1, {"power_w": 100.0}) for i in range(40)]
    pooled = aggregate_over_trials(
        power, [(0.5, 0.55, 1.5, 5), (2.0, 2.05, 3.0, 5)], resolution_s=RES
    )
    assert pooled.prefill_energy_j is None
    assert "cannot be separated by pooling" in pooled.reasons["prefill_energy_j"]


# ------------------------------------------------------------------------ RAPL


def make_powercap(root, zones):
    """``zones``: list of (dir name, zone name, energy_uj, max_energy_range_uj)."""
    for directory, name, energy, top in zones:
        d = root / directory
        d.mkdir(parents=True)
        (d / "name").write_text(name + "\n")
        (d / "energy_uj").write_text(f"{energy}\n")
        (d / "max_energy_range_uj").write_text(f"{top}\n")


def set_energy(root, directory, value) -> None:
    (root / directory / "energy_uj").write_text(f"{value}\n")


def test_rapl_counter_and_wraparound(tmp_path) -> None:
    top = 262_143_328_850
    make_powercap(
        tmp_path,
        [
            ("intel-rapl:0", "package-0", top - 1_000_000, top),
            ("intel-rapl:1", "package-1", 5_000_000, top),
            ("intel-rapl:0:0", "core", 7, top),  # subzone: not summed
            ("intel-rapl:2", "psys", 9, top),  # platform zone: contains the packages
        ],
    )
    src = RaplSource(str(tmp_path))
    assert src.available() == (True, "")
    first = src.read()
    assert first["energy_j"] == 0.0 and set(first) == {
        "package-0_energy_j",
        "package-1_energy_j",
        "energy_j",
    }
    set_energy(tmp_path, "intel-rapl:0", 2_000_000)  # wrapped: 1 J to the top + 2 J after it
    set_energy(tmp_path, "intel-rapl:1", 6_500_000)
    second = src.read()
    assert second["package-0_energy_j"] == pytest.approx(3.0)
    assert second["package-1_energy_j"] == pytest.approx(1.5)
    assert second["energy_j"] == pytest.approx(4.5)
    set_energy(tmp_path, "intel-rapl:0", 4_000_000)
    assert src.read()["package-0_energy_j"] == pytest.approx(5.0)


def test_rapl_permission_denied(tmp_path) -> None:
    make_powercap(tmp_path, [("intel-rapl:0", "package-0", 1, 10)])
    path = tmp_path / "intel-rapl:0" / "energy_uj"
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running as root: file modes do not stop reads")
        ok, reason = RaplSource(str(tmp_path)).available()
        assert not ok and reason.startswith("permission denied")
    finally:
        path.chmod(0o644)


def test_rapl_absent_on_this_machine_is_unavailable_not_zero() -> None:
    src = RaplSource()
    ok, reason = src.available()
    if ok:
        pytest.skip("this machine exposes readable RAPL counters")
    assert "no /sys/class/powercap/intel-rapl" in reason or "permission denied" in reason
    with Sampler([src], period_s=0.05) as sampler:
        t0 = time.perf_counter()
        time.sleep(0.06)
        t1 = time.perf_counter()
    assert sampler.unavailable["rapl"] == reason
    telemetry = Telemetry.from_sampler(sampler, [(t0, t0 + 0.01, t1, 4)])
    d = telemetry.to_dict()
    # nothing measured is reported as nothing, with the reason: no source entry, no 0 J
    assert d["sources"] == {} and d["unavailable"] == {"rapl": reason}
    assert telemetry.phases == {}


def test_rapl_tree_through_the_sampler(tmp_path) -> None:
    make_powercap(tmp_path, [("intel-rapl:0", "package-0", 0, 10**12)])
    with Sampler([RaplSource(str(tmp_path))], period_s=0.02) as sampler:
        time.sleep(0.05)
        set_energy(tmp_path, "intel-rapl:0", 3_000_000)
        time.sleep(0.05)
    trace = sampler.trace("rapl")
    assert trace[0].readings["energy_j"] == 0.0 and trace[-1].readings["energy_j"] == 3.0


# ------------------------------------------------------------------------ sampler thread


class CountingSource:
    name = "count"

    def __init__(self) -> None:
        self.reads = 0
        self.resolution_s = {"energy_j": 0.001}

    def available(self):
        return True, ""

    def read(self):
        self.reads += 1
        return {"energy_j": float(self.reads)}

    def warnings(self):
        return []

    def close(self):
        return None


class FailingSource(CountingSource):
    name = "failing"

    def read(self):
        raise OSError("device gone")


def test_sampler_samples_at_about_the_period_and_stops() -> None:
    src = CountingSource()
    sampler = Sampler([src, FailingSource()], period_s=0.05)
    t0 = time.perf_counter()
    sampler.start()
    assert sampler.running
    time.sleep(0.5)
    sampler.stop()
    elapsed = time.perf_counter() - t0
    assert not sampler.running
    trace = sampler.trace("count")
    # 0.5 s at 50 ms: ~10 polls + the first and last; loose bounds for a busy machine
    assert 5 <= len(trace) <= elapsed / 0.05 + 3
    times = [s.t for s in trace]
    assert times == sorted(times) and t0 <= times[0] and times[-1] <= time.perf_counter()
    gaps = sorted(b - a for a, b in zip(times[1:-1], times[2:-1]))
    assert gaps[len(gaps) // 2] == pytest.approx(0.05, abs=0.03)  # median gap
    reads_after_stop = src.reads
    time.sleep(0.15)
    assert src.reads == reads_after_stop  # the thread is gone
    assert not any(t.name == "streambench-telemetry" for t in __import__("threading").enumerate())
    failing = sampler.trace("failing")
    assert len(failing) == 0 and "OSError: device gone" in failing.errors[0]
    assert len(failing.errors) <= 5
    sampler.stop()  # idempotent


def test_sampler_rejects_a_bad_period_and_a_second_start() -> None:
    with pytest.raises(ValueError):
        Sampler([], period_s=0)
    with Sampler([CountingSource()], period_s=0.05) as sampler:
        with pytest.raises(RuntimeError):
            sampler.start()


def test_throttle_reason_names() -> None:
    assert throttle_reason_names(0) == []
    assert throttle_reason_names(0x8 | 0x80) == ["hw_slowdown", "hw_power_brake_slowdown"]


def test_import_is_light() -> None:
    code = (
        "import json, sys, streambench.telemetry\n"
        "heavy = [m for m in ('torch', 'pynvml', 'psutil', 'numpy') if m in sys.modules]\n"
        "ours = sorted(m for m in sys.modules if m.startswith('streambench.'))\n"
        "print(json.dumps([heavy, ours]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    heavy, ours = json.loads(out)
    assert heavy == []
    assert {m.split(".")[1] for m in ours} <= {"telemetry", "errors"}


def test_docstring_examples() -> None:
    import doctest
    import importlib

    attempted = 0
    for name in ("", ".sources", ".sampler", ".energy", ".result"):
        result = doctest.testmod(importlib.import_module("streambench.telemetry" + name))
        assert result.failed == 0, name
        attempted += result.attempted
    assert attempted > 0
