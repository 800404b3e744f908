"""The runnable examples in the modules' docstrings stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "streambench.stats",
    "streambench.intervals",
    "streambench.devices",
    "streambench.tiny",
    "streambench.streamer",
    "streambench.endpoint",
    "streambench.endpoint.scrub",
    "streambench.presets",
    "streambench.errors",
    "streambench.config",
    "streambench.isolation",
    "streambench.ranks",
    "streambench.units",
    "streambench.loading.placement",
    "streambench.workloads.files",
    "streambench.workloads.spec",
    "streambench.workloads.outputs",
    "streambench.workload_run",
    "streambench.interference",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no example"
    assert result.failed == 0
