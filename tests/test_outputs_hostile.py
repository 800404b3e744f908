"""Results files against data loss (issue 21, items 5-8, 13, 15, 20): an output may be none of the
run's inputs; ``--resume`` keeps every row and refuses another machine; a full disk is a failure
that keeps the old file; two processes never write one file; the profiler's trace and the plot are
written like the results files. Real subprocesses on the embedded tiny model, a real tmpfs for
the full disk (root only, else skipped; the in-process ENOSPC tests run everywhere), the stub
server of ``test_endpoint_load.py`` for ``endpoint``. Runtime: ~2 min on 2 shared cores."""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_endpoint_load import stub, url  # noqa: F401 - stub is a fixture

from streambench.errors import UsageError
from streambench.tiny import save_tiny_model

ROOT = Path(__file__).resolve().parent.parent
ENV = {
    **os.environ,
    "PYTHONWARNINGS": "ignore",
    "HF_HUB_OFFLINE": "1",
    "COLUMNS": "120",
    "PYTHONPATH": str(ROOT),
}
FAST = ["--in-out", "4-2", "--warmup", "0", "--trials", "1", "--isolate", "none"]
NOWHERE = "http://127.0.0.1:9/v1"  # nothing listens: the checks must refuse before sending


def sb(*args: str, cwd: Path | None = None, timeout: float = 240, **kw):
    return subprocess.run(
        [sys.executable, "-m", "streambench", *args],
        capture_output=True, text=True, env=ENV, cwd=cwd, timeout=timeout, **kw,
    )  # fmt: skip


def one_error_line(proc: subprocess.CompletedProcess, code: int = 2) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("streambench: error: ") and "Traceback" not in proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "tiny"
    save_tiny_model(path, "llama", max_position_embeddings=64)
    return path


@pytest.fixture
def tmpfs(tmp_path):
    """A real 64 KiB tmpfs (needs root and mount)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                          capture_output=True)  # fmt: skip
    if made.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root); see the ENOSPC tests in-process")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(directory: Path, leave: int = 0) -> None:
    """Fill the file system of ``directory`` to the last byte (then free ``leave`` bytes)."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        if leave:
            f.truncate(max(0, f.tell() - leave))


# -- 5. no output is an input --------------------------------------------------------------------
def test_output_naming_the_prompts_file_is_refused(tmp_path):
    prompts = tmp_path / "p.csv"
    prompts.write_text("prompt\nhello world\nsecond prompt\n")
    before = prompts.read_bytes()
    (tmp_path / "link.csv").symlink_to(prompts)
    os.link(prompts, tmp_path / "hard.csv")
    base = ["run", "--prompts", "p.csv", "--output-len", "4", "--warmup", "0", "--trials", "1"]
    for target in ("p.csv", "link.csv", "hard.csv", "./p.csv"):
        line = one_error_line(sb(*base, "-o", target, cwd=tmp_path))
        assert f"--output {target}" in line and "prompts file" in line, line
    assert prompts.read_bytes() == before


def test_output_naming_the_config_file_is_refused(tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text('{"in_out": "4-2"}\n')
    before = cfg.read_bytes()
    line = one_error_line(sb("run", "--config", "cfg.json", "-o", "cfg.json", cwd=tmp_path))
    assert "--output cfg.json" in line and "config file" in line
    assert cfg.read_bytes() == before


def test_output_inside_the_assistant_model_is_refused(tmp_path, model_dir):
    before = (model_dir / "config.json").read_bytes()
    for option, target in (("-o", "config.json"), ("-o", "sub/r.csv"), ("--profile", "prof")):
        proc = sb("run", *FAST, "--assistant-model", str(model_dir),
                  option, str(model_dir / target), cwd=tmp_path)  # fmt: skip
        line = one_error_line(proc)
        assert "assistant model" in line and str(model_dir) in line, line
    assert (model_dir / "config.json").read_bytes() == before
    assert not (model_dir / "sub").exists() and not (model_dir / "prof").exists()


def test_output_inside_the_export_cache_is_refused(tmp_path):
    cache = tmp_path / "ir-cache"
    cache.mkdir()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"export_dir: {cache}\n")
    line = one_error_line(sb("run", *FAST, "--config", str(cfg), "-o", str(cache / "r.json")))
    assert "export cache" in line


def test_endpoint_output_naming_its_inputs_is_refused(tmp_path, model_dir):
    prompts = tmp_path / "x.jsonl"
    prompts.write_text('{"prompt": "hello"}\n')
    before = prompts.read_bytes()
    common = [NOWHERE, "--model", "m", "--requests", "1", "--warmup", "0"]
    line = one_error_line(sb("endpoint", *common, "--prompts", "x.jsonl", "-o", "x.jsonl",
                             cwd=tmp_path))  # fmt: skip
    assert "--output x.jsonl" in line and "prompts file" in line
    assert prompts.read_bytes() == before


def test_run_inputs_registry_in_process(tmp_path):
    from streambench.results.outputs import RunInputs, check_output_targets

    data = tmp_path / "data.txt"
    data.write_text("x")
    os.link(data, tmp_path / "hard.json")
    inputs = RunInputs([("prompts file", str(data)), ("tokenizer", None), ("model", "org/hub-id")])
    assert inputs.holding(tmp_path / "hard.json") == ("prompts file", str(data))
    assert inputs.holding(tmp_path / "other.json") is None  # a hub id is no local input
    with pytest.raises(UsageError, match="is the prompts file"):
        check_output_targets([str(tmp_path / "hard.json")], "-o", None, inputs)
    check_output_targets([str(tmp_path / "other.json")], "-o", None, inputs)


# -- 6 / 15. --resume keeps every row, on one machine only ---------------------------------------
def _ids(path: Path) -> list[str]:
    return [e["id"] for e in json.loads(path.read_text())["configurations"]]


def test_resume_with_a_narrower_sweep_keeps_every_row(tmp_path):
    base = ["run", "--warmup", "0", "--trials", "1", "--isolate", "none", "-o", "r.json"]
    assert sb(*base, "--in-out", "4-2,8-2", cwd=tmp_path).returncode == 0
    old = json.loads((tmp_path / "r.json").read_text())["configurations"]
    proc = sb(*base, "--in-out", "8-2,12-2", "--resume", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "kept 1 configuration(s) of the resumed file that this sweep does not measure" in (
        proc.stderr
    )
    assert proc.stderr.count("kept from the resumed file") == 1
    new = json.loads((tmp_path / "r.json").read_text())["configurations"]
    assert len(new) == 3
    assert new[0] == old[0] and new[1] == old[1]  # 4-2 carried, 8-2 kept: not measured again
    assert new[2]["settings"]["input_tokens"] == 12 and new[2]["status"] == "ok"
    # and a sweep that plans none of them keeps them all
    proc = sb(*base, "--in-out", "16-2", "--resume", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads((tmp_path / "r.json").read_text())["configurations"]
    assert [e["settings"]["input_tokens"] for e in rows] == [4, 8, 12, 16]


def test_resume_refuses_a_file_from_another_environment(tmp_path):
    out = tmp_path / "r.json"
    assert sb("run", *FAST, "-o", "r.json", cwd=tmp_path).returncode == 0
    doc = json.loads(out.read_text())
    doc["environment"]["torch"] = "0.0.1-elsewhere"
    doc["environment"]["cpu_model"] = "Another CPU"
    out.write_text(json.dumps(doc))
    before = out.read_bytes()
    line = one_error_line(sb("run", *FAST, "--in-out", "4-2,8-2", "-o", "r.json", "--resume",
                             cwd=tmp_path))  # fmt: skip
    assert "--resume" in line and "another environment" in line
    assert "torch: '0.0.1-elsewhere' there" in line and "cpu_model" in line
    assert out.read_bytes() == before


def test_endpoint_resume_with_a_narrower_sweep_keeps_every_row(stub, tmp_path):  # noqa: F811
    out = tmp_path / "e.json"
    common = [url(stub, "service=0.002"), "--model", "m", "--in-out", "4-2", "--requests", "2",
              "--warmup", "0", "--force-output", "off", "-o", str(out)]  # fmt: skip
    assert sb("endpoint", *common, "--concurrency", "1,2").returncode == 0
    old = json.loads(out.read_text())["configurations"]
    proc = sb("endpoint", *common, "--concurrency", "2", "--resume")
    assert proc.returncode == 0, proc.stderr
    assert "does not measure" in proc.stderr
    assert json.loads(out.read_text())["configurations"] == [old[0], old[1]]
    doc = json.loads(out.read_text())
    doc["environment"]["python"] = "2.7.18"
    out.write_text(json.dumps(doc))
    line = one_error_line(sb("endpoint", *common, "--concurrency", "2", "--resume"))
    assert "another environment" in line and "python" in line


# -- 7 / 13. a full disk is a failure -------------------------------------------------------------
def test_full_disk_run_exits_1_keeps_the_old_file_and_says_where(tmp_path, tmpfs):
    old = tmpfs / "r.json"
    old.write_text('{"old": true}')
    fill(tmpfs)
    proc = sb("run", *FAST, "-o", str(old), "-o", str(tmpfs / "r.csv"), cwd=tmp_path)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "the disk is full" in proc.stderr and str(tmpfs) in proc.stderr
    assert f"--output {old}" in proc.stderr
    assert "results written" not in proc.stdout
    assert old.read_text() == '{"old": true}'
    assert sorted(os.listdir(tmpfs)) == ["filler", "r.json"]  # no temporary file, no lock left


def test_full_disk_endpoint_exits_1_and_keeps_the_old_file(stub, tmp_path, tmpfs):  # noqa: F811
    old = tmpfs / "e.json"
    old.write_text('{"old": true}')
    fill(tmpfs)
    proc = sb("endpoint", url(stub, "service=0.002"), "--model", "m", "--in-out", "4-2",
              "--requests", "2", "--warmup", "0", "--force-output", "off",
              "-o", str(old))  # fmt: skip
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "the disk is full" in proc.stderr and str(old) in proc.stderr
    assert old.read_text() == '{"old": true}'
    assert sorted(os.listdir(tmpfs)) == ["e.json", "filler"]


def test_full_disk_plot_exits_1(tmp_path, tmpfs):
    fill(tmpfs, leave=8192)  # the results fit elsewhere; a PNG of ~100 kB does not fit here
    proc = sb("run", *FAST, "-o", "r.json", "--plot", str(tmpfs / "p.png"), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "--plot" in proc.stderr and "the disk is full" in proc.stderr
    assert sorted(os.listdir(tmpfs)) == ["filler"]
    assert json.loads((tmp_path / "r.json").read_text())["configurations"][0]["status"] == "ok"


def test_full_disk_profile_records_no_trace_and_exits_1(tmp_path, tmpfs):
    prof = tmpfs / "prof"
    prof.mkdir()
    fill(tmpfs, leave=8192)  # a trace of the tiny model is far larger
    proc = sb("run", *FAST, "-o", "r.json", "--profile", str(prof), cwd=tmp_path)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    entry = json.loads((tmp_path / "r.json").read_text())["configurations"][0]
    assert entry["status"] == "ok" and entry["trials"]  # the trials stand
    assert entry["profile"]["trace"] is None
    assert "the disk is full" in entry["profile"]["error"]
    assert os.listdir(prof) == []  # no truncated .tmp, no trace


def test_full_disk_plot_and_compare_commands_exit_1(tmpfs, results):
    old = tmpfs / "p.png"
    old.write_bytes(b"old")
    fill(tmpfs)
    line = one_error_line(sb("plot", str(results), "-o", str(old)), code=1)
    assert f"cannot write -o {old}: the disk is full" in line
    line = one_error_line(sb("compare", str(results), str(results), "-o", str(tmpfs / "d.md")), 1)
    assert "the disk is full" in line and str(tmpfs) in line
    assert old.read_bytes() == b"old" and sorted(os.listdir(tmpfs)) == ["filler", "p.png"]


def test_enospc_in_the_writer_keeps_the_old_file(tmp_path):
    """The lowest write function failing with ENOSPC (where no tmpfs can be mounted)."""
    from streambench.results.outputs import atomic_write, describe_write_error

    target = tmp_path / "r.json"
    target.write_text("old")

    def full(f):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OSError) as caught:
        atomic_write(target, full)
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["r.json"]
    message = describe_write_error(caught.value, target)
    assert "the disk is full" in message and str(tmp_path) in message


def test_a_trace_that_torch_did_not_write_is_not_recorded(tmp_path):
    """kineto logs a failed write and leaves ``NAME.tmp``: export_trace must notice."""
    from streambench.runners.local.profiling import TraceWriteError, export_trace

    class Kineto:
        def export_chrome_trace(self, path):
            Path(path + ".tmp").write_text('{"traceEvents": [{"name": "x"')  # truncated

    with pytest.raises(TraceWriteError, match="was not written"):
        export_trace(Kineto(), tmp_path / "t.trace.json")
    assert os.listdir(tmp_path) == []


# -- 8. one writer per file -----------------------------------------------------------------------
def test_a_second_writer_of_the_same_output_is_refused(tmp_path):
    (tmp_path / "link.json").symlink_to(tmp_path / "r.json")
    first = subprocess.Popen(
        [sys.executable, "-m", "streambench", "run", "--in-out", "64-32", "--warmup", "0",
         "--trials", "500", "--batch-size", "1,2,3,4,5,6,7,8", "--isolate", "none", "-o", "r.json"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV, cwd=tmp_path,
    )  # fmt: skip
    try:  # 500 trials: still running while the second writer starts (it is SIGKILLed below)
        sidecar = tmp_path / ".r.json.lock"
        deadline = time.monotonic() + 120
        while not sidecar.exists() and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.05)
        assert sidecar.exists(), "the first run took no lock"
        for target in ("r.json", "link.json"):
            line = one_error_line(sb("run", *FAST, "-o", target, cwd=tmp_path))
            assert f"--output {target}" in line and f"(pid {first.pid})" in line, line
            assert "another streambench process" in line
    finally:
        first.send_signal(signal.SIGKILL)  # dies holding the lock: the kernel releases it
        first.communicate(timeout=60)
    assert sidecar.exists()  # left behind by SIGKILL, and harmless:
    proc = sb("run", *FAST, "-o", "r.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not sidecar.exists()  # removed by the run that ended normally


def test_endpoint_refuses_an_output_another_process_writes(tmp_path):
    from streambench.results.output_lock import OutputLocks

    held = OutputLocks()  # this test process is the first writer
    held.acquire(tmp_path / "e.json")
    try:
        proc = sb("endpoint", NOWHERE, "--model", "m", "--requests", "1", "-o", "e.json",
                  cwd=tmp_path)  # fmt: skip
        line = one_error_line(proc)
        assert "--output e.json" in line and f"(pid {os.getpid()})" in line
    finally:
        held.release()
    assert not (tmp_path / "e.json").exists()


def test_locks_conflict_between_open_files_in_process(tmp_path):
    from streambench.results.output_lock import OutputLocks

    a, b = OutputLocks(), OutputLocks()
    a.acquire(tmp_path / "r.json")
    with pytest.raises(UsageError, match=f"pid {os.getpid()}"):
        b.acquire(tmp_path / "r.json", "-o")
    a.release()
    b.acquire(tmp_path / "r.json")
    b.release()
    assert os.listdir(tmp_path) == []


# -- 20. the plot is written like the results files -----------------------------------------------
@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("plotted")
    assert sb("run", *FAST, "-o", "r.json", cwd=where).returncode == 0
    return where / "r.json"


def test_plot_keeps_permissions_and_symlinks_and_is_atomic(tmp_path, results):
    real = tmp_path / "real.png"
    real.write_bytes(b"old")
    real.chmod(0o640)
    (tmp_path / "link.png").symlink_to(real)
    proc = sb("plot", str(results), "-o", "link.png", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "link.png").is_symlink()  # written through, still a link
    assert real.read_bytes().startswith(b"\x89PNG")
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    proc = sb("plot", str(results), "-o", "new.png", cwd=tmp_path,
              preexec_fn=lambda: os.umask(0o027))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE((tmp_path / "new.png").stat().st_mode) == 0o640  # 0666 & ~umask
    assert sorted(os.listdir(tmp_path)) == ["link.png", "new.png", "real.png"]


def test_plot_and_compare_outputs_are_not_their_inputs(tmp_path, results):
    copy = tmp_path / "r.json"
    copy.write_bytes(results.read_bytes())
    (tmp_path / "r.png").symlink_to(copy)  # names that pass the format check, reach the input
    (tmp_path / "r.md").symlink_to(copy)
    line = one_error_line(sb("plot", "r.json", "-o", "r.png", cwd=tmp_path))
    assert "-o r.png" in line and "results file" in line
    line = one_error_line(sb("compare", "r.json", "r.json", "-o", "r.md", cwd=tmp_path))
    assert "-o r.md" in line and "results file" in line
    assert copy.read_bytes() == results.read_bytes()


def test_run_plot_is_not_private(tmp_path):
    proc = sb("run", *FAST, "--plot", "p.png", cwd=tmp_path, preexec_fn=lambda: os.umask(0o022))
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE((tmp_path / "p.png").stat().st_mode) == 0o644
