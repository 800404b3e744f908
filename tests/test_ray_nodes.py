"""``streambench run --ray`` on a cluster of two nodes of different resources
(``ray.cluster_utils.Cluster``: one node of 1 CPU, one of 2, on this host): a configuration that
asks for 2 CPUs is placed on the node that has them, every row records its node, and rows of
unlike nodes are said to be so in the summary and in ``compare``. Skipped when ray is not
installed (``nox -s ray``). Runtime: ~1.5 min on 2 busy cores."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("ray")

from test_ray import ENV, sb


@pytest.fixture(scope="module")
def two_nodes():
    import os

    from ray.cluster_utils import Cluster

    saved = dict(os.environ)
    os.environ.update(ENV)  # the nodes' workers import this tree's streambench
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    os.environ.clear()
    os.environ.update(saved)
    yield cluster.address
    cluster.shutdown()


SWEEP = ["--in-out", "8-4", "--warmup", "0", "--trials", "2"]


def test_placement_by_resources_and_a_node_per_row(two_nodes, tmp_path):
    # 2 CPUs per configuration: only the second node can hold them
    big = sb("run", *SWEEP, "--batch-size", "1,2", "--ray", two_nodes, "--ray-cpus", "2",
             "-o", "big.json", cwd=tmp_path)  # fmt: skip
    assert big.returncode == 0, big.stderr
    rows = json.loads((tmp_path / "big.json").read_text())["configurations"]
    assert [r["node"]["resources"]["CPU"] for r in rows] == [2.0, 2.0]
    assert all(r["node"]["environment"]["omp_num_threads"] == "2" for r in rows)
    assert len({r["node"]["node_id"] for r in rows}) == 1

    # 1 CPU each, 4 submitted at once: 3 run at a time, so both nodes take some
    spread = sb("run", *SWEEP, "--batch-size", "1,2,3,4", "--ray", two_nodes, "-o", "s.json",
                cwd=tmp_path)  # fmt: skip
    assert spread.returncode == 0, spread.stderr
    rows = json.loads((tmp_path / "s.json").read_text())["configurations"]
    assert [r["settings"]["batch_size"] for r in rows] == [1, 2, 3, 4]  # the sweep's order
    assert all(r["status"] == "ok" for r in rows)
    assert {r["node"]["resources"]["CPU"] for r in rows} == {1.0, 2.0}, rows
    assert "rows measured on 2 unlike nodes" in spread.stderr
    assert "resources.CPU" in spread.stderr  # what differs between them

    same = sb("compare", "big.json", "big.json", cwd=tmp_path)
    assert "unlike nodes" not in same.stderr  # one node
    mixed = sb("compare", "s.json", "s.json", cwd=tmp_path)
    assert "OLD: rows measured on 2 unlike nodes" in mixed.stderr
    assert "NEW: rows measured on 2 unlike nodes" in mixed.stderr
