"""The student edition: ``python -m vitnp course build --out DIR``.

It writes a complete, installable copy of the project in which

- every solution region of the code under ``vitnp/`` is replaced by
  ``raise NotImplementedError("exercise <id>: <statement>")`` (:mod:`vitnp.course.exercises`);
- every solution region of a notebook cell is replaced by nbgrader's stub (``# YOUR CODE HERE`` and a raise in
  code, ``YOUR ANSWER HERE`` in Markdown), the outputs of those cells are cleared, and the paired source in
  ``notebooks/src/`` is written again from the cut notebook by jupytext;
- the fast twins (:mod:`vitnp.fast`) whose reference holds an exercise or builds on one (the fast model,
  ``fast.ln_linear`` on LayerNorm and linear, …: :func:`withheld_modules`) are withheld: their names are
  imported from the reference, because their code would show the solutions (the student edition trains with
  the student's own reference code);
- the instructor-only files (:data:`INSTRUCTOR_ONLY`: the answer key and rubrics, tests that hold reference code or
  name the bug zoo's mistakes) are left out;
- nothing between markers survives, and no answer line (:mod:`vitnp.course.leaks`) appears anywhere in the copy:
  code, tests, docs, notebooks and their outputs (checked after the build; the build fails otherwise, naming each
  file and line).

The instructor's tree is only read.  The copy is built in a temporary directory beside ``DIR`` and renamed to
``DIR`` at the end, so a failed build leaves nothing half-written; ``DIR`` must not exist yet.
"""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .exercises import EXERCISES
from .leaks import answer_lines, find_leaks
from .markers import MarkerError, code_stub, cut, find_code_regions, find_regions, mentions_marker

SKIP_DIRS = {".git", ".venv", "venv", "runs", "__pycache__", ".pytest_cache", ".ipynb_checkpoints", "build", "dist",
             ".mypy_cache", ".ruff_cache", "htmlcov", ".tox", ".nox"}
NOTEBOOK_CODE_STUB = ["# YOUR CODE HERE", "raise NotImplementedError()"]
NOTEBOOK_TEXT_STUB = ["YOUR ANSWER HERE"]


def project_files(root: Path) -> list:
    """Paths (relative to ``root``) of the project: git's tracked and untracked-but-not-ignored files in a
    git checkout, else every file outside build, cache and run directories."""
    if (root / ".git").exists():
        p = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           capture_output=True, check=True)
        return sorted({Path(f) for f in p.stdout.decode().split("\0") if f and (root / f).is_file()})
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        out += [Path(dirpath, f).relative_to(root) for f in filenames]
    return sorted(out)


def cut_code(source: str, path: str) -> tuple:
    """(source with every region replaced by its exercise's raise, [exercise ids])."""
    by_where = {e.where: e for e in EXERCISES}
    regions = find_code_regions(source, path)
    ids = []
    stubs = {}
    for r in regions:
        e = by_where.get(f"{path}:{r.function}")
        if e is None:
            raise MarkerError(f"{path}: the solution region in {r.function}() is not an exercise of "
                              f"vitnp/course/exercises.py")
        stubs[r.begin] = code_stub(e)(r)
        ids.append(e.id)
    return cut(source, regions, lambda r: stubs[r.begin]), ids


def cut_notebook(nb) -> int:
    """Cut the solution regions of a notebook (nbformat node) in place; returns the number of cells cut."""
    n = 0
    for cell in nb.cells:
        regions = find_regions(cell.source, "cell")
        if not regions:
            continue
        stub = NOTEBOOK_CODE_STUB if cell.cell_type == "code" else NOTEBOOK_TEXT_STUB
        cell.source = cut(cell.source, regions, lambda r: [r.indent + line for line in stub])
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        n += 1
    return n


def _public_functions(source: str) -> set:
    return {node.name for node in ast.parse(source).body
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")}


def withheld_modules(src: Path) -> set:
    """Names of the fast modules the student edition withholds: those whose reference twin (``vitnp/ops/<name>.py``,
    or ``vitnp/model.py`` for ``fast.model``) holds an exercise or imports from a module of ``vitnp/`` that does."""
    holders = {e.path for e in EXERCISES}
    out = set()
    for fast in sorted((src / "vitnp" / "fast").glob("*.py")):
        twin = Path("vitnp/model.py") if fast.stem == "model" else Path("vitnp/ops") / fast.name
        if not (src / twin).is_file():
            continue
        tree = ast.parse((src / twin).read_text(encoding="utf-8"))
        imported = {_module_path(twin, node) for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and node.level > 0}
        if twin.as_posix() in holders or imported & holders:
            out.add(fast.stem)
    return out


def _module_path(importer: Path, node: ast.ImportFrom) -> str:
    """The project path of the module a relative ``from .x import y`` in ``importer`` names."""
    base = importer.parent
    for _ in range(node.level - 1):
        base = base.parent
    return (base / ((node.module or "").replace(".", "/") + ".py")).as_posix()


def withheld_twin(fast_source: str, reference_source: str, module: str) -> str:
    """The student edition's ``vitnp/fast/<module>.py``: the reference's functions under the fast names."""
    names = sorted(_public_functions(fast_source) & _public_functions(reference_source))
    where = "model" if module == "model" else f"ops.{module}"
    return (f'"""Student edition: the fast twin of :mod:`vitnp.{where}` is withheld (its code would show the\n'
            f'solutions); these names run the reference, which you write."""\n'
            f"from ..{where} import {', '.join(names)}  # noqa: F401\n")


# Files only the instructor gets: the answer key and rubrics, and tests that hold reference code or name the
# mistakes of the bug zoo (the student edition's tests grade exercises through the grader instead).
INSTRUCTOR_ONLY = frozenset({
    "docs/instructor.md",                  # the bug zoo's key and every written question's rubric
    "tests/test_course_bug_zoo.py",               # names and re-plants the zoo's mistakes
    "tests/test_model_torch.py",       # the whole model written again in PyTorch
    "tests/test_original_model.py",  # … and in NumPy from the original checkpoints' arrays
    "tests/test_course.py",                # tests of the build and the grader on the instructor's solutions
    "tests/test_course_notebooks.py",
    "tests/test_course_class.py",
    "tests/test_course_grader_hostile.py",
    "tests/test_course_nbgrader.py",       # fills the released notebooks in with the model answers
})

def _has_marker(path: Path) -> bool:
    """Does a solution marker line survive in this file (a notebook's cells are read with nbformat)?"""
    import nbformat
    try:
        if path.suffix == ".ipynb":
            texts = [cell.source for cell in nbformat.read(path, as_version=4).cells]
        else:
            texts = [path.read_text(encoding="utf-8")]
    except (UnicodeDecodeError, ValueError):
        return False                                            # binary files (PNG, .npz) hold no markers
    return any(mentions_marker(text) for text in texts)


def build(out, src=None) -> dict:
    """Write the student edition of the project at ``src`` (default: the installed one) to ``out``.

    Returns {'files': n, 'exercises': [ids], 'notebook_cells': n, 'withheld': [modules]}.
    """
    src = Path(src).resolve() if src is not None else Path(__file__).resolve().parents[2]
    out = Path(out).resolve()
    if not (src / "setup.cfg").is_file() or not (src / "vitnp" / "__init__.py").is_file():
        raise ValueError(f"{src} is not the vitnp project (no setup.cfg and vitnp/ there); pass --src with the "
                         f"project's root (a checkout, not an installed package)")
    if out.exists():
        raise ValueError(f"{out} exists already; the student edition is written to a new directory")
    if out == src or src in out.parents:
        raise ValueError(f"{out} is inside the project {src}; choose a directory outside it")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        report = _build_into(src, tmp)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def _build_into(src: Path, dst: Path) -> dict:
    import jupytext
    import nbformat
    report = {"files": 0, "exercises": [], "notebook_cells": 0, "withheld": []}
    withheld = withheld_modules(src)
    files = project_files(src)
    for rel in files:
        if rel.as_posix() in INSTRUCTOR_ONLY:
            report["withheld"].append(rel.as_posix())
            continue
        source_path, target = src / rel, dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        report["files"] += 1
        posix = rel.as_posix()
        if posix.startswith("vitnp/fast/") and rel.stem in withheld:
            twin = src / "vitnp" / ("model.py" if rel.stem == "model" else f"ops/{rel.name}")
            target.write_text(withheld_twin(source_path.read_text(encoding="utf-8"), twin.read_text(encoding="utf-8"),
                                            rel.stem), encoding="utf-8")
            report["withheld"].append(posix)
        elif posix == "vitnp/course/edition.py":
            text = source_path.read_text(encoding="utf-8")
            if "\nSTUDENT = False\n" not in text:
                raise MarkerError(f"{posix}: no line 'STUDENT = False' to turn into the student edition's")
            target.write_text(text.replace("\nSTUDENT = False\n", "\nSTUDENT = True\n"), encoding="utf-8")
        elif posix.startswith("vitnp/") and rel.suffix == ".py" and not posix.startswith("vitnp/course/"):
            text, ids = cut_code(source_path.read_text(encoding="utf-8"), posix)
            target.write_text(text, encoding="utf-8")
            report["exercises"] += ids
        elif posix.startswith("notebooks/") and rel.suffix == ".ipynb":
            nb = nbformat.read(source_path, as_version=4)
            report["notebook_cells"] += cut_notebook(nb)
            nbformat.write(nb, target)
            paired = src / "notebooks" / "src" / f"{rel.stem}.py"
            if paired.is_file():
                (dst / "notebooks" / "src").mkdir(parents=True, exist_ok=True)
                jupytext.write(nb, dst / "notebooks" / "src" / f"{rel.stem}.py", fmt="py:percent")
        elif posix.startswith("notebooks/src/") and rel.suffix == ".py":
            continue                                        # written from its cut notebook above
        else:
            shutil.copy2(source_path, target)
    missing = sorted({e.id for e in EXERCISES} - set(report["exercises"]))
    if missing:
        raise MarkerError(f"exercises without a solution region in the code: {', '.join(missing)}")
    leftovers = [str(p.relative_to(dst)) for p in dst.rglob("*")
                 if p.is_file() and not p.relative_to(dst).as_posix().startswith(("tests/", "vitnp/course/"))
                 and _has_marker(p)]
    if leftovers:
        raise MarkerError(f"solution markers survived the build in {', '.join(leftovers)}")
    leaks = find_leaks(dst, answer_lines(src, files))
    if leaks:
        shown = "; ".join(f"{f} {place} (a line of {where})" for f, place, where in leaks[:12])
        raise LeakError(f"{len(leaks)} answer line(s) would ship in the student edition: {shown}"
                        + (" …" if len(leaks) > 12 else ""))
    return report


class LeakError(MarkerError):
    """A line of a model solution appears elsewhere in the student edition."""
