"""The Ray side of ``streambench run --ray ADDRESS``: connect, check that some node can hold a
task, submit one task per group, hand back outcomes as they finish, cancel what is left.

Ray is imported here only (``streambench[ray]``). Every task runs
:func:`streambench.runners.remote.task.run_group` in a Ray worker on some node, with the CPUs,
GPUs and memory of :class:`~streambench.runners.remote.options.Resources`, and is never retried
(``max_retries=0``: a configuration that crashed its worker is a failed row, as on one machine).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from ...errors import UsageError
from .options import Resources
from .task import GroupOutcome, run_group

__all__ = ["RayBackend", "ray_task"]

#: seconds cancelled tasks get to pass the interrupt to their workers and return, before they
#: are killed (their worker processes die with them: :mod:`streambench.runners.orphan`)
CANCEL_GRACE_S = 20.0
#: how often the driver looks for finished tasks (s): the latency a row may gain
POLL_S = 0.1


@contextlib.contextmanager
def keep_signal_handlers() -> Iterator[None]:
    """Around ``ray.init``: put this process's handlers of SIGINT, SIGTERM and SIGHUP back after
    it. Ray installs its own (a SIGTERM handler that exits with code 15, and a C++ failure
    handler that aborts), which would end the sweep without the orderly stop that keeps the
    finished rows."""
    import signal

    from ...errors import HANDLED_SIGNALS

    saved = {signum: signal.getsignal(signum) for signum in HANDLED_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            if handler is not None:
                signal.signal(signum, handler)


def _where() -> dict[str, Any]:
    """This node as Ray sees it: its node id, address and total resources."""
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    for node in ray.nodes():
        if node.get("NodeID") == node_id:
            resources = {k: float(v) for k, v in (node.get("Resources") or {}).items()}
            kept = {k: v for k, v in resources.items() if k in ("CPU", "GPU", "memory")}
            return {
                "node_id": node_id,
                "address": node.get("NodeManagerAddress"),
                "resources": kept,
            }
    return {"node_id": node_id}


def ray_task(job: dict[str, Any]) -> GroupOutcome:
    """The body of every Ray task: :func:`run_group` with Ray's facts of the node."""
    return run_group(job, _where)


def _largest(nodes: list[dict[str, Any]], key: str) -> float:
    alive = [n for n in nodes if n.get("Alive")]
    return max((float((n.get("Resources") or {}).get(key, 0)) for n in alive), default=0.0)


def check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """A ``HOST:PORT`` address must accept a connection within ``timeout_s``: ``ray.init``
    itself retries for minutes before it gives up on an address where nothing listens."""
    import socket

    host, sep, port = address.rpartition(":")
    if "://" in address or not sep or not port.isdigit():
        return  # auto, local, ray://: Ray's own checks
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise UsageError(
            f"--ray {address}: nothing answers there ({exc.strerror or exc}); start a cluster "
            "with 'ray start --head' or give its address"
        ) from None


class RayBackend:
    """One connection to a Ray cluster for one sweep."""

    kind = "ray"

    def __init__(self, address: str, resources: Resources, debug: bool = False) -> None:
        import ray

        self.ray = ray
        check_reachable(address)
        try:
            # the workers' own output stays in Ray's logs unless --debug: rows carry the errors
            with keep_signal_handlers():
                ray.init(address=address, log_to_driver=debug, logging_level="ERROR")
        except Exception as exc:  # noqa: BLE001 - ConnectionError, ValueError, RuntimeError ...
            raise UsageError(
                f"--ray {address}: cannot connect to a Ray cluster there "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); start "
                "one with 'ray start --head' or give its address"
            ) from None
        self.address = address
        self.resources = resources
        self._check_feasible()
        self.remote = ray.remote(ray_task).options(
            num_cpus=resources.cpus,
            num_gpus=resources.gpus,
            memory=resources.memory_bytes,
            max_retries=0,
        )
        self.pending: dict[Any, tuple[str, float]] = {}  # ref -> (group key, submitted at)

    def _check_feasible(self) -> None:
        """A task no node can hold would wait forever: :class:`UsageError` instead."""
        nodes = self.ray.nodes()
        asked = (
            ("CPU", self.resources.cpus, "--ray-cpus"),
            ("GPU", self.resources.gpus, "--ray-gpus (a --device cuda task takes 1)"),
            ("memory", float(self.resources.memory_bytes or 0), "--ray-memory"),
        )
        for key, amount, option in asked:
            largest = _largest(nodes, key)
            if amount > largest:
                self.close()
                raise UsageError(
                    f"{option}: each configuration asks for {amount:g} {key}, and no node of the "
                    f"Ray cluster at {self.address} has that much (the largest has {largest:g})"
                )

    def nodes(self) -> int:
        """How many nodes of the cluster are alive."""
        return sum(1 for n in self.ray.nodes() if n.get("Alive"))

    def submit(self, key: str, job: dict[str, Any]) -> None:
        ref = self.remote.remote(job)
        self.pending[ref] = (key, time.monotonic())

    def finished(self) -> Iterator[tuple[str, GroupOutcome | str, float]]:
        """``(group key, outcome or the task's error, seconds from submit to here)`` for each
        task, in the order they finish."""
        while self.pending:
            done, _ = self.ray.wait(list(self.pending), num_returns=1, timeout=0)
            if not done:
                # wait here, in Python: a signal that comes inside ray.wait reaches this
                # process as Ray's own KeyboardInterrupt, whose signal is lost (130 for a SIGTERM)
                time.sleep(POLL_S)
                continue
            for ref in done:
                key, submitted = self.pending.pop(ref)
                try:
                    outcome: GroupOutcome | str = self.ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - the task died: a failed row
                    first = str(exc).strip().splitlines()
                    outcome = f"Ray task failed: {type(exc).__name__}" + (
                        f": {first[-1][:300]}" if first else ""
                    )
                yield key, outcome, time.monotonic() - submitted

    def cancel(self) -> int:
        """Cancel every task not finished (running ones get a ``KeyboardInterrupt``, which
        stops their worker); those still running after :data:`CANCEL_GRACE_S` are killed.
        Returns how many were cancelled."""
        refs = list(self.pending)
        for ref in refs:
            self.ray.cancel(ref, force=False)
        if refs:
            _done, left = self.ray.wait(refs, num_returns=len(refs), timeout=CANCEL_GRACE_S)
            for ref in left:
                self.ray.cancel(ref, force=True)
        self.pending.clear()
        return len(refs)

    def close(self) -> None:
        if self.ray.is_initialized():
            self.ray.shutdown()
