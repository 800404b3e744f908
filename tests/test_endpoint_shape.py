"""The served side's shape (issue #23): ``streambench.endpoint`` reaches the shared core, never
the local runner, and its command line only parses and runs (the runner is its own module)."""

from __future__ import annotations

import ast

from test_architecture import ROOT, import_graph

#: the local-run side: what runs a model here (a served model's clock is the client's)
LOCAL_SIDE = (
    "cli",
    "local_run",
    "local_runner",
    "run_spec",
    "workload_run",
    "trial_loop",
    "variant_load",
    "worker",
    "generation",
    "streamer",
    "wrapper",
    "loading",
    "engines",
)


def test_endpoint_does_not_reach_into_the_local_runner():
    graph = import_graph()
    reaches = {
        f"{m} -> {d}"
        for m, deps in graph.items()
        if m.startswith("streambench.endpoint")
        for d in deps
        if any(d == f"streambench.{x}" or d.startswith(f"streambench.{x}.") for x in LOCAL_SIDE)
    }
    assert not reaches, sorted(reaches)


def test_endpoint_cli_only_parses_and_runs():
    tree = ast.parse((ROOT / "endpoint" / "cli.py").read_text())
    classes = [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
    assert not classes, f"endpoint/cli.py defines {classes}: the runner is endpoint/served_sweep.py"
    long = [
        f"{n.name}: {n.end_lineno - n.lineno + 1} lines"
        for path in (ROOT / "endpoint").rglob("*.py")
        for n in ast.walk(ast.parse(path.read_text()))
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
        and path.name in ("cli.py", "loadcli.py", "served_sweep.py")
        and n.end_lineno - n.lineno + 1 > 80
    ]
    assert not long, long
