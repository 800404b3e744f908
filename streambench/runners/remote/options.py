"""The options of ``streambench run`` that send a sweep to a cluster (``--ray``, ``--slurm``
and theirs), checked before anything loads: a bad value, a missing extra or a sweep that cannot
be spread (``--interleave``, ``--isolate none``, several ranks) is one line and exit code 2."""

from __future__ import annotations

import argparse
import importlib.util
import math
from dataclasses import dataclass, field
from typing import Any

from ...errors import UsageError

__all__ = ["RemoteOptions", "Resources", "remote_options"]

#: the most a configuration may ask for of one resource (a typo guard, not a policy)
MAX_CPUS = 1024
MAX_GPUS = 64
MAX_MEMORY_GB = 65536


@dataclass(frozen=True)
class Resources:
    """What one task (one configuration, or one model's group) asks of its node: ``cpus`` (the
    worker's threads: Ray sets ``OMP_NUM_THREADS`` to it), ``gpus`` (1 for ``--device cuda``)
    and ``memory_bytes`` (reserved for scheduling, not enforced; ``None``: not asked)."""

    cpus: float = 1.0
    gpus: float = 0.0
    memory_bytes: int | None = None


@dataclass(frozen=True)
class RemoteOptions:
    """Where the sweep goes: ``scheduler`` (``"ray"`` or ``"slurm"``), ``address`` (``--ray``'s),
    ``resources`` per task, and Slurm's ``partition``, ``gpus_per_job``, ``time_min`` (minutes),
    ``folder`` (submitit's logs and pickles) and ``extra`` (``--slurm-arg KEY=VALUE``)."""

    scheduler: str
    address: str | None = None
    resources: Resources = field(default_factory=Resources)
    partition: str | None = None
    gpus_per_job: int | None = None
    time_min: int | None = None
    folder: str | None = None
    extra: tuple[tuple[str, str], ...] = ()


def _number(value: Any, option: str, low: float, high: float, integer: bool = False) -> float:
    try:
        number = int(value) if integer else float(value)
    except (TypeError, ValueError):
        kind = "an integer" if integer else "a number"
        raise UsageError(f"{option} {value!r}: expected {kind} in [{low:g}, {high:g}]") from None
    if not (math.isfinite(number) and low <= number <= high):
        raise UsageError(f"{option} {value!r}: expected a value in [{low:g}, {high:g}]")
    return number


def _needs(module: str, extra: str, option: str) -> None:
    if importlib.util.find_spec(module) is None:
        from ...extras import install_hint

        raise UsageError(f"{option} needs {module}, which is not installed: {install_hint(extra)}")


def _slurm_args(items: list[str] | None) -> tuple[tuple[str, str], ...]:
    out = []
    for item in items or []:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip().isidentifier():
            raise UsageError(
                f"--slurm-arg {item!r}: expected KEY=VALUE with KEY a submitit slurm_ parameter "
                "name (mem_gb, constraint, account, ...)"
            )
        out.append((key.strip().removeprefix("slurm_"), value))
    return tuple(out)


def remote_options(args: argparse.Namespace, device: Any, isolate: str) -> RemoteOptions | None:
    """``--ray``/``--slurm`` checked against the sweep (``device``: the torch device it times on;
    ``isolate``: as decided); ``None`` when neither was given."""
    ray_address, slurm = getattr(args, "ray", None), bool(getattr(args, "slurm", None))
    given = [o for o in ("ray_cpus", "ray_gpus", "ray_memory") if getattr(args, o, None)]
    given_slurm = [
        o for o in ("slurm_partition", "slurm_gpus_per_job", "slurm_time", "slurm_arg",
                    "slurm_folder") if getattr(args, o, None)
    ]  # fmt: skip
    if ray_address is None and not slurm:
        if given or given_slurm:
            name = "--" + (given or given_slurm)[0].replace("_", "-")
            raise UsageError(f"{name} needs {'--ray' if given else '--slurm'}")
        return None
    if ray_address is not None and slurm:
        raise UsageError("--ray and --slurm: give one of them")
    option = "--ray" if ray_address is not None else "--slurm"
    if isolate == "none":
        raise UsageError(
            f"{option} runs each configuration in a worker process on some node: it does not "
            "work with --isolate none, --interleave or torchrun/deepspeed (use --isolate config "
            "or model)"
        )
    cuda = str(device).split(":")[0] == "cuda"
    if ray_address is not None:
        if given_slurm:
            raise UsageError(f"--{given_slurm[0].replace('_', '-')} needs --slurm, not --ray")
        _needs("ray", "ray", "--ray")
        return RemoteOptions("ray", str(ray_address), _ray_resources(args, cuda))
    if given:
        raise UsageError(f"--{given[0].replace('_', '-')} needs --ray, not --slurm")
    _needs("submitit", "slurm", "--slurm")
    gpus = args.slurm_gpus_per_job
    return RemoteOptions(
        "slurm",
        resources=Resources(1.0, 1.0 if cuda else 0.0, None),
        partition=args.slurm_partition,
        gpus_per_job=int(_number(gpus, "--slurm-gpus-per-job", 0, MAX_GPUS, True))
        if gpus is not None else (1 if cuda else 0),
        time_min=int(_number(args.slurm_time or 60, "--slurm-time", 1, 60 * 24 * 365, True)),
        folder=args.slurm_folder or "streambench-slurm",
        extra=_slurm_args(args.slurm_arg),
    )  # fmt: skip


def _ray_resources(args: argparse.Namespace, cuda: bool) -> Resources:
    cpus = _number(args.ray_cpus or 1, "--ray-cpus", 0, MAX_CPUS)
    gpus = _number(args.ray_gpus, "--ray-gpus", 0, MAX_GPUS) if args.ray_gpus else float(cuda)
    memory = None
    if args.ray_memory:
        memory = int(_number(args.ray_memory, "--ray-memory", 0, MAX_MEMORY_GB) * 1e9)
    return Resources(cpus, gpus, memory)
