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
    "streambench.spec.presets",
    "streambench.errors",
    "streambench.spec.config",
    "streambench.spec.keys",
    "streambench.runners.local.isolation",
    "streambench.ranks",
    "streambench.units",
    "streambench.numtext",
    "streambench.reading",
    "streambench.engines.transformers.placement",
    "streambench.workloads.files",
    "streambench.workloads.spec",
    "streambench.workloads.outputs",
    "streambench.runners.local.workload_prompts",
    "streambench.terminal",
    "streambench.results.report.html",
    "streambench.runners.local.interference",
    "streambench.engines.base",
    "streambench.engines.openvino.engines",
    "streambench.engines.llamacpp.convert",
    "streambench.engines.llamacpp.model",
    "streambench.engines.scoring",
    "streambench.engines.vllm.model",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no example"
    assert result.failed == 0
