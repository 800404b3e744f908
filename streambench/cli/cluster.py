"""``streambench run --ray ADDRESS`` / ``--slurm``: the sweep's configurations as tasks of a
cluster, merged into one results document (:mod:`streambench.runners.remote`)."""

from __future__ import annotations

import argparse
from typing import Any

from .. import terminal

__all__ = ["run_on_cluster"]


def _backend(remote: Any, args: argparse.Namespace) -> Any:
    if remote.scheduler == "ray":
        from ..runners.remote.ray_backend import RayBackend

        return RayBackend(remote.address, remote.resources, bool(args.debug))
    from ..runners.remote.slurm_backend import SlurmBackend

    return SlurmBackend(remote)


def run_on_cluster(
    args: argparse.Namespace,
    speaker: Any,
    settings: Any,
    device: Any,
    outputs: list[str],
    plot_path: str | None,
    resumed: dict[str, Any],
    isolate: str,
    remote: Any,
) -> int:
    """The sweep on the cluster; returns the exit code (the driver's policy)."""
    from ..results.environment import environment
    from ..results.schema import new_document
    from ..runners.local.plan import RankContext
    from ..runners.local.runner import LocalRunner
    from ..runners.local.trials import trials_text
    from ..runners.remote.sweep import ClusterDriver, RemoteRunner
    from ..runners.run_io import opening_line

    out = terminal.console(highlight=False)
    err = terminal.console(stderr=True)
    rank = RankContext.from_env(device, tp=settings.tp)
    local = LocalRunner(settings, device, speaker, out, rank, args.debug, isolate=isolate)
    cluster = {"scheduler": remote.scheduler, "address": remote.address}
    doc = new_document(
        "run", environment(device, {"cluster": cluster}), {**settings.to_dict(), "isolate": isolate}
    )
    driver = ClusterDriver(doc, outputs, speaker, out, err, plot_path, True, resumed)
    backend = _backend(remote, args)  # UsageError (exit 2) when it cannot be reached
    runner = RemoteRunner(local, backend)
    cluster["nodes"] = backend.nodes()
    where = f"on the {remote.scheduler} cluster at {remote.address or 'Slurm'}"
    if remote.scheduler == "ray":
        where += f" ({cluster['nodes']} node(s))"
    where = terminal.inert_markup(where)  # the address is the user's text
    out.print(
        opening_line("run", len(runner.plan()), settings.warmup, trials_text(settings), where)
    )
    return driver.run(runner)
