"""The runnable examples in the modules' docstrings stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "streambench.stats",
    "streambench.intervals",
    "streambench.results.verdicts",
    "streambench.devices",
    "streambench.tiny",
    "streambench.streamer",
    "streambench.endpoint",
    "streambench.endpoint.scrub",
    "streambench.presets",
    "streambench.errors",
    "streambench.config",
    "streambench.keys",
    "streambench.isolation",
    "streambench.ranks",
    "streambench.units",
    "streambench.numtext",
    "streambench.reading",
    "streambench.loading.placement",
    "streambench.workloads.files",
    "streambench.workloads.spec",
    "streambench.workloads.outputs",
    "streambench.workload_run",
    "streambench.terminal",
    "streambench.results.html",
    "streambench.interference",
    "streambench.engines.base",
    "streambench.engines.openvino_engines",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no example"
    assert result.failed == 0
