"""PeakRSS against the real kernel: VmHWM, the clear_refs reset, and the fallbacks.

The reset lowers this process's VmHWM and ru_maxrss; that is harmless inside pytest (nothing else
in the test process reads its own peak across tests) but is why the library never resets by itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from streambench.peak_memory import (
    SOURCE_HWM_RESET,
    SOURCE_HWM_SINCE_START,
    SOURCE_HWM_UNRESET,
    SOURCE_RU_MAXRSS,
    MemoryReading,
    PeakRSS,
    rss_bytes,
)

MB = 1024 * 1024
BLOCK = 200 * MB
# the kernel counts RSS per CPU in batches (up to 64 pages per thread); allocator slack and the
# interpreter's own churn add a little more: "about the current RSS" means within this
SLACK = 16 * MB

linux_only = pytest.mark.skipif(
    not os.path.exists("/proc/self/status"), reason="VmHWM is Linux-only"
)


def _allocate(size: int) -> bytearray:
    """A block whose pages are all touched (resident), not lazily mapped zero pages."""
    return bytearray(b"\x01") * size


def _can_reset() -> bool:
    return PeakRSS().reset()


@linux_only
def test_peak_survives_free_and_reset_drops_it() -> None:
    peak = PeakRSS()
    if not peak.reset():
        pytest.skip(f"clear_refs reset not permitted here: {peak.reset_error}")
    before = peak.read()
    assert before.source == SOURCE_HWM_RESET and before.since_reset
    assert abs(before.peak_bytes - before.current_bytes) <= SLACK

    block = _allocate(BLOCK)
    during = peak.read()
    assert during.current_bytes >= before.current_bytes + BLOCK - SLACK
    del block
    after_free = peak.read()
    # the 200 MB block went back to the OS (mmap'd) but the high-water mark remembers it
    assert after_free.current_bytes < during.current_bytes - BLOCK + SLACK
    assert after_free.peak_bytes >= before.current_bytes + BLOCK - SLACK
    assert after_free.peak_bytes >= during.current_bytes - SLACK

    assert peak.reset()
    reset = peak.read()
    assert reset.peak_bytes < after_free.peak_bytes - BLOCK + SLACK
    assert abs(reset.peak_bytes - reset.current_bytes) <= SLACK

    block = _allocate(BLOCK // 2)
    again = peak.read()
    del block
    assert again.peak_bytes >= reset.current_bytes + BLOCK // 2 - SLACK
    assert peak.read().peak_bytes >= again.peak_bytes - SLACK


@linux_only
def test_reset_also_lowers_ru_maxrss_in_a_child() -> None:
    """What the docstring warns about, checked in a child process (so pytest's is untouched).

    Linux carries the parent's high-water mark into a child through fork + exec (the signal
    struct's ``maxrss``) and no reset lowers that part; so the child first allocates more than it
    inherited, and only its own part of ``ru_maxrss`` is expected to drop.
    """
    code = (
        "import resource\n"
        "from streambench.peak_memory import PeakRSS\n"
        "ru = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "inherited = ru()\n"
        "b = bytearray(b'1') * ((inherited + 100 * 1024) * 1024); del b\n"
        "r0 = ru()\n"
        "ok = PeakRSS().reset()\n"
        "print(ok, inherited, r0, ru())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    if out[0] != "True":
        pytest.skip("clear_refs reset not permitted here")
    inherited, r0, r1 = (int(x) for x in out[1:])  # KiB
    assert r0 >= inherited + 90 * 1024
    assert r1 < r0 - 50 * 1024


@linux_only
def test_fallback_when_clear_refs_cannot_be_opened(tmp_path) -> None:
    peak = PeakRSS(clear_refs_path=str(tmp_path / "no" / "clear_refs"))
    assert peak.source == SOURCE_HWM_UNRESET
    assert peak.reset() is False
    assert "FileNotFoundError" in (peak.reset_error or "")
    reading = peak.read()
    assert reading.source == SOURCE_HWM_SINCE_START
    assert reading.since_reset is False
    assert reading.peak_bytes >= reading.current_bytes > 0
    assert reading.to_dict() == {
        "peak_bytes": reading.peak_bytes,
        "current_bytes": reading.current_bytes,
        "source": SOURCE_HWM_SINCE_START,
        "since_reset": False,
    }


@linux_only
def test_a_successful_reset_after_a_refused_one_says_so(tmp_path) -> None:
    if not _can_reset():
        pytest.skip("clear_refs reset not permitted here")
    peak = PeakRSS(clear_refs_path=str(tmp_path / "missing"))
    assert not peak.reset()
    peak.clear_refs_path = "/proc/self/clear_refs"
    assert peak.reset()
    assert peak.read().source == SOURCE_HWM_RESET and peak.reset_error is None


def test_non_linux_fallback_is_ru_maxrss(tmp_path) -> None:
    peak = PeakRSS(status_path=str(tmp_path / "status"), clear_refs_path=str(tmp_path / "cr"))
    assert peak.source == SOURCE_RU_MAXRSS
    assert peak.reset() is False
    reading = peak.read()
    assert isinstance(reading, MemoryReading)
    assert reading.source == SOURCE_RU_MAXRSS and not reading.since_reset
    assert reading.peak_bytes > 10 * MB  # a Python interpreter with pytest loaded
    if reading.current_bytes is not None:  # psutil present
        assert reading.current_bytes > 10 * MB


@linux_only
def test_rss_bytes_tracks_an_allocation() -> None:
    base = rss_bytes()
    assert base is not None and base > 10 * MB
    block = _allocate(BLOCK // 4)
    grown = rss_bytes()
    del block
    assert grown is not None and grown >= base + BLOCK // 4 - SLACK


def test_fake_status_file_parsing(tmp_path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmPeak:\t  9000 kB\nVmHWM:\t  4096 kB\nVmRSS:\t  1024 kB\n")
    reading = PeakRSS(status_path=str(status), clear_refs_path=str(tmp_path / "cr")).read()
    assert (reading.peak_bytes, reading.current_bytes) == (4096 * 1024, 1024 * 1024)
    assert reading.source == SOURCE_HWM_UNRESET
    assert rss_bytes(str(status)) == 1024 * 1024


def test_import_is_light() -> None:
    code = (
        "import json, sys, streambench.peak_memory\n"
        "heavy = [m for m in ('torch', 'psutil', 'transformers', 'numpy') if m in sys.modules]\n"
        "ours = sorted(m for m in sys.modules if m.startswith('streambench.'))\n"
        "print(json.dumps([heavy, ours]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    heavy, ours = json.loads(out)
    assert heavy == []
    assert set(ours) <= {"streambench.peak_memory", "streambench.errors"}


def test_docstring_examples() -> None:
    import doctest

    import streambench.peak_memory

    result = doctest.testmod(streambench.peak_memory)
    assert result.attempted > 0 and result.failed == 0
