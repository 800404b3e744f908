"""Run every CPU benchmark, then put their tables into docs/performance.md.

    .venv/bin/python benchmarks/run_all.py \\
        --peer-python /tmp/venvs/sb-ipex/bin/python \\
        --peer-python /tmp/venvs/sb-optimum/bin/python

Each script writes ``benchmarks/results/NAME.json`` and ``NAME.md``; this script then replaces
the text between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->`` in
``docs/performance.md`` with ``NAME.md`` (``--report-only`` does just that, from the files
already there). See benchmarks/README.md for the peers' virtual environments.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import _common as C

SCRIPTS = ("overhead", "accuracy", "scale", "startup")
DOC = C.ROOT / "docs" / "performance.md"


def fill(
    doc: Path = DOC, results: Path = C.RESULTS, names: tuple[str, ...] = (*SCRIPTS, "gpu_check")
) -> list[str]:
    """Replace each results block of ``doc`` named in ``names`` with the matching markdown file;
    returns the names filled."""
    text = doc.read_text()
    done = []
    for name in names:
        md = results / f"{name}.md"
        if not md.exists():  # e.g. results/gpu-h200/gpu_check.md: the newest such file
            found = sorted(results.glob(f"*/{name}.md"), key=lambda f: f.stat().st_mtime)
            md = found[-1] if found else md
        pattern = re.compile(
            rf"(<!-- results:{name} -->\n)(.*?)(<!-- /results:{name} -->)", flags=re.S
        )
        if md.exists() and pattern.search(text):
            body = md.read_text().rstrip() + "\n"
            if name == "gpu_check":  # its own report starts at "##": nest it in the section
                body = re.sub(r"^(#+) ", r"#\1 ", body, flags=re.M)
            text = pattern.sub(lambda m, body=body: m.group(1) + body + m.group(3), text)
            done.append(name)
    doc.write_text(text)
    return done


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--peer-python", action="append", default=[], help="passed to accuracy.py")
    ap.add_argument("--only", action="append", choices=SCRIPTS, help="run only these")
    ap.add_argument(
        "--report-only",
        action="store_true",
        help="only refill docs/performance.md (with --only: only those blocks)",
    )
    args = ap.parse_args(argv)
    if not args.report_only:
        here = Path(__file__).resolve().parent
        for name in args.only or SCRIPTS:
            cmd = [sys.executable, str(here / f"{name}.py")]
            if name == "accuracy":
                for py in args.peer_python:
                    cmd += ["--peer-python", py]
            print(f"== {name}: load {C.load_average()}", flush=True)
            rc = subprocess.run(cmd, check=False).returncode
            if rc:
                print(f"{name}.py failed with exit code {rc}", file=sys.stderr)
                return rc
    names = tuple(args.only) if args.only else (*SCRIPTS, "gpu_check")
    print("filled:", ", ".join(fill(names=names)) or "nothing")
    return 0


if __name__ == "__main__":
    sys.exit(main())
