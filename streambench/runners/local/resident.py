"""Make a forked worker's resident set what a fresh process's would be (Linux), so that its peak
RSS (``VmHWM``) means the same thing.

After ``fork()`` the kernel copies the page-table entries of anonymous memory (the heap, the
model's weights) but not of file-backed mappings (shared libraries' code, memory-mapped weight
files): the child's RSS leaves out every file page its parent had resident — measured on the tiny
model, 75 MiB (RSS before the trials 273.6 MiB forked, 349.1 MiB fresh), mostly torch's and
transformers' libraries that the import touched — and counts it again as "growth" when the
configuration first touches it. The child's high-water mark then reads lower
than a fresh process's, and its growth higher. :func:`resident_file_ranges` (in the warm process,
before the fork) lists the file pages it has resident (``/proc/self/maps`` and the present bit of
``/proc/self/pagemap``); :func:`populate` (in the worker, before anything is measured) maps them
again (``madvise(MADV_POPULATE_READ)``, Linux >= 5.14; else a read of one byte per page). They are
in the page cache already: no I/O, only page-table entries.
"""

from __future__ import annotations

import ctypes
import os

__all__ = ["populate", "resident_file_ranges"]

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
#: <linux/mman.h>
_MADV_POPULATE_READ = 22
_PRESENT = 1 << 63


def _file_mappings(maps: str) -> list[tuple[int, int]]:
    """(start, end) of the readable file-backed mappings in a ``/proc/<pid>/maps`` text."""
    out = []
    for line in maps.splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) < 6 or parts[4] == "0" or not parts[1].startswith("r"):
            continue  # anonymous (copied by fork already), or unreadable
        if parts[5].startswith("/dev/"):
            continue  # a device's memory: never touched from here
        start, end = (int(x, 16) for x in parts[0].split("-"))
        out.append((start, end))
    return out


def resident_file_ranges() -> list[tuple[int, int]]:
    """(address, length in bytes) of each run of file-backed pages resident in this process;
    empty where ``/proc/self/pagemap`` cannot be read."""
    import numpy as np

    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            mappings = _file_mappings(f.read())
        fd = os.open("/proc/self/pagemap", os.O_RDONLY)
    except OSError:
        return []
    runs: list[tuple[int, int]] = []
    try:
        for start, end in mappings:
            data = os.pread(fd, 8 * ((end - start) // PAGE), 8 * (start // PAGE))
            present = (np.frombuffer(data, dtype=np.uint64) & np.uint64(_PRESENT)) != 0
            if not present.any():
                continue
            # runs of present pages: where the flag changes
            edges = np.flatnonzero(np.diff(np.concatenate(([0], present.view(np.int8), [0]))))
            for first, stop in zip(edges[::2], edges[1::2]):
                runs.append((start + int(first) * PAGE, int(stop - first) * PAGE))
    except OSError:
        return runs
    finally:
        os.close(fd)
    return runs


def populate(ranges: list[tuple[int, int]]) -> int:
    """Map ``ranges`` (from :func:`resident_file_ranges` of the process this one was forked
    from) into this process's page tables; returns the bytes mapped."""
    libc = ctypes.CDLL(None, use_errno=True)
    madvise = libc.madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    done = 0
    for address, length in ranges:
        if madvise(address, length, _MADV_POPULATE_READ) != 0:
            for page in range(address, address + length, PAGE):  # older kernels: touch
                ctypes.string_at(page, 1)  # mapped: inherited from the warm process
        done += length
    return done
