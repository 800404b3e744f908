"""What a Ray task or a Slurm job runs on its node: one group of configurations in a fresh
isolated worker process (:class:`streambench.runners.local.isolation.Worker`), returned as a
:class:`GroupOutcome`.

Nothing here imports Ray or submitit: the same function is the body of a Ray task and of a
submitit job, and it runs on a machine that has only streambench and its engines installed (plus
the scheduler's own client).
"""

from __future__ import annotations

import os
import platform
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["GroupOutcome", "NodeFacts", "node_facts", "run_group"]


@dataclass(frozen=True)
class NodeFacts:
    """The node a group ran on: ``name`` (the hostname), ``node_id`` (the scheduler's id of the
    node: Ray's node id, Slurm's job id), ``address`` (its IP address as the scheduler sees it),
    ``resources`` (the node's total resources as the scheduler counts them, e.g. ``{"CPU": 2}``)
    and ``environment`` (versions, device and CPU: the keys of a results document's
    ``environment`` that say what the numbers depend on)."""

    name: str
    node_id: str | None = None
    address: str | None = None
    resources: dict[str, float] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "node_id": self.node_id,
            "address": self.address,
            "resources": dict(self.resources),
            "environment": dict(self.environment),
        }


@dataclass(frozen=True)
class GroupOutcome:
    """What one group of configurations gave: ``entries`` (the worker's results/2 configuration
    objects, in the job's order; fewer than asked when the worker died or its model did not
    load), ``load_error`` and ``usage`` (the model could not be loaded; ``usage``: because of
    bad input), ``exit_cause`` (why the worker ended without every entry, e.g. ``worker killed
    by SIGKILL``), ``node``, and ``task_s`` / ``worker_s`` (seconds, on the node's own
    monotonic clock: the whole task, and the worker process from its start to its exit)."""

    entries: tuple[dict[str, Any], ...]
    node: NodeFacts
    load_error: str | None = None
    usage: bool = False
    exit_cause: str | None = None
    notes: tuple[str, ...] = ()
    task_s: float = 0.0
    worker_s: float = 0.0


def node_facts(
    device: str, versions: dict[str, str], node_id: str | None = None, address: str | None = None,
    resources: dict[str, float] | None = None,
) -> NodeFacts:  # fmt: skip
    """This node's facts. ``versions``: the worker's library versions (its ``loaded`` event:
    torch, transformers, … as the worker imported them). The device's name is asked of torch only
    for an accelerator (the CPU's name is read from ``/proc/cpuinfo``)."""
    from ...devices import cpu_model
    from ...version import __version__

    env: dict[str, Any] = {
        "streambench": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": cpu_model() or platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        **versions,
        "device": device,
        # the worker's threads: Ray sets it to the task's CPUs (torch follows it)
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
    env.update(_device_facts(device))
    return NodeFacts(socket.gethostname(), node_id, address, dict(resources or {}), env)


def _device_facts(device: str) -> dict[str, Any]:
    """The device's name (and, on CUDA, the driver's version), as this node sees it."""
    if device.split(":")[0] == "cpu":
        from ...devices import cpu_model

        return {"device_name": cpu_model() or platform.machine()}
    try:
        import torch

        from ...devices import device_name

        facts: dict[str, Any] = {"device_name": device_name(torch.device(device))}
        if device.startswith("cuda"):
            version = torch._C._cuda_getDriverVersion()  # e.g. 12040 for CUDA 12.4's driver API
            facts["cuda_driver"] = f"{version // 1000}.{version % 1000 // 10}"
        return facts
    except Exception as exc:  # noqa: BLE001 - a name is cosmetic, never fatal
        return {"device_name": f"unknown ({type(exc).__name__})"}


def run_group(
    job: dict[str, Any], where: Callable[[], dict[str, Any]] | None = None
) -> GroupOutcome:
    """Run ``job`` (:func:`streambench.runners.local.isolation.job_for`) in a fresh worker
    process on this node and return what it gave. ``where``: the scheduler's facts of this
    node (``node_id``, ``address``, ``resources``). An interrupt (a cancelled Ray task gets a
    ``KeyboardInterrupt``) is passed on to the worker, whose partial entry is kept."""
    from ..local.isolation import Worker, death_cause

    started = time.monotonic()
    worker = Worker(job)
    spawned = time.monotonic()
    entries: list[dict[str, Any]] = []
    versions: dict[str, str] = {}
    notes: list[str] = []
    load_error, usage = None, False
    try:
        while (event := worker.next_event()) is not None:
            kind = event.get("event")
            if kind == "entry" and isinstance(event.get("entry"), dict):
                entries.append(event["entry"])
            elif kind == "loaded":
                versions = {str(k): str(v) for k, v in (event.get("versions") or {}).items()}
                notes = [str(n) for n in event.get("notes") or []]
            elif kind == "load_failed":
                load_error, usage = str(event.get("error")), bool(event.get("usage"))
    finally:
        worker.stop()
    worker_s = time.monotonic() - spawned
    cause = None
    if len(entries) < len(job["configurations"]) and load_error is None:
        cause = death_cause(worker.proc.returncode if worker.proc.returncode is not None else -9)
    node = node_facts(job["device"], versions, **(where() if where else {}))
    return GroupOutcome(
        tuple(entries), node, load_error, usage, cause, tuple(notes),
        time.monotonic() - started, worker_s,
    )  # fmt: skip
