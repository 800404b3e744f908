"""Intel GPU telemetry through a fake ``xpu-smi`` on PATH: a real process that prints what
``xpu-smi dump`` prints (the header and CSV rows of Intel XPU Manager's documentation)."""

from __future__ import annotations

import json
import os
import sys
import time

import pytest

from streambench.telemetry import Sampler, XpuSmiSource, discover, energy_per_phase

FAKE = r"""#!{python}
import json, sys, time
with open({argv_file!r}, "w") as f:
    json.dump(sys.argv[1:], f)
mode = {mode!r}
if mode == "error":
    print("Error: device 3 not found", file=sys.stderr)
    sys.exit(1)
print("Timestamp, DeviceId, GPU Utilization (%), GPU Power (W), GPU Frequency (MHz), "
      "GPU Core Temperature (Celsius Degree), GPU Memory Used (MiB)", flush=True)
i = 0
while True:
    util = "N/A" if mode == "no-util" else f"{{50 + i % 2:.2f}}"
    row = f"06:14:{{i % 60:02d}}.000,    0, {{util}}, {watts:.2f},  1600, 61.00, 2048.00"
    print(row, flush=True)
    i += 1
    time.sleep({every})
"""


def fake_xpu_smi(tmp_path, monkeypatch, mode="ok", watts=50.0, every=0.1):
    """Put a fake xpu-smi first on PATH; returns the file its arguments are written to."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    argv_file = tmp_path / "argv.json"
    exe = bin_dir / "xpu-smi"
    exe.write_text(
        FAKE.format(
            python=sys.executable, argv_file=str(argv_file), mode=mode, watts=watts, every=every
        )
    )
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return argv_file


def test_rows_become_readings_and_the_process_is_stopped(tmp_path, monkeypatch):
    argv_file = fake_xpu_smi(tmp_path, monkeypatch, every=0.1)
    (src,) = discover("xpu:0")
    assert isinstance(src, XpuSmiSource) and src.name == "xpu-smi:0"
    try:
        assert src.available() == (True, "")
        with Sampler([src], period_s=0.02) as sampler:
            time.sleep(0.6)
    finally:
        src.close()
    assert json.loads(argv_file.read_text()) == ["dump", "-d", "0", "-m", "0,1,2,3,18", "-i", "1"]
    assert src._proc is not None and src._proc.poll() is not None  # terminated
    readings = [r for _, r in sampler.trace()]
    rows = [r for r in readings if r]
    # ~30 polls at 20 ms, ~6 rows at 100 ms: each row is handed over once, other polls read nothing
    assert 2 <= len(rows) < len(readings)
    first = rows[0]
    assert first["power_w"] == 50.0 and first["gpu_clock_mhz"] == 1600.0
    assert first["temperature_c"] == 61.0 and first["memory_used_bytes"] == 2048 * 2**20
    assert {r["utilization_pct"] for r in rows} <= {50.0, 51.0}
    assert src.resolution_s["power_w"] == 1.0 and src.warnings() == []


def test_a_value_that_is_not_a_number_is_left_out_with_a_warning(tmp_path, monkeypatch):
    fake_xpu_smi(tmp_path, monkeypatch, mode="no-util")
    src = XpuSmiSource(0)
    try:
        assert src.available()[0]
        time.sleep(0.35)
        row = src.read()
    finally:
        src.close()
    assert "utilization_pct" not in row and row["power_w"] == 50.0
    assert src.warnings() == ["xpu-smi:0: xpu-smi printed no number for utilization_pct"]


def test_xpu_smi_that_fails_is_unavailable_with_its_message(tmp_path, monkeypatch):
    fake_xpu_smi(tmp_path, monkeypatch, mode="error")
    src = XpuSmiSource(3)
    ok, reason = src.available()
    src.close()
    assert not ok
    assert reason == "xpu-smi dump exited with code 1: Error: device 3 not found"


def test_no_xpu_smi_on_path_says_so(monkeypatch):
    monkeypatch.setenv("PATH", "")
    (src,) = discover("xpu:1")
    ok, reason = src.available()
    assert not ok and "xpu-smi not found on PATH" in reason and src.name == "xpu-smi:1"


def test_energy_per_phase_from_its_power_rows(tmp_path, monkeypatch):
    """Power integrated over time: a phase shorter than the rows' 1 s resolution is null with
    the reason; a 1.5 s decode at a constant 50 W is ~75 J."""
    fake_xpu_smi(tmp_path, monkeypatch, watts=50.0, every=0.1)
    src = XpuSmiSource(0)
    try:
        assert src.available()[0]
        with Sampler([src], period_s=0.05) as sampler:
            time.sleep(0.3)
            t_prompt = time.perf_counter()
            time.sleep(0.2)
            t_first = time.perf_counter()
            time.sleep(1.5)
            t_last = time.perf_counter()
            time.sleep(0.3)
    finally:
        src.close()
    phase = energy_per_phase(sampler.trace(), t_prompt, t_first, t_last, 101)
    assert phase.method == "power integration"
    assert phase.prefill_energy_j is None and "resolution" in phase.reasons["prefill_energy_j"]
    assert phase.decode_energy_j == pytest.approx(50.0 * (t_last - t_first), rel=0.02)
    assert phase.decode_energy_j_per_token == pytest.approx(phase.decode_energy_j / 100)
