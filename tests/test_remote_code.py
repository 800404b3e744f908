"""A folder's own Python code never runs unless asked (issue 21, item 2).

transformers asks "Do you wish to run the custom code? [y/N]" on stdin when a loader is given no
``trust_remote_code``; a ``y`` there ran a tokenizer folder's Python. Every load in streambench
passes the decision explicitly (``tests/test_architecture.py`` checks each call in the package);
here a real folder whose tokenizer has its own code (``auto_map`` -> a module that creates a
marker file when imported) is loaded by ``streambench endpoint --tokenizer`` and by
``streambench run`` with ``y`` on stdin: the marker must not appear. With
``--trust-remote-code`` it does (the folder's code is real: the check above can fail).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streambench import tiny

ROOT = Path(__file__).resolve().parent.parent


def custom_code_folder(path: Path, marker: Path, model: bool = False) -> Path:
    """A tokenizer folder (a whole tiny model with ``model=True``) whose tokenizer class is in
    the folder's ``tokenization_marker.py``, which writes ``marker`` when imported."""
    if model:
        tiny.save_tiny_model(path)
    else:
        tiny.build_tokenizer().save_pretrained(path)
    cfg_path = path / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "MarkerTokenizer"
    cfg["auto_map"] = {"AutoTokenizer": [None, "tokenization_marker.MarkerTokenizer"]}
    cfg_path.write_text(json.dumps(cfg))
    (path / "tokenization_marker.py").write_text(
        "import pathlib\n"
        f"pathlib.Path({str(marker)!r}).write_text('the folder code ran')\n"
        "from transformers import PreTrainedTokenizerFast\n\n\n"
        "class MarkerTokenizer(PreTrainedTokenizerFast):\n"
        "    pass\n"
    )
    return path


def cli(tmp_path: Path, *args, timeout: float = 180):
    """``python -m streambench ARGS`` with ``y`` answering any question on stdin; transformers'
    module cache in ``tmp_path`` (nothing left in the user's)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HF_MODULES_CACHE": str(tmp_path / "modules"),
        "HF_HUB_OFFLINE": "1",
    }
    env.pop("OPENAI_API_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "streambench", *map(str, args)],
        input="y\ny\ny\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


ENDPOINT = ("endpoint", "http://127.0.0.1:9/v1", "--model", "m", "--requests", "1")
ENDPOINT += ("--warmup", "0", "--timeout", "2")


def test_endpoint_tokenizer_code_never_runs_without_the_option(tmp_path):
    marker = tmp_path / "MARKER"
    folder = custom_code_folder(tmp_path / "tok", marker)
    proc = cli(tmp_path, *ENDPOINT, "--tokenizer", folder)
    assert not marker.exists(), "the tokenizer folder's code ran"
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "--trust-remote-code" in err, err
    assert "[y/N]" not in proc.stdout + proc.stderr  # nothing was asked


def test_endpoint_trust_remote_code_runs_it(tmp_path):
    """The control: the same folder with ``--trust-remote-code`` (then the dead server fails
    the request: exit 1)."""
    marker = tmp_path / "MARKER"
    folder = custom_code_folder(tmp_path / "tok", marker)
    proc = cli(tmp_path, *ENDPOINT, "--tokenizer", folder, "--trust-remote-code")
    assert marker.exists(), proc.stderr
    assert proc.returncode == 1, proc.stderr


@pytest.mark.parametrize("isolate", ["none", "config"])
def test_run_never_runs_a_model_folders_tokenizer_code(tmp_path, isolate):
    """``run`` on a model folder whose tokenizer has its own code: measured without that
    tokenizer (random prompt ids), its code never imported; also in a worker process."""
    marker = tmp_path / "MARKER"
    folder = custom_code_folder(tmp_path / "model", marker, model=True)
    args = ("run", folder, "--in-out", "4-2", "--trials", "1", "--warmup", "0")
    proc = cli(tmp_path, *args, "--isolate", isolate)
    assert not marker.exists(), "the model folder's tokenizer code ran"
    assert proc.returncode == 0, proc.stderr
    assert "[y/N]" not in proc.stdout + proc.stderr


def test_endpoint_spec_keeps_the_choice_out_of_old_settings():
    """Off (the default) is not written to the settings, so a file written before the option
    existed resumes; on is written."""
    from streambench.endpoint import EndpointSpec

    assert "trust_remote_code" not in EndpointSpec(url="http://h/v1", model="m").to_dict()
    on = EndpointSpec(url="http://h/v1", model="m", trust_remote_code=True)
    assert on.to_dict()["trust_remote_code"] is True
