"""The engine contract (``streambench.engines``): the README's toy engine runs end to end, found
through ``register()`` and through a real entry point; what an engine cannot do is refused in one
line, exit 2, before anything loads."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHORT = ("--in-out", "8-4", "--trials", "1", "--warmup", "0")
#: runs the CLI in a process where the README's engine was registered by code
REGISTERED = """
import sys
import toy_engine
from streambench.engines import register
register(toy_engine.ToyEngine)
from streambench.cli.run import main
raise SystemExit(main(sys.argv[1:]))
"""


def readme_engine() -> str:
    """The Python block of the README's "Adding an engine" section."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Adding an engine", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found, "the README's 'Adding an engine' has no python block"
    return found.group(1)


def _env(*paths: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*map(str, paths), env.get("PYTHONPATH", "")])
    return env


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600
    )


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    """A directory holding the README's engine as ``toy_engine.py`` and its distribution's
    metadata (``toyengine-0.0.dist-info`` with the entry point): an installed plug-in."""
    pkg = tmp_path / "site"
    pkg.mkdir()
    (pkg / "toy_engine.py").write_text(readme_engine())
    info = pkg / "toyengine-0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toyengine\nVersion: 0.0\n")
    points = "toy = toy_engine:ToyEngine\nbroken = no_such_module:Engine\n"  # and a broken one
    (info / "entry_points.txt").write_text(f"[streambench.engines]\n{points}")
    return pkg


def _timed(path: Path) -> list[dict]:
    entries = json.loads(path.read_text())["configurations"]
    for entry in entries:
        if entry["status"] == "ok":
            trial = entry["trials"][0]
            assert entry["actual_output_tokens"] == 4
            assert len(trial["token_latencies_s"]) == 4, trial  # every token timed
            assert entry["engine"] == {"name": "toy"}
            assert "engine=toy" in entry["label"]
    return entries


def test_the_readme_engine_registered_by_code_runs_end_to_end(tmp_path):
    code = tmp_path / "code"  # the module alone, no dist-info: only register() knows it
    code.mkdir()
    (code / "toy_engine.py").write_text(readme_engine())
    (tmp_path / "registered.py").write_text(REGISTERED)
    args = ["registered.py", "run", "--engine", "toy", *SHORT, "-o", "out.json"]
    proc = _run(args, tmp_path, _env(code))
    assert proc.returncode == 0, proc.stderr
    [entry] = _timed(tmp_path / "out.json")
    assert entry["status"] == "ok"


def test_an_installed_engine_is_found_through_its_entry_point(toy, tmp_path):
    """Two batch sizes: two configurations, each in its own worker (``--isolate config``), which
    finds the engine too; batch 2 fails with the engine's reason, batch 1 is measured."""
    args = ["-m", "streambench", "run", "--engine", "toy", *SHORT, "--batch-size", "2,1"]
    proc = _run([*args, "-o", "out.json"], tmp_path, _env(toy))
    assert proc.returncode == 1, proc.stderr  # one configuration failed, the other measured
    two, one = _timed(tmp_path / "out.json")
    assert two["status"] == "failed" and "--engine toy runs batch 1 only" in two["error"]
    assert one["status"] == "ok"


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--engine", "onnx"], "onnx"),
        (["--engine", "broken"], "its entry point no_such_module:Engine does not load"),
        (
            ["--engine", "toy", "--compile"],
            "--compile is a transformers setting, which --engine toy",
        ),
        (["--engine", "toy", "--batch-size", "2"], "--engine toy runs batch 1 only"),
        (["--engine", "toy", "--num-beams", "2"], "--num-beams 1"),
        (["--engine", "toy", "--low-bit", "int8"], "--engine toy takes no --low-bit"),
    ],
)
def test_what_an_engine_cannot_do_is_refused_in_one_line(toy, tmp_path, extra, says):
    proc = _run(["-m", "streambench", "run", *extra, *SHORT, "-o", "out.json"], tmp_path, _env(toy))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], proc.stderr
    if extra[1] == "onnx":  # the unknown name: the registered ones listed, the plug-in too
        listed = "transformers, openvino, openvino-genai, vllm, llama.cpp, onnxruntime-genai"
        assert f"{listed}, broken, toy" in lines[0]
    assert not (tmp_path / "out.json").exists()


def test_the_registry_in_process():
    from streambench.engines import Engine, engine_names, get_engine, register
    from streambench.errors import UsageError

    class Mine(Engine):
        name = "mine-test"

    assert register(Mine) is Mine and "mine-test" in engine_names()
    assert get_engine("mine-test").configuration_problem({}, 4) is None  # batches by default
    assert get_engine(None).name == "transformers"
    with pytest.raises(UsageError, match="no such engine"):
        get_engine("nope")
    with pytest.raises(TypeError):
        register(dict)  # type: ignore[arg-type]


def test_import_streambench_imports_no_engine():
    code = (
        "import sys, streambench, streambench.engines; "
        "print(sorted(m for m in sys.modules if m.startswith(('openvino', 'optimum', "
        "'streambench.engines.'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "['streambench.engines.base']"
