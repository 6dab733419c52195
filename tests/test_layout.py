"""The package's shape: no import cycles, no module over 500 lines, and scripts that use only public names.

The import graph is read from the source with ``ast`` (nothing is imported): every ``import`` and
``from … import`` anywhere in a module, including inside functions, is an edge to the vitnp module it
names.  Importing ``a.b.c`` also runs the ``__init__`` of the packages ``a.b`` and ``a``, so that is an edge
too, except to the importer's own packages (Python has started those already).  A cycle is a strongly
connected component of more than one module.

Each check is also run on a small made-up package that breaks it, so that each is seen to fail.
"""
import ast
import re
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 500


# ---- reading the source ------------------------------------------------------------------------------
def modules(package_dir) -> dict:
    """Dotted module name -> path, for every .py file under ``package_dir`` (a package's is its __init__)."""
    package_dir = Path(package_dir)
    out = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_package(name, mods) -> bool:
    return mods.get(name, Path()).name == "__init__.py"


def imported_names(name, path, mods) -> set:
    """The dotted names a module imports (absolute, within the package or not), at any depth of the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = name if _is_package(name, mods) else name.rpartition(".")[0]     # what `from .` means
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                base = base[:len(base) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module
            found.add(origin)
            found.update(f"{origin}.{alias.name}" for alias in node.names)    # `from pkg import submodule`
    return found


def import_graph(package_dir) -> dict:
    """module -> set of the package's modules it imports (see the module docstring)."""
    mods = modules(package_dir)
    graph = {}
    for name, path in mods.items():
        edges = set()
        for target in imported_names(name, path, mods):
            while target and target not in mods:                 # `from pkg.mod import function` -> pkg.mod
                target = target.rpartition(".")[0]
            while target:                                        # ... and the packages above it
                if not (name == target or name.startswith(target + ".")):
                    edges.add(target)
                target = target.rpartition(".")[0]
        graph[name] = edges
    return graph


def cycles(graph) -> list:
    """The import cycles of ``graph``: sorted lists of modules (strongly connected components, Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def long_modules(package_dir, limit=MAX_LINES) -> dict:
    """path -> line count of the modules longer than ``limit`` lines."""
    out = {}
    for path in modules(package_dir).values():
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > limit:
            out[str(path.relative_to(ROOT) if ROOT in path.parents else path)] = n
    return out


def private_uses(script, package="vitnp") -> list:
    """What a script takes from ``package`` that is not public: ``from vitnp.x import _y``, a module path
    with a ``_name`` part, or any ``obj._attribute`` (a private attribute of anything)."""
    tree = ast.parse(Path(script).read_text(encoding="utf-8"), filename=str(script))
    found = []

    def private(part):
        return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))

    for node in ast.walk(tree):
        where = f"{Path(script).name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == package:
            names = node.module.split(".") + [alias.name for alias in node.names]
            found += [f"{where}: from {node.module} import {part}" for part in names if private(part)]
        elif isinstance(node, ast.Import):
            found += [f"{where}: import {alias.name}" for alias in node.names
                      if alias.name.split(".")[0] == package and any(map(private, alias.name.split(".")))]
        elif isinstance(node, ast.Attribute) and private(node.attr):
            found.append(f"{where}: .{node.attr}")
    return found


# ---- the checks on vitnp -----------------------------------------------------------------------------
def test_vitnp_has_no_import_cycles():
    graph = import_graph(ROOT / "vitnp")
    assert {"vitnp.training.trainer", "vitnp.training.evaluation", "vitnp.training.fit", "vitnp.data",
            "vitnp.data.batches"} <= set(graph)
    assert "vitnp.training.rundir" in graph["vitnp.training.evaluation"]                          # edges seen
    assert "vitnp.training.evaluation" in graph["vitnp.training.fit"]
    assert cycles(graph) == []


def test_no_vitnp_module_is_over_500_lines():
    assert long_modules(ROOT / "vitnp") == {}


def test_scripts_use_only_public_names():
    scripts = sorted((ROOT / "scripts").glob("*.py"))
    assert scripts
    problems = [p for script in scripts for p in private_uses(script)]
    assert problems == []


# ---- each check can fail ------------------------------------------------------------------------------
def _write(root, files: dict):
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checks_catch_a_made_up_package(tmp_path):
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "def f():\n    from .b import g      # a function-level import still counts\n    return g\n",
        "pkg/b.py": "from . import a\n\ndef g():\n    return a\n",
        "pkg/sub/__init__.py": "from .leaf import x\n",
        "pkg/sub/leaf.py": "x = 1\n",                                   # its package imports it: no cycle
        "pkg/d.py": "from .sub.leaf import x\n",
        "pkg/sub/other.py": "from ..d import x\n",                      # d -> pkg.sub (its __init__) -> ... no
        "pkg/long.py": "x = 1\n" * (MAX_LINES + 1),
        "pkg/ok.py": "x = 1\n" * MAX_LINES,
        "script.py": ("from pkg.a import _hidden\nimport pkg._private\nfrom pkg import settings\n"
                      "settings._cache.clear()\nfrom pkg.b import g\nprint(g.__name__)\n"),
    })
    graph = import_graph(tmp_path / "pkg")
    assert "pkg.sub" in graph["pkg.d"] and "pkg.sub.leaf" in graph["pkg.d"]
    assert "pkg.sub" not in graph["pkg.sub.other"]                     # its own package: no edge
    assert cycles(graph) == [["pkg.a", "pkg.b"]]
    assert cycles({"x": {"y"}, "y": {"z"}, "z": set()}) == []
    assert cycles({"x": {"x"}, "y": {"z"}, "z": {"y", "x"}}) == [["x"], ["y", "z"]]
    assert list(long_modules(tmp_path / "pkg").values()) == [MAX_LINES + 1]
    found = private_uses(tmp_path / "script.py", package="pkg")
    assert found == ["script.py:1: from pkg.a import _hidden", "script.py:2: import pkg._private",
                     "script.py:4: ._cache"], found


def test_a_package_that_imports_its_importer_is_a_cycle(tmp_path):
    """pkg.x imports pkg.sub.y, which runs pkg/sub/__init__.py, which imports pkg.x: a real cycle."""
    _write(tmp_path, {"pkg/__init__.py": "", "pkg/x.py": "from .sub.y import v\n",
                      "pkg/sub/__init__.py": "from ..x import v\n", "pkg/sub/y.py": "v = 1\n"})
    assert cycles(import_graph(tmp_path / "pkg")) == [["pkg.sub", "pkg.x"]]
    assert os.path.isfile(tmp_path / "pkg" / "sub" / "y.py")


def _one_letter_apart(a: str, b: str) -> bool:
    """One insertion, deletion or substitution turns a into b."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b)) == 1
    short, long_ = sorted((a, b), key=len)
    return any(long_[:i] + long_[i + 1:] == short for i in range(len(long_)))


def top_level(package_dir) -> tuple:
    """(module names, subpackage names) directly in ``package_dir``."""
    package_dir = Path(package_dir)
    mods = sorted(p.stem for p in package_dir.glob("*.py") if p.stem not in ("__init__", "__main__"))
    pkgs = sorted(p.name for p in package_dir.iterdir() if (p / "__init__.py").is_file())
    return mods, pkgs


def test_the_top_level_is_a_map():
    """At most 12 modules at vitnp/'s top level, the rest in subpackages; no two names one letter apart."""
    mods, pkgs = top_level(ROOT / "vitnp")
    assert len(mods) <= 12, mods
    names = mods + pkgs
    close = [(a, b) for i, a in enumerate(names) for b in names[i + 1:] if _one_letter_apart(a, b)]
    assert not close, close
    assert _one_letter_apart("model", "models") and not _one_letter_apart("model", "ops")   # the check can fail


def test_the_library_does_not_climb_to_the_command_line():
    """No module outside vitnp.cli (and the entry point) imports vitnp.cli: commands call the library, never back."""
    graph = import_graph(ROOT / "vitnp")
    climbing = sorted(m for m, edges in graph.items() if not m.startswith(("vitnp.cli", "vitnp.__main__"))
                      and any(e == "vitnp.cli" or e.startswith("vitnp.cli.") for e in edges))
    assert not climbing, climbing


def test_every_argument_parser_lives_in_cli():
    """argparse is imported in vitnp/cli/ only: the library has no command-line code."""
    outside = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "vitnp").rglob("*.py")
                     if "cli" not in p.relative_to(ROOT / "vitnp").parts[:1]
                     and re.search(r"^\s*(import argparse|from argparse import)", p.read_text(encoding="utf-8"), re.M))
    assert not outside, outside


def test_the_ops_docstrings_have_one_style():
    """Every pair of vitnp/ops in one docstring style (STYLE.md's sketch): a forward says what it computes, gives
    a shapes line ``inputs -> outputs, cache`` and a line ``cache = …`` saying what its backward reads; a
    backward's first sentence reads ``Gradients of …: returns …`` with the shapes; no numpydoc section headers."""
    bad = []
    for path in sorted((ROOT / "vitnp" / "ops").glob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if not (isinstance(node, ast.FunctionDef) and node.name.endswith(("_forward", "_backward"))):
                continue
            doc = ast.get_docstring(node) or ""
            where = f"{path.name}:{node.name}"
            if re.search(r"^\s*(Parameters|Returns)\s*\n\s*-{3,}", doc, re.M):
                bad.append(f"{where}: numpydoc sections")
            if node.name.endswith("_forward"):
                if not any("->" in line for line in doc.splitlines()[1:]):
                    bad.append(f"{where}: no shapes line")
                if not re.search(r"^cache = ", doc, re.M):
                    bad.append(f"{where}: no 'cache = …' line")
            else:
                first = doc.split("\n\n")[0]
                if not (first.startswith("Gradients of") and "returns" in first):
                    bad.append(f"{where}: first sentence is not 'Gradients of …: returns …'")
    assert not bad, bad


def test_the_tests_mirror_the_package():
    """Each test module is named for what it tests: ``tests/test_<unit>[_<aspect>].py``, where the unit is a module or
    package of vitnp (at any depth: ``conv`` is vitnp/ops/conv.py, ``training`` the package), a script of scripts/,
    or the project's documents (``readme``, ``notebooks``) and shape (``layout``); ``tests/support.py`` holds what
    several share.  So a reader finds the tests of vitnp/training/rundir.py in tests/test_rundir.py."""
    units = {"layout", "readme", "notebooks"} | {p.stem for p in (ROOT / "scripts").glob("*.py")}
    for path in (ROOT / "vitnp").rglob("*.py"):
        rel = path.relative_to(ROOT / "vitnp")
        units |= {rel.stem} if rel.stem not in ("__init__", "__main__") else set()
        units |= set(rel.parts[:-1])
    units.discard("__pycache__")
    tests = sorted(p.stem for p in (ROOT / "tests").glob("*.py"))
    assert "support" in tests and all(t.startswith("test_") for t in tests if t != "support")
    unnamed = [t for t in tests if t != "support"
               and not any(t[len("test_"):] == u or t[len("test_"):].startswith(u + "_") for u in units)]
    assert not unnamed, f"test modules not named for a unit of vitnp, a script or a document: {unnamed}"
    assert "test_train" not in tests and "test_training" in tests and "test_rundir" in tests


# The floors of the package, top to bottom: a module may import from its own floor and the floors below, never
# from a floor above (the package's own __init__, its public face, is exempt).
FLOORS = (
    ("vitnp.__main__", "vitnp.cli"),                                     # 5: commands
    ("vitnp.experiments", "vitnp.bench", "vitnp.course"),                # 4: applications of the library
    ("vitnp.training", "vitnp.analysis"),                                # 3: training a model, looking into one
    ("vitnp.model", "vitnp.cnn", "vitnp.self_supervised", "vitnp.fast", "vitnp.optim", "vitnp.gradcheck",
     "vitnp.selfcheck"),                                                 # 2: models and their checks
    ("vitnp.ops",),                                                      # 1: the operations
    ("vitnp.config", "vitnp.data", "vitnp.io"),                          # 0: configs, data, file formats
)


def floor_of(module: str) -> int:
    for depth, rooms in enumerate(FLOORS):
        if any(module == r or module.startswith(r + ".") for r in rooms):
            return len(FLOORS) - 1 - depth
    raise AssertionError(f"{module} is on no floor of tests/test_layout.py's FLOORS")


def test_no_import_runs_back_up_a_floor():
    """Every module has a floor (FLOORS), and its imports point to its own floor or below: following cfg and
    params from a command down to the ops never climbs back up."""
    graph = import_graph(ROOT / "vitnp")
    up = sorted((a, b) for a, edges in graph.items() if a != "vitnp" for b in edges
                if b != "vitnp" and floor_of(b) > floor_of(a))
    assert not up, f"imports that run back up a floor: {up}"
    assert floor_of("vitnp.cli.train") == 5 and floor_of("vitnp.ops.linear") == 1   # the check can fail


def test_the_vit_does_not_import_the_cnn_baseline():
    """The hybrid stem and the baseline share conv ops from vitnp.ops.conv; vitnp.model needs nothing of vitnp.cnn."""
    graph = import_graph(ROOT / "vitnp")
    assert "vitnp.cnn" not in graph["vitnp.model"] and "vitnp.ops.conv" in graph["vitnp.model"]
    assert "vitnp.ops.conv" in graph["vitnp.cnn"]
