"""The grader: ``python -m vitnp course grade [--root DIR]``.

For each exercise of :data:`vitnp.course.exercises.EXERCISES` it runs, on the tree being graded, the gradient
checks the test suite runs (:func:`vitnp.selfcheck.cases`) and the known answers (:mod:`vitnp.course.answers`).
An exercise passes when every check compared something and every error is a number within its tolerance; a
``NotImplementedError`` (an exercise not done), any other exception, a NaN or a timeout, or output printed by
the graded code, is a fail with the first failing check named, never a crash of the grader.

How a tree is graded: each exercise runs in its own subprocess (``python -m vitnp.course.grade worker``), which
imports ``ROOT/vitnp`` under another package name, so that the graded copy's code runs beside this grader's.
The checks themselves (``selfcheck.py``, ``gradcheck.py``) must be the course's: a copy whose checking code
differs from this grader's fails every exercise, and the known answers are read from this grader's package.
Every other exercise's function is replaced by the grader's own (:func:`_isolate`), so an exercise is graded
on its own when the instructor's installation grades a copy; a student who grades their own copy with their
own installation gets "needs exercise X first" where another exercise is not done yet.

The graded code runs in the grading process: the grader detects mistakes, not sabotage (a copy that edits
the checking code at run time from another module is not caught).  Grade copies you do not trust in a
sandbox.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .exercises import BY_ID, EXERCISES

GRADED = "graded_vitnp"                          # the package name the graded copy is imported under
CHECKING_CODE = ("selfcheck.py", "gradcheck.py")  # must equal the grader's own
TIMEOUT = 300                                    # seconds per exercise


def default_root() -> Path:
    """The project root of the installed vitnp (the directory that holds the ``vitnp`` package)."""
    return Path(__file__).resolve().parents[2]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _load_tree(root: Path):
    """Import ROOT/vitnp as the package ``graded_vitnp``."""
    package = root / "vitnp"
    spec = importlib.util.spec_from_file_location(GRADED, package / "__init__.py",
                                                  submodule_search_locations=[str(package)])
    if spec is None:
        raise ImportError(f"{package} is not a Python package")
    module = importlib.util.module_from_spec(spec)
    sys.modules[GRADED] = module
    spec.loader.exec_module(module)
    return module


def grade_one(root: Path, exercise) -> dict:
    """Run one exercise's checks on the tree at ``root`` in this process: {'passed', 'failure', 'checks'}."""
    from . import answers
    from ..gradcheck import MODEL_TOL, OP_TOL
    ours = Path(__file__).resolve().parents[1]
    for name in CHECKING_CODE:
        theirs = root / "vitnp" / name
        if not theirs.is_file() or _sha256(theirs) != _sha256(ours / name):
            return {"passed": False, "failure": f"vitnp/{name} differs from the course's: grading refused", "checks": 0}
    try:
        pkg = _load_tree(root)
        selfcheck = importlib.import_module(f"{GRADED}.selfcheck")
        _isolate(exercise)
    except Exception as err:                                       # a syntax error in the copy, say
        return {"passed": False, "failure": f"cannot import the graded copy: {type(err).__name__}: {err}",
                "checks": 0}
    cases = {name: (tol, fn) for name, tol, fn in selfcheck.cases()}
    stored = answers.load()
    done = 0
    for name in exercise.gradchecks:
        tol, fn = cases[name]
        assert tol in (OP_TOL, MODEL_TOL)
        try:
            worst = selfcheck.worst_error(fn())
        except Exception as err:
            return {"passed": False, "failure": f"{name}: {_describe(err, exercise)}", "checks": done}
        done += 1
        if not worst <= tol:
            return {"passed": False, "failure": f"{name}: relative error {worst:.1e} > {tol:.0e}", "checks": done}
    for name in exercise.answers:
        try:
            problem = answers.check(pkg, name, stored)
        except Exception as err:
            return {"passed": False, "failure": f"answer {name}: {_describe(err, exercise)}", "checks": done}
        done += 1
        if problem:
            return {"passed": False, "failure": f"answer {problem}", "checks": done}
    return {"passed": done > 0, "failure": None if done else "no check ran", "checks": done}


def _isolate(exercise) -> None:
    """In the graded copy, replace every exercise function but ``exercise``'s by the grader's own, wherever
    the copy's modules hold it (``from .linear import linear_backward`` makes a second reference), so that an
    exercise is graded on its own: a wrong linear_backward fails linear-backward, not msa-backward too."""
    for other in EXERCISES:
        if other.id == exercise.id:
            continue
        module = other.path[:-len(".py")].replace("/", ".")                      # vitnp.ops.linear
        theirs = getattr(importlib.import_module(GRADED + module[len("vitnp"):]), other.function)
        ours = getattr(importlib.import_module(module), other.function)
        for name, mod in list(sys.modules.items()):
            if name == GRADED or name.startswith(GRADED + "."):
                for attr, value in list(vars(mod).items()):
                    if value is theirs:
                        setattr(mod, attr, ours)


def _describe(err: BaseException, exercise=None) -> str:
    text = " ".join(str(err).split())
    if isinstance(err, NotImplementedError):
        other = text.split(":")[0].removeprefix("exercise ").strip() if text.startswith("exercise ") else None
        if exercise is not None and other and other != exercise.id:     # the grader's own copy is a stub too
            return f"needs exercise {other} first (this grader's copy of it is not done yet): {text}"
        return text
    return f"{type(err).__name__}: {text}"


def grade(root=None, ids=None, timeout=TIMEOUT) -> list:
    """[{id, where, points, passed, failure, seconds}] for the exercises ``ids`` (default all), each graded
    in its own subprocess on the tree at ``root`` (default: the installed package's)."""
    root = Path(root).resolve() if root is not None else default_root()
    if not (root / "vitnp" / "__init__.py").is_file():
        raise ValueError(f"{root}: no vitnp package here (expected {root / 'vitnp' / '__init__.py'})")
    unknown = [i for i in ids or () if i not in BY_ID]
    if unknown:
        raise ValueError(f"unknown exercise(s) {', '.join(unknown)}; known: {', '.join(BY_ID)}")
    rows = []
    for e in EXERCISES if not ids else [BY_ID[i] for i in ids]:
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "result.json"                # not stdout: the graded code may print anything
            try:
                p = subprocess.run([sys.executable, "-m", "vitnp.course.grade", "worker", str(root), e.id, str(out)],
                                   capture_output=True, text=True, timeout=timeout,
                                   cwd=str(Path(__file__).parents[2]))
                result = json.loads(out.read_text()) if p.returncode == 0 and out.is_file() else {
                    "passed": False, "failure": f"the check process stopped (exit {p.returncode}): "
                                                f"{(p.stderr.strip().splitlines() or ['no message'])[-1]}"}
            except subprocess.TimeoutExpired:
                result = {"passed": False, "failure": f"timed out after {timeout} s"}
            except (OSError, ValueError) as err:         # an unreadable or malformed result file
                result = {"passed": False, "failure": f"no result from the check process ({err})"}
        rows.append({"id": e.id, "where": e.where, "points": e.points, "passed": bool(result["passed"]),
                     "failure": result.get("failure"), "seconds": time.perf_counter() - t0})
    return rows


def format_table(rows) -> str:
    """``id | what | points | result | first failing check`` and the total."""
    head = f"{'id':<24} | {'what':<44} | {'points':>6} | {'result':<6} | first failing check"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['id']:<24} | {r['where']:<44} | {r['points']:>6} | {'pass' if r['passed'] else 'FAIL':<6} | "
                     f"{r['failure'] or ''}")
    got = sum(r["points"] for r in rows if r["passed"])
    total = sum(r["points"] for r in rows)
    passed = sum(r["passed"] for r in rows)
    lines.append(f"total: {got} / {total} points, {passed} of {len(rows)} exercises passed")
    return "\n".join(lines)


def main(argv=None) -> int:
    """``python -m vitnp.course.grade worker ROOT ID``: grade one exercise, print one JSON line."""
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m vitnp.course.grade")
    p.add_argument("mode", choices=["worker"])
    p.add_argument("root")
    p.add_argument("id", choices=list(BY_ID))
    p.add_argument("result", help="the JSON file to write the result to")
    args = p.parse_args(argv)
    result = grade_one(Path(args.root), BY_ID[args.id])
    Path(args.result).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
