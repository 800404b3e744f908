"""How to install an optional extra (``report``, ``plot``, ``openvino``, ``distributed``) for the
copy of streambench that is running: ``pip install 'streambench[report]'`` for an installed
package, ``pip install -e '.[report]'`` from a source tree (a clone, or an editable install of
one), where the first would fetch another streambench from PyPI, or fail.

>>> install_hint("report", package_dir="/usr/lib/python3/site-packages/streambench")
"pip install 'streambench[report]'"
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Optional, Union

__all__ = ["install_hint", "source_tree"]

_PACKAGE = Path(__file__).resolve().parent


def source_tree(package_dir: Union[str, os.PathLike, None] = None) -> Optional[Path]:
    """The source tree this package runs from (the folder whose ``pyproject.toml`` names
    streambench, beside the package), or ``None`` for an installed package (under
    ``site-packages``/``dist-packages``, or no such ``pyproject.toml``)."""
    package = Path(package_dir) if package_dir is not None else _PACKAGE
    if {"site-packages", "dist-packages"} & set(package.parts):
        return None
    project = package.parent / "pyproject.toml"
    try:
        text = project.read_text(encoding="utf-8")[:100_000]
    except (OSError, UnicodeDecodeError):
        return None
    return package.parent if 'name = "streambench"' in text else None


def install_hint(extra: str, package_dir: Union[str, os.PathLike, None] = None) -> str:
    """The pip command that installs ``extra`` for this copy: ``pip install -e '.[extra]'``
    from a source tree (the tree's path instead of ``.`` when the working directory is not
    its root), else ``pip install 'streambench[extra]'``."""
    root = source_tree(package_dir)
    if root is None:
        return f"pip install {shlex.quote(f'streambench[{extra}]')}"
    try:
        here = Path.cwd().resolve() == root.resolve()
    except OSError:  # the working directory was removed
        here = False
    where = "." if here else str(root)
    return f"pip install -e {shlex.quote(f'{where}[{extra}]')}"
