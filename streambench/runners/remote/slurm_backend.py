"""The Slurm side of ``streambench run --slurm``: every group one job of one job array, submitted
through submitit (``streambench[slurm]``), results read back from the jobs' return values.

Each job runs :func:`streambench.runners.remote.task.run_group` on its node (the same isolated
worker as ``--isolate`` on one machine); submitit pickles the job's input and its
:class:`~streambench.runners.remote.task.GroupOutcome` into ``--slurm-folder`` (a folder every
node must see). An interrupt cancels the jobs not finished (``scancel``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

from ...errors import UsageError
from .options import RemoteOptions
from .task import GroupOutcome, run_group

__all__ = ["SlurmBackend", "slurm_task"]

#: how often the driver asks Slurm (through submitit's cached ``sacct``) about the jobs (s)
POLL_S = 1.0


def _where() -> dict[str, Any]:
    """This node as Slurm names it: the job's id and the node's name."""
    job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID")
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    return {
        "node_id": f"{job}_{task}" if job and task else job,
        "address": os.environ.get("SLURMD_NODENAME"),
        "resources": {"CPU": float(os.environ.get("SLURM_CPUS_ON_NODE") or 0)},
    }


def slurm_task(job: dict[str, Any]) -> GroupOutcome:
    """The body of every Slurm job: :func:`run_group` with Slurm's facts of the node. The worker
    runs as many threads as the job has CPUs (``OMP_NUM_THREADS``, as Ray sets it), unless the
    job's environment says otherwise."""
    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    if cpus and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = cpus  # the worker process inherits it
    return run_group(job, _where)


class SlurmBackend:
    """One job array for one sweep."""

    kind = "slurm"

    def __init__(self, remote: RemoteOptions) -> None:
        import submitit

        self.executor = submitit.AutoExecutor(folder=remote.folder, cluster="slurm")
        params: dict[str, Any] = {
            "timeout_min": remote.time_min,
            "cpus_per_task": int(remote.resources.cpus),
            "slurm_gpus_per_node": remote.gpus_per_job,
            "name": "streambench",
        }
        if remote.partition:
            params["slurm_partition"] = remote.partition
        params.update({f"slurm_{k}": _value(v) for k, v in remote.extra})
        try:
            self.executor.update_parameters(**params)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"--slurm-arg: submitit refused a parameter ({exc})") from None
        self.queued: list[tuple[str, dict[str, Any]]] = []
        self.pending: dict[Any, tuple[str, float]] = {}

    def nodes(self) -> int:
        return 0  # not known before the jobs run: each row names its node

    def submit(self, key: str, job: dict[str, Any]) -> None:
        self.queued.append((key, job))

    def _submit_array(self) -> None:
        """The queued groups as one job array (``sbatch --array``)."""
        if not self.queued:
            return
        submitted = time.monotonic()
        with self.executor.batch():
            jobs = [self.executor.submit(slurm_task, job) for _key, job in self.queued]
        for (key, _job), job_handle in zip(self.queued, jobs):
            self.pending[job_handle] = (key, submitted)
        self.queued = []

    def finished(self) -> Iterator[tuple[str, GroupOutcome | str, float]]:
        self._submit_array()
        while self.pending:
            done = [j for j in self.pending if j.done()]
            if not done:
                time.sleep(POLL_S)
                continue
            for job in done:
                key, submitted = self.pending.pop(job)
                try:
                    outcome: GroupOutcome | str = job.result()
                except Exception as exc:  # noqa: BLE001 - the job failed: a failed row
                    lines = [x for x in str(exc).strip().splitlines() if x.strip()]
                    outcome = f"Slurm job {job.job_id} failed: " + (
                        lines[-1][:300] if lines else type(exc).__name__
                    )
                yield key, outcome, time.monotonic() - submitted

    def cancel(self) -> int:
        jobs = list(self.pending)
        for job in jobs:
            job.cancel(check=False)
        self.pending.clear()
        return len(jobs) + len(self.queued)

    def close(self) -> None:
        pass


def _value(text: str) -> Any:
    """A ``--slurm-arg`` value as submitit wants it: a whole number as an int, else the text."""
    return int(text) if text.strip().isdigit() else text
