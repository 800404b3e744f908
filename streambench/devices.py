"""Device sync and memory probes per backend: CPU, CUDA, Intel XPU, Apple MPS.

Each backend gives the streamer two cheap callables: ``sync()`` (wait until the device has finished
the queued work, so the timestamp after it is honest) and ``read_memory()`` (bytes, one reading
per token). What a reading means:

=======  =====================  ==============================================================
device   ``memory_kind``        reading
=======  =====================  ==============================================================
cuda     ``peak_allocated``     ``torch.cuda.max_memory_allocated`` since the previous reading
                                (the peak counter is reset after each read), bytes
xpu      ``peak_allocated``     the same through ``torch.xpu``
mps      ``current_allocated``  ``torch.mps.current_allocated_memory()`` at the token (MPS has
                                no peak counter), bytes
cpu      ``rss``                resident set size of the whole process at the token, bytes
                                (Linux: ``/proc/self/statm`` with one ``pread``, ~2-3 us;
                                elsewhere ``psutil``, ~15 us)
=======  =====================  ==============================================================

``read_reserved()`` (accelerators only) is the caching allocator's reserved bytes (MPS: driver
memory), which is what ``nvidia-smi``-style tools see minus the context.

Example:
    >>> from streambench.devices import get_backend
    >>> b = get_backend("cpu")
    >>> b.device.type, b.memory_kind
    ('cpu', 'rss')
    >>> b.read_memory() > 0
    True
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = [
    "KNOWN_DEVICE_TYPES",
    "DeviceBackend",
    "DeviceNotAvailableError",
    "device_backend",
    "get_backend",
    "resolve_device",
]

KNOWN_DEVICE_TYPES = ("cpu", "cuda", "xpu", "mps")


class DeviceNotAvailableError(RuntimeError):
    """The device type is known but this machine (or this torch build) does not have it."""


def _xpu_module() -> Any | None:
    """``torch.xpu`` from upstream PyTorch; import IPEX only when torch lacks it and IPEX exists."""
    import torch

    if not hasattr(torch, "xpu"):
        try:
            import intel_extension_for_pytorch  # noqa: F401
        except ImportError:
            return None
    return getattr(torch, "xpu", None)


def _is_available(kind: str) -> bool:
    import torch

    if kind == "cpu":
        return True
    if kind == "cuda":
        return bool(torch.cuda.is_available())
    if kind == "xpu":
        mod = _xpu_module()
        return bool(mod is not None and mod.is_available())
    if kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        return bool(mps is not None and mps.is_available())
    return False


def _first_accelerator() -> str:
    for kind in ("cuda", "xpu", "mps"):
        if _is_available(kind):
            return kind
    return "cpu"


def resolve_device(device: Any = None) -> torch.device:
    """Validate ``device`` and return it as a ``torch.device``.

    ``None`` or ``"auto"`` picks the first available of cuda, xpu, mps, else cpu. Raises
    ``ValueError`` for an unknown device string and :class:`DeviceNotAvailableError` for a known
    device this machine lacks (e.g. ``"xpu"`` without an XPU).
    """
    import torch

    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        device = _first_accelerator()
    if isinstance(device, torch.device):
        dev = device
    elif isinstance(device, int):
        dev = torch.device("cuda", device)
    elif isinstance(device, str):
        try:
            dev = torch.device(device.strip())
        except RuntimeError:
            raise ValueError(
                f"unknown device {device!r}: use one of 'auto', 'cpu', 'cuda', 'cuda:N', 'xpu', "
                "'xpu:N', 'mps' or a torch.device"
            ) from None
    else:
        raise ValueError(f"device must be a string or torch.device, got {type(device).__name__}")
    if dev.type not in KNOWN_DEVICE_TYPES:
        raise ValueError(
            f"unsupported device {str(dev)!r}: streambench times 'cpu', 'cuda', 'xpu' and 'mps'"
        )
    if not _is_available(dev.type):
        hint = {
            "cuda": "no CUDA GPU is visible to torch (torch.cuda.is_available() is False)",
            "xpu": "no Intel XPU is visible to torch (torch.xpu.is_available() is False, or this "
            "torch has no XPU support)",
            "mps": "Apple MPS is not available (torch.backends.mps.is_available() is False)",
        }[dev.type]
        raise DeviceNotAvailableError(
            f"device {str(dev)!r} is not available: {hint}; pass device='cpu' or a device you have"
        )
    if dev.index is not None and dev.type in ("cuda", "xpu"):
        count = getattr(torch, dev.type).device_count()
        if dev.index >= count:
            raise DeviceNotAvailableError(
                f"device {str(dev)!r} is not available: only {count} {dev.type} device(s) visible"
            )
    return dev


@functools.lru_cache(maxsize=1)
def _rss_reader() -> Callable[[], int] | None:
    """Cheapest resident-set-size reader this platform has."""
    if sys.platform.startswith("linux"):
        try:
            # /proc/self is resolved when the file is opened: a forked child would go on reading
            # its parent's memory through the inherited descriptor, so the child reopens it.
            fds = [os.open("/proc/self/statm", os.O_RDONLY)]
            page = os.sysconf("SC_PAGE_SIZE")
            pread = os.pread

            def reopen() -> None:
                old, fds[0] = fds[0], os.open("/proc/self/statm", os.O_RDONLY)
                os.close(old)

            def rss() -> int:
                # statm: size resident shared ... in pages; pread avoids a seek and a new file.
                return int(pread(fds[0], 128, 0).split()[1]) * page

            rss()
            os.register_at_fork(after_in_child=reopen)
            return rss
        except OSError:
            pass
    try:
        import psutil
    except ImportError:
        return None
    procs = [psutil.Process()]  # bound to a pid: a forked child makes its own
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=lambda: procs.__setitem__(0, psutil.Process()))
    return lambda: procs[0].memory_info().rss


@dataclass
class DeviceBackend:
    """How to sync and read memory on one device.

    ``sync`` is ``None`` on CPU (nothing to wait for). ``read_memory`` returns bytes (see the module
    docstring for what they mean per device) or is ``None`` when memory is not measured.
    ``reset_peak`` resets the peak counter where there is one.
    """

    device: torch.device
    sync: Callable[[], None] | None
    read_memory: Callable[[], int] | None
    read_reserved: Callable[[], int] | None
    reset_peak: Callable[[], None] | None
    memory_kind: str | None


def _accelerator_backend(dev: torch.device, mod: Any, memory: bool) -> DeviceBackend:
    index = dev.index if dev.index is not None else mod.current_device()
    sync = functools.partial(mod.synchronize, index)
    if not memory:
        return DeviceBackend(dev, sync, None, None, None, None)
    max_alloc = mod.max_memory_allocated
    reserved = mod.memory_reserved
    reset = mod.reset_peak_memory_stats
    nested = getattr(mod, "memory_stats_as_nested_dict", None)
    fresh: list[int] = []  # reserved bytes read with the latest peak, not yet handed out

    def stats() -> Any:
        # One allocator query per token: max_memory_allocated() and memory_reserved() each
        # flatten and sort all ~120 allocator statistics (~100 µs a call); the nested dict is
        # one C call. Empty (allocator not initialized) or laid out differently: None, and the
        # public helpers answer instead.
        if nested is None:
            return None
        s = nested(index)
        try:
            return int(s["allocated_bytes"]["all"]["peak"]), int(
                s["reserved_bytes"]["all"]["current"]
            )
        except (KeyError, TypeError):
            return None

    def read_peak() -> int:
        both = stats()
        value, res = both if both is not None else (int(max_alloc(index)), None)
        reset(index)
        fresh[:] = [] if res is None else [res]
        return value

    def read_reserved() -> int:
        # The streamer reads the reserved bytes right after the peak: reuse that query.
        if fresh:
            return fresh.pop()
        both = stats()
        return both[1] if both is not None else int(reserved(index))

    return DeviceBackend(
        device=dev,
        sync=sync,
        read_memory=read_peak,
        read_reserved=read_reserved,
        reset_peak=functools.partial(reset, index),
        memory_kind="peak_allocated",
    )


def get_backend(device: Any = None, memory: bool = True) -> DeviceBackend:
    """The :class:`DeviceBackend` for ``device`` (validated by :func:`resolve_device`)."""
    return device_backend(resolve_device(device), memory)


def device_backend(dev: torch.device, memory: bool = True) -> DeviceBackend:
    """The :class:`DeviceBackend` for a ``torch.device`` already validated (by
    :func:`resolve_device`, e.g. in a :class:`~streambench.engines.transformers.Placement`): not
    checked
    again."""
    import torch

    if dev.type == "cuda":
        return _accelerator_backend(dev, torch.cuda, memory)
    if dev.type == "xpu":
        return _accelerator_backend(dev, _xpu_module(), memory)
    if dev.type == "mps":
        mps = torch.mps
        if not memory:
            return DeviceBackend(dev, mps.synchronize, None, None, None, None)
        return DeviceBackend(
            device=dev,
            sync=mps.synchronize,
            read_memory=lambda: int(mps.current_allocated_memory()),
            read_reserved=lambda: int(mps.driver_allocated_memory()),
            reset_peak=None,
            memory_kind="current_allocated",
        )
    rss = _rss_reader() if memory else None
    return DeviceBackend(dev, None, rss, None, None, "rss" if rss else None)


def device_name(dev: torch.device) -> str:
    """A human name for the device (GPU model, or the CPU model on CPU)."""
    import platform

    import torch

    try:
        if dev.type == "cuda":
            return torch.cuda.get_device_name(dev)
        if dev.type == "xpu":
            return _xpu_module().get_device_name(dev)  # type: ignore[union-attr]
        if dev.type == "mps":
            return "Apple MPS"
    except Exception:  # noqa: BLE001 - a name is cosmetic, never fatal
        pass
    return cpu_model() or platform.processor() or platform.machine()


def cpu_model() -> str | None:
    """The CPU model name from /proc/cpuinfo (Linux), else ``None``."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None
