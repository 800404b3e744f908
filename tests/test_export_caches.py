"""The engines' export caches are inputs of every run (issue 24): no output may be written into
the OpenVINO, llama.cpp or ONNX Runtime GenAI cache (the defaults, or ``--export-dir``), and a
cache entry is used only once complete (built in a temporary place, renamed when done).

The conversions themselves are the engines' tests (``nox -s llamacpp`` / ``ortgenai`` /
``openvino``); here the step that writes the entry is made to fail half-way, in process, so that
the cache's own code (the real ``ensure_*`` functions) must leave nothing a later run could use.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streambench import tiny

ROOT = Path(__file__).resolve().parent.parent
CACHES = ("openvino", "llama.cpp", "onnxruntime-genai")


def run(home: Path, *args: object) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(home), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "streambench", "run", *map(str, args)],
        capture_output=True, text=True, env=env, cwd=home, timeout=300,
    )  # fmt: skip


@pytest.mark.parametrize("engine_cache", CACHES)
def test_output_inside_a_default_export_cache_is_refused(tmp_path, engine_cache):
    cache = tmp_path / ".cache" / "streambench" / engine_cache
    cache.mkdir(parents=True)
    for option, target in (("-o", cache / "r.json"), ("--profile", cache)):
        proc = run(tmp_path, "--in-out", "4-2", "--trials", "1", option, target)
        assert proc.returncode == 2, proc.stderr
        line = proc.stderr.strip()
        assert len(line.splitlines()) == 1 and "export cache" in line, line
        assert str(cache) in line, line
    assert sorted(os.listdir(cache)) == []


def test_output_inside_the_given_export_dir_is_refused(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    proc = run(tmp_path, "--export-dir", cache, "--in-out", "4-2", "-o", cache / "gguf.csv")
    assert proc.returncode == 2 and "export cache" in proc.stderr, proc.stderr
    assert not (cache / "gguf.csv").exists()


class Crash(RuntimeError):
    """The conversion dying half-way (an out-of-memory kill, a ^C)."""


def _settings(spec):
    from streambench.spec.run import SweepSettings

    return SweepSettings(models=[spec], in_out=[(4, 2)], batch_sizes=[1])


@pytest.fixture
def spec(tmp_path):
    from streambench.spec.models import resolve_model_spec

    return resolve_model_spec(str(tiny.save_tiny_model(tmp_path / "m")), False, None)


def _left(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_a_gguf_conversion_that_dies_leaves_no_entry(tmp_path, spec, monkeypatch):
    from streambench.engines.llamacpp import convert

    def half(source, target, fmt, trust_remote_code):
        Path(target).write_bytes(b"GGUF" + b"\0" * 64)  # a header and nothing else
        raise Crash

    monkeypatch.setattr(convert, "convert_directory", half)
    root = tmp_path / "cache"
    with pytest.raises(Crash):
        convert.ensure_gguf(spec, _settings(spec), "f16", str(root))
    assert _left(root) == []  # neither the entry nor the temporary directory

    def whole(source, target, fmt, trust_remote_code):
        Path(target).write_bytes(b"GGUF complete")

    monkeypatch.setattr(convert, "convert_directory", whole)
    made = convert.ensure_gguf(spec, _settings(spec), "f16", str(root))
    assert made.convert_time_s is not None and made.path.read_bytes() == b"GGUF complete"
    assert _left(root) == [made.path.name]
    again = convert.ensure_gguf(spec, _settings(spec), "f16", str(root))
    assert again.cached and again.path == made.path


def test_an_ortgenai_build_that_dies_leaves_no_entry(tmp_path, spec, monkeypatch):
    from streambench.engines.ortgenai import export

    def half(spec, settings, prec, provider, work):
        (work / "model").mkdir()
        (work / "model" / "genai_config.json").write_text("{")  # what a dying build leaves
        raise Crash

    monkeypatch.setattr(export, "_build", half)
    root = tmp_path / "cache"
    with pytest.raises(Crash):
        export.ensure_genai_dir(spec, _settings(spec), "int4", "cpu", str(root))
    assert _left(root) == []

    def whole(spec, settings, prec, provider, work):
        (work / "model").mkdir()
        (work / "model" / "genai_config.json").write_text('{"model": {}}')
        (work / "model" / "model.onnx").write_bytes(b"onnx")

    monkeypatch.setattr(export, "_build", whole)
    made = export.ensure_genai_dir(spec, _settings(spec), "int4", "cpu", str(root))
    assert made.export_time_s is not None and export.is_genai_directory(str(made.path))
    assert _left(root) == [made.path.name]


def test_an_openvino_export_that_dies_leaves_no_entry(tmp_path, spec, monkeypatch):
    from streambench.engines import export

    def half(spec, settings, fmt, work):
        (work / "openvino_model.xml").write_text("<net")
        raise Crash

    monkeypatch.setattr(export, "_export", half)
    root = tmp_path / "cache"
    with pytest.raises(Crash):
        export.ensure_ir(spec, _settings(spec), "fp32", str(root))
    assert _left(root) == []
