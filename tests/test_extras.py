"""Install hints fit the running copy: ``pip install -e '.[report]'`` from a source tree (a clone),
``pip install 'streambench[report]'`` for an installed package (PyPI's name would fetch another
streambench for a clone, or fail)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import streambench
from streambench.extras import install_hint, source_tree

ROOT = Path(__file__).resolve().parent.parent


def test_a_source_tree_gets_the_editable_install(monkeypatch, tmp_path):
    assert source_tree() == ROOT  # these tests run from the clone
    monkeypatch.chdir(ROOT)
    assert install_hint("report") == "pip install -e '.[report]'"
    monkeypatch.chdir(tmp_path)  # elsewhere: the tree's path, quoted for the shell
    assert install_hint("plot") == f"pip install -e '{ROOT}[plot]'"


def test_an_installed_package_gets_the_pypi_name(tmp_path):
    installed = tmp_path / "lib" / "python3.11" / "site-packages" / "streambench"
    installed.mkdir(parents=True)
    (installed.parent / "pyproject.toml").write_text('[project]\nname = "streambench"\n')
    assert source_tree(installed) is None
    assert install_hint("report", installed) == "pip install 'streambench[report]'"
    other = tmp_path / "elsewhere" / "streambench"  # a copy beside another project's file
    other.mkdir(parents=True)
    (other.parent / "pyproject.toml").write_text('[project]\nname = "something-else"\n')
    assert install_hint("plot", other) == "pip install 'streambench[plot]'"
    (other.parent / "pyproject.toml").unlink()
    assert install_hint("plot", other) == "pip install 'streambench[plot]'"


def test_the_plot_refusal_names_the_command_for_this_copy(tmp_path):
    """``--plot`` without matplotlib (hidden from a real CLI process): exit 2, one line, the
    editable install of this tree."""
    code = (
        "import sys, importlib.util as u; real = u.find_spec; "
        "u.find_spec = lambda n, *a: None if n == 'matplotlib' else real(n, *a); "
        "from streambench.cli.run import main; sys.exit(main())"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "run", "--plot", str(tmp_path / "p.png")],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
        env={"PYTHONPATH": str(Path(streambench.__file__).parent.parent), "PATH": "/usr/bin"},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"pip install -e '{ROOT}[plot]'" in lines[0], lines
    assert not (tmp_path / "p.png").exists()
