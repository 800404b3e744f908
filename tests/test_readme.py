"""The README, the Makefile and pyproject.toml say what the project does: no option documented
twice in one table (two rows for one option contradicted each other), `make` installs torch from
the index the README names, and the license is metadata setuptools reads without a warning."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _tables(text: str) -> list[list[str]]:
    """The first cell of every row of each Markdown table (header and rule left out)."""
    tables: list[list[str]] = []
    rows: list[str] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            rows.append(line.split("|")[1].strip())
        elif rows:
            tables.append(rows[2:])
            rows = []
    return tables


def test_no_option_documented_twice_in_a_table():
    for table in _tables((ROOT / "README.md").read_text(encoding="utf-8")):
        seen = [row for row in table if row]
        twice = sorted({row for row in seen if seen.count(row) > 1})
        assert not twice, f"README table rows given twice: {twice}"


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_installs_torch_from_the_index_the_readme_names(tmp_path):
    """A dry run (`make -n`, nothing installed) in a copy: the default leaves pip's own
    configuration alone; TORCH_INDEX puts the index on the torch install only."""
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)

    def plan(*args: str) -> list[str]:
        out = subprocess.run(
            ["make", "-n", *args, "setup"], cwd=tmp_path, capture_output=True, text=True,
            timeout=60, check=True,
        ).stdout  # fmt: skip
        return [line for line in out.splitlines() if "pip install" in line]

    default = plan()
    assert any('"torch==2.13.0"' in line for line in default)
    assert not any("--index-url" in line for line in default)
    cpu = plan(f"TORCH_INDEX={CPU_INDEX}")
    torch_line = [line for line in cpu if "torch==" in line]
    assert len(torch_line) == 1 and f'--index-url "{CPU_INDEX}"' in torch_line[0]
    assert not any("--index-url" in line for line in cpu if "torch==" not in line)
    assert not any("torch" in line for line in plan("TORCH="))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"make TORCH_INDEX={CPU_INDEX} demo" in readme


def test_license_is_an_spdx_expression_with_the_setuptools_that_reads_it():
    """`project.license` as a table printed setuptools' deprecation box at every build; the SPDX
    string needs setuptools >= 77 (checked by hand: `pip wheel --no-deps .` prints no warning
    and the wheel's METADATA has `License-Expression: Apache-2.0`)."""
    tomllib = pytest.importorskip("tomllib")
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert data["project"]["license"] == "Apache-2.0"
    assert "setuptools>=77" in data["build-system"]["requires"]
