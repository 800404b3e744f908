"""The package's shape: no import circles, and the core modules import nothing above them.

Every module of ``streambench`` is parsed with ``ast`` (never imported): relative and absolute
``streambench`` imports count wherever they are, inside functions and under
``if TYPE_CHECKING:`` too (a type-only import is still a dependency: the two modules cannot be
understood, or moved, apart). Importing ``a.b.c`` counts as an edge to ``a.b.c``
only, not to its parent packages (a package ``__init__`` that re-exports its submodules is no
circle).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = "streambench"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE

#: import cycles known to remain outside this test's reach, as sorted module tuples; each one
#: must still exist (a fixed cycle is removed from here)
KNOWN_CYCLES: set[tuple[str, ...]] = set()

#: what each core module may import from the package (nothing above it)
CORE_ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "terminal": set(),
    "units": set(),
    "numtext": set(),
    "reading": {"errors"},
    "stats": set(),
    "devices": set(),
    "ranks": set(),
    "timing": {"stats", "units"},
    "streamer": {"devices", "ranks", "stats", "timing"},
}

#: old module names kept as re-export shims (public names only, a DeprecationWarning on import);
#: package code imports the new homes
SHIMS = {"sweep", "distributed", "report"}
SHIM_USERS: set[str] = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(node: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement under ``node``, ``if TYPE_CHECKING:`` bodies included."""
    return [n for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))]


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest known module that ``name`` starts with."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def _imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    is_package = path.name == "__init__.py"
    here = name.split(".") if is_package else name.split(".")[:-1]
    found: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names if a.name.split(".")[0] == PACKAGE]
        else:
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == PACKAGE:
                stem = node.module
            else:
                continue
            # "from . import report" names a module; "from .x import y" an attribute of x
            targets = [f"{stem}.{a.name}" for a in node.names if f"{stem}.{a.name}" in modules]
            targets = targets or [stem]
        for target in targets:
            resolved = _resolve(target, modules)
            if resolved is not None and resolved != name:
                found.add(resolved)
    return found


def import_graph() -> dict[str, set[str]]:
    """``module -> modules of the package it imports``."""
    modules = _modules()
    return {name: _imports_of(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[tuple[tuple[str, ...], list[str]]]:
    """Each strongly connected component of more than one module (Tarjan), sorted, with one
    circular path through its first module (repeated at the end)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [(tuple(comp), _path_through(graph, comp)) for comp in components]


def _path_through(graph: dict[str, set[str]], comp: list[str]) -> list[str]:
    """A shortest circular path from the component's first module back to it."""
    members, start = set(comp), comp[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & members):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start] if v != start else [start, start]
                if w not in previous:
                    previous[w] = v
                    nxt.append(w)
        frontier = nxt
    return comp  # unreachable for a strongly connected component


def _short(name: str) -> str:
    return name.removeprefix(PACKAGE + ".")


def test_graph_sees_relative_absolute_and_function_level_imports():
    graph = import_graph()
    assert "streambench.stats" in graph["streambench.timing"]  # module level, relative
    assert (
        "streambench.streamer" in graph["streambench.runners.local.generate_call"]
    )  # inside a function
    assert "streambench.cli.run" in graph["streambench.__main__"]  # absolute
    assert "streambench.terminal" in graph["streambench.endpoint.served_sweep"]  # "from .. import"
    assert "streambench.streamer" in graph["streambench"]  # only under TYPE_CHECKING


def test_no_import_cycles():
    cycles = _cycles(import_graph())
    found = {comp for comp, _ in cycles}
    new = [
        f"{{{', '.join(map(_short, comp))}}}, e.g. {' -> '.join(map(_short, path))}"
        for comp, path in cycles
        if comp not in KNOWN_CYCLES
    ]
    assert not new, "import cycles among " + "; ".join(new)
    assert KNOWN_CYCLES <= found, f"fixed, remove from KNOWN_CYCLES: {KNOWN_CYCLES - found}"


@pytest.mark.parametrize("core", sorted(CORE_ALLOWED))
def test_core_modules_import_nothing_above_them(core):
    graph = import_graph()
    imported = {_short(m) for m in graph[f"{PACKAGE}.{core}"]}
    above = imported - CORE_ALLOWED[core]
    assert not above, f"core module {core} imports {sorted(above)} (allowed: {CORE_ALLOWED[core]})"


def test_package_code_uses_the_new_homes_not_the_shims():
    graph = import_graph()
    users = {
        _short(m)
        for m, deps in graph.items()
        if _short(m) not in SHIMS | SHIM_USERS and {_short(d) for d in deps} & SHIMS
    }
    assert not users, f"package modules importing a shim ({sorted(SHIMS)}): {sorted(users)}"


def test_loading_and_rank_modules_do_not_import_torch():
    code = (
        "import sys, streambench.engines.transformers, streambench.runners.local.plan, "
        "streambench.cluster, "
        "streambench.ranks, streambench.sweep, streambench.distributed; "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


#: loaders that read a folder and may import Python from it (``auto_map``) unless told not to
REMOTE_CODE_LOADERS = ("from_pretrained", "from_config")
#: receivers that read JSON only, never code
JSON_ONLY = ("GenerationConfig",)


def _loads_without_decision(source: str, name: str) -> list[str]:
    """``name:line`` of every ``X.from_pretrained(...)`` / ``X.from_config(...)`` call in
    ``source`` that does not pass ``trust_remote_code=`` by name (``**kwargs`` does not count)."""
    found = []
    for node in ast.walk(ast.parse(source, name)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr not in REMOTE_CODE_LOADERS:
            continue
        if ast.unparse(node.func.value).split(".")[-1] in JSON_ONLY:
            continue
        if not any(k.arg == "trust_remote_code" for k in node.keywords):
            found.append(f"{name}:{node.lineno}")
    return found


def test_every_load_decides_remote_code_explicitly():
    """transformers asks on the terminal when ``trust_remote_code`` is not given, and a ``y``
    runs a folder's Python: every loader call in the package passes it by name (issue 21)."""
    missing = [
        hit
        for path in sorted(ROOT.rglob("*.py"))
        for hit in _loads_without_decision(path.read_text(), str(path.relative_to(ROOT.parent)))
    ]
    assert not missing, f"loads without trust_remote_code=...: {missing}"
    sample = (
        "A.from_pretrained(p, **kw)\nm.B.from_config(c, trust_remote_code=False)\n"
        "GenerationConfig.from_pretrained(p)\nC.from_pretrained(p, local_files_only=True)\n"
    )
    assert _loads_without_decision(sample, "s") == ["s:1", "s:4"]


#: the built-in engines' names as text: only their plug-ins (``streambench/engines/``) say them;
#: everything else asks the registry (``get_engine(name)``, ``engine_names()``)
ENGINE_NAMES = (
    "openvino",
    "openvino-genai",
    "openvino_genai",
    "llama.cpp",
    "onnxruntime-genai",
    "onnxruntime_genai",
)
#: the default engine's name, which code outside ``engines/`` must not compare an engine with
#: (other uses, e.g. ``placement.tp == "transformers"``, are not about engines)
DEFAULT_ENGINE = "transformers"


def _operands(node: ast.expr) -> list[ast.expr]:
    """``node``, or the items of a tuple/list/set literal (``x in ("a", "b")``)."""
    return list(node.elts) if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]


def _engine_names_in(source: str, name: str) -> list[str]:
    """``name:line`` of every string constant that is an engine's name and of every comparison
    of an engine (an operand whose code says ``engine``: ``engine``, ``v.get("engine")``,
    ``engine_of(v)`` ...) with ``"transformers"`` in ``source``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, name)):
        if isinstance(node, ast.Constant) and node.value in ENGINE_NAMES:
            found.append((node.lineno, f"{name}:{node.lineno} {node.value!r}"))
        elif isinstance(node, ast.Compare):
            sides = [x for side in (node.left, *node.comparators) for x in _operands(side)]
            named = any(isinstance(x, ast.Constant) and x.value == DEFAULT_ENGINE for x in sides)
            if named and any("engine" in ast.unparse(x).lower() for x in sides):
                found.append(
                    (node.lineno, f"{name}:{node.lineno} compares with {DEFAULT_ENGINE!r}")
                )
    return [text for _, text in sorted(found)]  # ast.walk is breadth-first: by line


def test_engine_names_are_said_only_by_the_engines():
    """An engine is a plug-in (issue #23): outside ``streambench/engines/`` no code says an
    engine's name or compares with the default one; it asks the registry."""
    engines = ROOT / "engines"
    hits = [
        hit
        for path in sorted(ROOT.rglob("*.py"))
        if engines not in path.parents
        for hit in _engine_names_in(path.read_text(), str(path.relative_to(ROOT.parent)))
    ]
    assert not hits, f"engine names outside streambench/engines/: {hits}"
    sample = (
        'if e == "openvino-genai": pass\nif engine in (None, "transformers"): pass\n'
        '"""mentions openvino in a docstring"""\nx = {"transformers": 1}\n'
        'if "transformers" != engine_of(v): pass\nimportlib.util.find_spec("openvino_genai")\n'
        'if tp == "transformers": pass\nif v.get("engine") == "transformers": pass\n'
    )
    assert _engine_names_in(sample, "s") == [
        "s:1 'openvino-genai'",
        "s:2 compares with 'transformers'",
        "s:5 compares with 'transformers'",
        "s:6 'openvino_genai'",
        "s:8 compares with 'transformers'",
    ]


#: the longest a module may be; past it, it holds more than one idea
MAX_MODULE_LINES = 600
#: the longest a function may be; declarative tables are module-level data, not functions
MAX_FUNCTION_LINES = 80

#: what the package's top level may hold: the public face, the documented core and its helpers,
#: the shims; everything else lives in the folder of its pipeline stage (README, "Development")
TOP_LEVEL = {
    "__init__",
    "__main__",
    # the documented core
    "streamer",
    "wrapper",
    "timing",
    "stats",
    "intervals",
    "devices",
    "peak_memory",
    "ranks",
    "tiny",
    # units, errors and the helpers every stage uses
    "units",
    "errors",
    "terminal",
    "numtext",
    "reading",
    "extras",
    "version",
    # shims
    *SHIMS,
}
#: the folders, in pipeline order
FOLDERS = (
    "spec",
    "workloads",
    "engines",
    "runners",
    "endpoint",
    "cluster",
    "telemetry",
    "results",
    "cli",
    "data",
)


def test_no_module_over_600_lines():
    long = {
        str(p.relative_to(ROOT.parent)): n
        for p in sorted(ROOT.rglob("*.py"))
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_function_over_80_lines():
    long = {}
    for path in sorted(ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(ROOT.parent)}::{node.name}"] = n
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_the_file_list_shows_the_pipeline():
    """The top level keeps the public face, the core and the shims; every other module lives
    in the folder of its stage (spec -> workloads -> engines -> runners -> results -> report)."""
    modules = {p.stem for p in ROOT.glob("*.py")}
    assert not modules - TOP_LEVEL, f"move into a stage's folder: {sorted(modules - TOP_LEVEL)}"
    folders = {p.name for p in ROOT.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders <= set(FOLDERS), f"undocumented folders: {sorted(folders - set(FOLDERS))}"


@pytest.mark.parametrize("shim", sorted(SHIMS))
def test_shims_warn_and_keep_public_names_only(shim):
    code = (
        "import warnings, importlib; warnings.simplefilter('error', DeprecationWarning)\n"
        f"try:\n    importlib.import_module('streambench.{shim}')\n"
        "except DeprecationWarning as exc:\n    print('warned:', exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("warned:"), out.stdout + out.stderr
    import importlib
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = importlib.import_module(f"streambench.{shim}")
    private = [n for n in getattr(module, "__all__", ()) if n.startswith("_")]
    assert module.__all__ and not private
