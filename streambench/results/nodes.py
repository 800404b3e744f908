"""Which machines a document's rows were measured on (``streambench run --ray``/``--slurm``
record each row's ``node``), and whether they are alike: rows of unlike nodes (another device,
CPU, library version, or other resources) differ by the machine as well as by their settings,
which a reader of the summary or of ``compare`` must be told.

>>> row = lambda name, cpus: {"node": {"name": name, "environment": {"cpu_count": cpus}}}
>>> unlike_nodes([row("a", 8), row("b", 8)]) is None
True
>>> unlike_nodes([row("a", 8), row("b", 16)])[:64]
'rows measured on 2 unlike nodes (a: cpu_count 8; b: cpu_count 16)'
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ..terminal import inert

__all__ = ["NODE_KEYS", "node_of", "unlike_nodes"]

#: what makes two nodes unlike: the environment keys that timings depend on
NODE_KEYS = (
    "device_name",
    "cuda_driver",
    "cpu_model",
    "cpu_count",
    "torch",
    "transformers",
    "python",
    "streambench",
)


def node_of(entry: Any) -> dict[str, Any] | None:
    """A row's ``node`` object (``None`` for a row measured without a cluster, or a file's
    value that is not an object)."""
    node = entry.get("node") if isinstance(entry, dict) else getattr(entry, "extra", {}).get("node")
    return node if isinstance(node, dict) else None


def _facts(node: dict[str, Any]) -> dict[str, str]:
    env = node.get("environment") if isinstance(node.get("environment"), dict) else {}
    out = {k: json.dumps(env.get(k), default=str) for k in NODE_KEYS if k in env}
    resources = node.get("resources")
    if isinstance(resources, dict):  # what the scheduler gave the node (Ray: CPU, GPU, memory)
        out.update({f"resources.{k}": json.dumps(v) for k, v in sorted(resources.items())})
    return out


def unlike_nodes(entries: Iterable[Any]) -> str | None:
    """One line naming the nodes and what differs between them when the rows ran on nodes that
    are not alike (:data:`NODE_KEYS` and the scheduler's resources), else ``None``."""
    seen: dict[str, dict[str, str]] = {}
    for entry in entries:
        node = node_of(entry)
        if node is not None:
            name = str(node.get("node_id") or node.get("name") or "?")
            seen.setdefault(name, _facts(node))
    kinds = {json.dumps(f, sort_keys=True) for f in seen.values()}
    if len(kinds) < 2:
        return None
    keys = sorted({k for f in seen.values() for k in f})
    differ = [k for k in keys if len({f.get(k) for f in seen.values()}) > 1]
    parts = []
    for name, facts in list(seen.items())[:4]:
        shown = ", ".join(f"{k} {facts.get(k, '-').strip(chr(34))}" for k in differ[:3])
        parts.append(f"{inert(name[:16])}: {inert(shown)}")
    more = f"; and {len(seen) - 4} more" if len(seen) > 4 else ""
    return (
        f"rows measured on {len(seen)} unlike nodes ({'; '.join(parts)}{more}): a difference "
        "between rows may come from the machines"
    )
