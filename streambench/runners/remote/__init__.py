"""``streambench run --ray ADDRESS`` and ``--slurm``: a sweep's configurations spread over the
nodes of a Ray cluster or the jobs of a Slurm array, merged into one results document.

Each configuration (``--isolate config``) or each group of configurations sharing one loaded model
(``--isolate model``) is one Ray task or one Slurm job. On its node the task starts the very worker
process that ``--isolate`` starts on one machine (``python -m streambench.runners.local.worker``,
:mod:`streambench.runners.local.isolation`) and reads its events, so a row measured on a cluster is
measured by the same code, in a fresh process, as a row measured locally. The task returns a
:class:`~streambench.runners.remote.task.GroupOutcome` (the worker's results/2 entries, the node
it ran on and that node's environment); the driver (:class:`~streambench.runners.remote.sweep.
ClusterDriver`) merges them as they finish. Ray and submitit are imported only here, and only
when asked for.
"""
