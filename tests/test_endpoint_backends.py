"""Served backends (``streambench endpoint --backend``): the registry for real.

A second backend is installed the way a package installs one: a ``*.dist-info/entry_points.txt``
in the group ``streambench.backends`` on ``PYTHONPATH``, next to the module it names. It speaks
the OpenAI protocol (there is one protocol today) and tags every request with a header, so the
stub server (:mod:`test_endpoint`) shows which backend built each request.

Runtime: ~10 s (2 cores, shared).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_endpoint import StubProcess

from streambench.endpoint import EndpointSpec
from streambench.endpoint.backends import (
    ENTRY_POINT_GROUP,
    BackendError,
    ServedBackend,
    backend_names,
    get_backend,
)
from streambench.endpoint.backends.openai import OpenAIBackend

PLUGIN = '''
from streambench.endpoint.backends.openai import OpenAIBackend


class TaggedBackend(OpenAIBackend):
    """The OpenAI protocol, every request tagged with the backend that built it."""

    name = "thatone"
    protocol = "OpenAI-compatible, tagged"

    def headers(self, spec):
        return {**super().headers(spec), "X-Streambench-Backend": self.name}


class Misnamed(OpenAIBackend):
    name = "someother"
'''


@pytest.fixture(scope="module")
def stub():
    s = StubProcess()
    yield s
    s.close()


@pytest.fixture
def plugin_path(tmp_path: Path) -> Path:
    """A folder with an installed-looking distribution that registers ``thatone`` (and two
    broken entries: a module that does not exist, a backend that calls itself another name)."""
    (tmp_path / "thatone_backend.py").write_text(PLUGIN)
    info = tmp_path / "thatone_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: thatone-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\n"
        "thatone = thatone_backend:TaggedBackend\n"
        "broken = no_such_module_here:Backend\n"
        "misnamed = thatone_backend:Misnamed\n"
        "openai = thatone_backend:TaggedBackend\n"  # never replaces the built-in
    )
    return tmp_path


def _endpoint(args: list[str], plugin: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if plugin is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(plugin), env.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", "streambench", "endpoint", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_builtin_openai_is_the_default_and_not_written():
    backend = get_backend("openai")
    assert isinstance(backend, OpenAIBackend) and isinstance(backend, ServedBackend)
    assert backend.clock == "client" and get_backend("openai") is backend
    spec = EndpointSpec(url="http://127.0.0.1:9/v1", model="m").validate()
    assert spec.backend == "openai" and spec.served() is backend
    assert "backend" not in spec.to_dict()  # files from before backends resume
    assert spec.to_dict()["endpoint"] == "http://127.0.0.1:9/v1/completions"
    body = backend.body(spec, "hi", 4, 0)
    assert body["max_tokens"] == 4 and body["ignore_eos"] is True and body["prompt"] == "hi"
    assert "min_tokens" not in backend.body(spec, "hi", 4, 1)


def test_entry_point_backend_runs_against_the_stub(stub, plugin_path, tmp_path):
    """``--backend thatone`` from an entry point: every request (probes, warm-up, measured, and
    those of a second client process) built by it; the results say which backend measured."""
    out = tmp_path / "thatone.json"
    stub.reset()
    args = [stub.url("ttft=0.005;gap=0.002"), "--model", "stub", "--in-out", "4-3"]
    args += ["--requests", "4", "--concurrency", "2", "--workers", "2", "--backend", "thatone"]
    proc = _endpoint([*args, "-o", str(out)], plugin_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    seen = [s for s in stub.seen if s["method"] == "POST"]
    assert len(seen) >= 1 + 1 + 4  # a probe, the warm-up, the measured requests
    assert all(s["headers"].get("x-streambench-backend") == "thatone" for s in seen)
    doc = json.loads(out.read_text())
    assert doc["settings"]["backend"] == {
        "name": "thatone",
        "protocol": "OpenAI-compatible, tagged",
        "clock": "client",
    }
    entry = doc["configurations"][0]
    assert entry["status"] == "ok" and entry["config"]["backend"] == "thatone"
    assert list(entry["config"])[-2:] == ["transport", "backend"]  # appended
    assert "through --backend thatone against http://127.0.0.1:" in " ".join(proc.stdout.split())
    # what another backend measured is not resumed under the default one
    proc = _endpoint([*args, "-o", str(out), "--resume", "--backend", "openai"], plugin_path)
    assert proc.returncode == 2 and "written with other settings (backend:" in proc.stderr


def test_default_backend_sends_no_tag(stub, plugin_path):
    """With the plugin installed, the default (and ``openai`` itself: a plugin cannot replace a
    built-in) is still the built-in client."""
    stub.reset()
    args = [stub.url("ttft=0.005;gap=0.002"), "--model", "stub", "--in-out", "4-2"]
    proc = _endpoint([*args, "--requests", "1", "--backend", "openai"], plugin_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    seen = [s for s in stub.seen if s["method"] == "POST"]
    assert seen and not any("x-streambench-backend" in s["headers"] for s in seen)


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("nosuch", "--backend 'nosuch': no served backend of that name (known: openai, broken, "
         "misnamed, thatone)"),
        ("broken", "--backend broken: its entry point 'no_such_module_here:Backend' could not "
         "be loaded (ModuleNotFoundError"),
        ("misnamed", "--backend misnamed: the backend registered as 'misnamed' calls itself "
         "'someother'"),
    ],
)  # fmt: skip
def test_bad_backend_is_one_line_exit_2(plugin_path, name, needle):
    proc = _endpoint(["http://127.0.0.1:9/v1", "--model", "m", "--backend", name], plugin_path)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not proc.stdout


def test_unknown_backend_without_plugins():
    proc = _endpoint(["http://127.0.0.1:9/v1", "--model", "m", "--backend", "nosuch"])
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "streambench: error: --backend 'nosuch': no served backend of that name (known: "
        "openai); install the package that provides it"
    )
    with pytest.raises(BackendError, match="--backend 'nosuch'"):
        get_backend("nosuch")
    assert backend_names()[0] == "openai"
