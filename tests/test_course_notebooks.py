"""The exercises of the notebooks (issue 12): 2–5 per notebook, in nbgrader's format, cut out of the student edition
by vitnp's builder and by nbgrader's own ``generate_assignment``.

* Every notebook 01–09 has 2–5 exercises (05: up to 10, a derivation per section). An exercise is either a code
  cell whose model solution lies between nbgrader's markers, followed by a locked test cell with points, or a Markdown answer cell with points whose model
  answer lies between the markers. Ids are unique across the notebooks, each notebook's ``## Exercises`` cell lists
  its exercises with their points, and each .ipynb carries the same nbgrader metadata as its jupytext source.
* The student edition (:func:`vitnp.course.build.build`) has none of the solutions: no marker, no line that only a
  model answer has, nbgrader's stubs in their place, the cut cells' outputs cleared, the test cells unchanged, and the
  paired sources in ``notebooks/src`` cut the same way.
* When nbgrader is installed, its ``generate_assignment`` accepts two of the notebooks and releases them without the
  solutions.
* The checks fail on made-up notebooks that break them: an unclosed marker, exercises without points, a code exercise
  without its test, too few exercises, a wrong list, a marker outside a solution cell, an id used twice.
"""
import ast
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vitnp.course.build import build
from vitnp.course.markers import BEGIN, END, MarkerError, find_regions

nbformat = pytest.importorskip("nbformat")
jupytext = pytest.importorskip("jupytext")

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
NAMES = tuple(sorted(p.stem for p in (NB_DIR / "src").glob("0[1-9]_*.py")))     # 01 … 09 (10_ and up: not ours)
MOST = {"nb05-": 10}          # 05 asks for a derivation in each section: one exercise for each backward it teaches
LISTED = re.compile(r"\*\*Exercise (nb\d\d-[a-z0-9-]+)\*\* \((\d+) points?\)")

_spec = importlib.util.spec_from_file_location("notebooks_build", NB_DIR / "build.py")
nb_build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nb_build)


# ---- the checker ----------------------------------------------------------------------------------------------
def nbgrader_meta(cell):
    return (cell.get("metadata") or {}).get("nbgrader")


def exercises(nb, prefix):
    """({id: {'kind': 'code' | 'question', 'points', 'cell'}}, [problems]) of one notebook; prefix like 'nb03-'."""
    found, problems, ids = {}, [], set()
    cells = nb.cells
    for i, cell in enumerate(cells):
        meta = nbgrader_meta(cell)
        try:
            regions = find_regions(cell.source, f"cell {i}")
        except MarkerError as err:
            problems.append(str(err))
            regions = None
        marked = "BEGIN SOLUTION" in cell.source or "END SOLUTION" in cell.source   # nbgrader matches substrings
        if not (meta and meta.get("solution")):
            if marked:
                problems.append(f"cell {i}: solution markers outside an nbgrader solution cell")
            if meta:
                ids.add(meta.get("grade_id"))
            continue
        gid = meta.get("grade_id") or ""
        if meta.get("schema_version") != 3 or not gid.startswith(prefix) or gid in ids:
            problems.append(f"cell {i}: grade_id {gid!r} must be new, start with {prefix!r}, schema_version 3")
        ids.add(gid)
        if regions == []:
            problems.append(f"{gid}: a solution cell without a solution region")
        if cell.cell_type == "markdown":
            points = meta.get("points") if meta.get("grade") else None
            statement = cell.source
        else:
            test = cells[i + 1] if i + 1 < len(cells) else None
            tmeta = nbgrader_meta(test) if test is not None else None
            ok = (test is not None and test.cell_type == "code" and tmeta and tmeta.get("grade_id") == f"{gid}-test"
                  and tmeta.get("grade") and tmeta.get("locked") and not tmeta.get("solution")
                  and "assert" in test.source and not meta.get("grade"))
            if not ok:
                problems.append(f"{gid}: needs a locked test cell '{gid}-test' with asserts right after it")
            points = tmeta.get("points") if ok else None
            statement = cells[i - 1].source if i and cells[i - 1].cell_type == "markdown" else ""
        if not (isinstance(points, int) and points > 0):
            problems.append(f"{gid}: an exercise without points")
        if f"**Exercise {gid}** ({points} point" not in statement:
            problems.append(f"{gid}: its statement must start '**Exercise {gid}** ({points} points)'")
        found[gid] = {"kind": "question" if cell.cell_type == "markdown" else "code", "points": points, "cell": i}
    intro = [c.source for c in cells if c.cell_type == "markdown" and c.source.startswith("## Exercises")]
    later = [c for c in cells[next((i for i, c in enumerate(cells) if c.source.startswith("## Exercises")), 0) + 1:]
             if c.cell_type == "markdown" and c.source.startswith("## ")]
    if len(intro) != 1 or later:
        problems.append("the notebook must end with one '## Exercises' section")
    elif {gid: int(points) for gid, points in LISTED.findall(intro[0])} != {k: v["points"] for k, v in found.items()}:
        problems.append("the '## Exercises' cell must list every exercise with its points, and nothing else")
    most = MOST.get(prefix, 5)
    if not 2 <= len(found) <= most:
        problems.append(f"{len(found)} exercises; each notebook has 2–{most}")
    return found, problems


def answer_lines(nb):
    """Stripped lines that appear inside a solution region of ``nb`` and nowhere outside one: the model answers."""
    inside, outside = set(), set()
    for cell in nb.cells:
        lines = cell.source.split("\n")
        regions = find_regions(cell.source)
        within = {j for r in regions for j in range(r.begin + 1, r.end)}
        for j, line in enumerate(lines):
            (inside if j in within else outside).add(line.strip())
    return {line for line in inside - outside if len(line) > 3 and line not in ("#", '"""')}


def all_lines(sources):
    """Stripped lines of some cell sources, also without a Markdown cell's '# ' prefix (as in a percent source)."""
    out = set()
    for source in sources:
        for line in source.split("\n"):
            out |= {line.strip(), line.strip().removeprefix("# ").strip()}
    return out


# ---- 1. every notebook has 2–4 exercises, with points ------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_notebook_has_two_to_four_exercises_with_points(name):
    found, problems = exercises(nb_build.make_notebook(name), f"nb{name[:2]}-")
    assert not problems, problems
    kinds = {v["kind"] for v in found.values()}
    if name == "05_backprop":          # its code is written in vitnp/ops/ and graded there, never twice
        assert kinds == {"question"}, kinds
    else:
        assert "code" in kinds, f"{name}: no code exercise"


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_carries_the_sources_exercise_metadata(name):
    """build.stale() compares cell types and text only; the nbgrader metadata must reach the .ipynb too."""
    source = nb_build.make_notebook(name)
    committed = nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4)
    assert [nbgrader_meta(c) for c in committed.cells] == [nbgrader_meta(c) for c in source.cells]
    assert exercises(committed, f"nb{name[:2]}-") == exercises(source, f"nb{name[:2]}-")


def test_exercise_ids_are_unique_across_the_notebooks_and_mix_kinds():
    every = [(gid, v["kind"]) for name in NAMES for gid, v in exercises(nb_build.make_notebook(name),
                                                                          f"nb{name[:2]}-")[0].items()]
    ids = [gid for gid, _ in every]
    assert len(ids) == len(set(ids)) and len(NAMES) == 9
    assert sum(kind == "question" for _, kind in every) >= 9 and sum(kind == "code" for _, kind in every) >= 9


# ---- 4. the checker fails on broken notebooks ----------------------------------------------------------------------
def _md(source, **meta):
    return nbformat.v4.new_markdown_cell(source, metadata={"nbgrader": meta} if meta else {})


def _code(source, **meta):
    return nbformat.v4.new_code_cell(source, metadata={"nbgrader": meta} if meta else {})


def _good_cells():
    solution = dict(grade=False, grade_id="nb99-f", locked=False, schema_version=3, solution=True)
    test = dict(grade=True, grade_id="nb99-f-test", locked=True, points=2, schema_version=3, solution=False)
    question = dict(grade=True, grade_id="nb99-q-why", locked=False, points=1, schema_version=3, solution=True)
    return [_md("## Exercises\n\n* **Exercise nb99-f** (2 points) — f.\n"
                "* **Exercise nb99-q-why** (1 point) — why."),
            _md("**Exercise nb99-f** (2 points). Write f."),
            _code(f"def f():\n    {BEGIN}\n    return 1\n    {END}", **solution),
            _code("assert f() == 1", **test),
            _md(f"**Exercise nb99-q-why** (1 point). Why?\n\n{BEGIN}\nBecause.\n{END}", **question)]


def _problems(cells):
    return exercises(nbformat.v4.new_notebook(cells=cells), "nb99-")[1]


def test_the_checker_accepts_a_good_notebook_and_fails_broken_ones():
    assert _problems(_good_cells()) == []

    unclosed = _good_cells()
    unclosed[2].source = unclosed[2].source.replace(f"\n    {END}", "")
    assert any("never closed" in p for p in _problems(unclosed))

    no_points = _good_cells()
    del no_points[4].metadata["nbgrader"]["points"]
    assert any("nb99-q-why: an exercise without points" in p for p in _problems(no_points))

    test_without_points = _good_cells()
    del test_without_points[3].metadata["nbgrader"]["points"]
    assert any("nb99-f: an exercise without points" in p for p in _problems(test_without_points))

    no_test = _good_cells()
    del no_test[3]
    assert any("needs a locked test cell" in p for p in _problems(no_test))

    unlocked = _good_cells()
    unlocked[3].metadata["nbgrader"]["locked"] = False
    assert any("needs a locked test cell" in p for p in _problems(unlocked))

    one = _good_cells()[:4]
    one[0].source = "## Exercises\n\n* **Exercise nb99-f** (2 points) — f."
    assert any("1 exercises; each notebook has 2–5" in p for p in _problems(one))

    wrong_list = _good_cells()
    wrong_list[0].source = wrong_list[0].source.replace("(1 point)", "(3 points)")
    assert any("'## Exercises' cell must list" in p for p in _problems(wrong_list))

    stray = _good_cells() + [_code(f"x = 1\n{BEGIN}\nx = 2\n{END}")]
    assert any("outside an nbgrader solution cell" in p for p in _problems(stray))

    twice = _good_cells()
    twice[4].metadata["nbgrader"]["grade_id"] = "nb99-f"
    twice[4].source = twice[4].source.replace("nb99-q-why", "nb99-f")
    assert any("must be new" in p for p in _problems(twice))

    not_last = _good_cells() + [_md("## Appendix")]
    assert any("must end with one '## Exercises' section" in p for p in _problems(not_last))

    leaked = nbformat.v4.new_notebook(cells=_good_cells())
    assert "Because." in answer_lines(leaked) and "return 1" in answer_lines(leaked)


# ---- 2. the student edition has no solutions ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def student(tmp_path_factory):
    out = tmp_path_factory.mktemp("edition") / "student"
    build(out, ROOT)
    return out


# A few lines of model answers, written out, so that the generic check below is seen to look at the right things.
KNOWN_ANSWERS = {
    "01_patches": "i = (r // P) * (W // P) + c // P          # grid row, then grid column: row-major over the grid",
    "04_encoder_block": "$$12D^2 + 13D \\quad\\text{per block},$$",
    "05_backprop": "$\\partial a_j / \\partial s_i = a_j(\\delta_{ij} - a_i)$. The Jacobian is",
    "07_what_vit_learns": "$$R = 2^{-L} I + \\big(1 - 2^{-L}\\big)\\,U ,$$",
    "09_finetune_and_transfer": "pred_3x3 = [7, 0, 0.5, 1, 1, 1.5, 2, 2, 2.5, 3]",
}


@pytest.mark.parametrize("name", NAMES)
def test_student_edition_has_no_solutions(student, name):
    teacher = nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4)
    cut_nb = nbformat.read(student / "notebooks" / f"{name}.ipynb", as_version=4)
    paired = jupytext.read(student / "notebooks" / "src" / f"{name}.py")
    assert len(cut_nb.cells) == len(teacher.cells)
    assert [(c.cell_type, c.source) for c in paired.cells] == [(c.cell_type, c.source) for c in cut_nb.cells]

    secrets = answer_lines(teacher)
    assert secrets
    if name in KNOWN_ANSWERS:
        assert KNOWN_ANSWERS[name].strip() in secrets
    raw_py = (student / "notebooks" / "src" / f"{name}.py").read_text(encoding="utf-8")
    for text in (all_lines(c.source for c in cut_nb.cells), all_lines(raw_py.split("\n"))):
        assert not secrets & text, sorted(secrets & text)[:3]
        assert not any(line.endswith(("BEGIN SOLUTION", "END SOLUTION")) for line in text)

    found, _ = exercises(teacher, f"nb{name[:2]}-")
    for gid, ex in found.items():
        cell = cut_nb.cells[ex["cell"]]
        if ex["kind"] == "code":
            assert "# YOUR CODE HERE" in cell.source and "raise NotImplementedError()" in cell.source, gid
            assert cell.outputs == [] and cell.execution_count is None, gid
            assert cut_nb.cells[ex["cell"] + 1].source == teacher.cells[ex["cell"] + 1].source   # the test stays
        else:
            assert "YOUR ANSWER HERE" in cell.source and f"**Exercise {gid}**" in cell.source, gid
        assert nbgrader_meta(cell) == nbgrader_meta(teacher.cells[ex["cell"]])
    assert "YOUR CODE HERE" in raw_py or {ex["kind"] for ex in found.values()} == {"question"}


# ---- 3. nbgrader's generate_assignment -----------------------------------------------------------------------------
def test_nbgrader_generate_assignment_releases_them_without_solutions(tmp_path):
    pytest.importorskip("nbgrader")
    course = tmp_path / "course"
    source = course / "source" / "ps"
    source.mkdir(parents=True)
    names = ("05_backprop", "09_finetune_and_transfer")              # 05: written answers only; 09: both kinds
    for name in names:
        shutil.copy(NB_DIR / f"{name}.ipynb", source / f"{name}.ipynb")
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    run = subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", "ps", "--force"], cwd=course,
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    for name in names:
        teacher = nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4)
        released = nbformat.read(course / "release" / "ps" / f"{name}.ipynb", as_version=4)
        text = "\n".join(c.source for c in released.cells)
        assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
        assert ("YOUR CODE HERE" in text or name == "05_backprop") and "YOUR ANSWER HERE" in text
        assert not answer_lines(teacher) & all_lines(c.source for c in released.cells)
        found, _ = exercises(teacher, f"nb{name[:2]}-")
        tests = [c.source for c in teacher.cells if (nbgrader_meta(c) or {}).get("locked")]
        assert (tests or name == "05_backprop") and all(t in [c.source for c in released.cells] for t in tests)
        assert len(found) == sum("YOUR CODE HERE" in c.source or "YOUR ANSWER HERE" in c.source for c in released.cells)


def test_the_builder_uses_nbgraders_stubs():
    """vitnp's builder writes nbgrader's own stubs (ClearSolutions' defaults), so both student editions read alike."""
    from vitnp.course.build import NOTEBOOK_CODE_STUB, NOTEBOOK_TEXT_STUB, cut_notebook
    nb = nbformat.v4.new_notebook(cells=_good_cells())
    assert cut_notebook(nb) == 2
    assert nb.cells[2].source == "def f():\n    " + "\n    ".join(NOTEBOOK_CODE_STUB)
    assert nb.cells[4].source == "**Exercise nb99-q-why** (1 point). Why?\n\n" + "\n".join(NOTEBOOK_TEXT_STUB)
    clear = pytest.importorskip("nbgrader.preprocessors").ClearSolutions()
    assert "\n".join(NOTEBOOK_CODE_STUB) == clear.code_stub["python"]
    assert "\n".join(NOTEBOOK_TEXT_STUB) == clear.text_stub


# ---- 4. a test cell whose exercise is not done yet -------------------------------------------------------------
def test_the_test_cell_of_an_exercise_not_done_names_it(tmp_path):
    """Run notebook 01 of the student edition: each code exercise's test cell stops with ExerciseNotDone naming the
    exercise and what to do, not a bare NotImplementedError (or NameError)."""
    from nbclient import NotebookClient
    student = tmp_path / "student"
    build(student, ROOT)
    nb = nbformat.read(student / "notebooks" / "01_patches.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(student / "notebooks")}}).execute()
    found, _ = exercises(nbformat.read(NB_DIR / "01_patches.ipynb", as_version=4), "nb01-")
    codes = [gid for gid, ex in found.items() if ex["kind"] == "code"]
    assert codes
    for gid in codes:
        test = nb.cells[found[gid]["cell"] + 1]
        errors = [o for o in test.outputs if o.output_type == "error"]
        assert errors and errors[0].ename == "ExerciseNotDone", (gid, test.outputs)
        assert f"exercise {gid} is not done yet" in errors[0].evalue and "cell above" in errors[0].evalue


def test_exercise_context_words_each_case():
    from vitnp.course.notebook import ExerciseNotDone, exercise
    with exercise("nb99-x"):
        pass
    for raised, expected in ((NotImplementedError(), "exercise nb99-x is not done yet"),
                             (NameError("name 'f' is not defined"), "not done yet (name 'f' is not defined)"),
                             (NotImplementedError("exercise linear-backward: return dx"),
                              "needs a code exercise of vitnp/ first: exercise linear-backward")):
        with pytest.raises(ExerciseNotDone, match=re.escape(expected)):
            with exercise("nb99-x"):
                raise raised
    with pytest.raises(ValueError):                      # anything else is the student's bug, shown as it is
        with exercise("nb99-x"):
            raise ValueError("wrong")


# ---- 5. each code exercise sits in the session that teaches it ---------------------------------------------------
TRACE = '''
import importlib, sys as _sys
from vitnp.course.exercises import EXERCISES as _EXERCISES
_CALLED = set()
for _e in _EXERCISES:
    _orig = getattr(importlib.import_module(_e.path[:-3].replace("/", ".")), _e.function)
    def _traced(*a, _o=_orig, _id=_e.id, **k):
        _CALLED.add(_id)
        return _o(*a, **k)
    for _m in list(_sys.modules.values()):
        if getattr(_m, "__name__", "").startswith("vitnp"):
            for _n, _v in list(vars(_m).items()):
                if _v is _orig:
                    setattr(_m, _n, _traced)
'''
SESSION_OF_NOTEBOOK = {"01": 1, "02": 1, "03": 2, "04": 3}


def test_no_notebook_calls_a_code_exercise_of_a_later_session(monkeypatch):
    """Run notebooks 01–04 (fast mode) with every exercise function traced: each calls only the code exercises that
    docs/course.md places in its session or before (05 and later need them all). The trace is checked to see calls."""
    from nbclient import NotebookClient
    from vitnp.course.exercises import EXERCISES
    monkeypatch.setenv("VITNP_FAST", "1")
    text = (ROOT / "docs" / "course.md").read_text(encoding="utf-8")
    session = {m.group(1): int(m.group(2)) for m in re.finditer(r"^\| `([a-z-]+)` \| `vitnp/[^`]+` \| \d+ \| (\d) \|$",
                                                                  text, re.M)}
    assert set(session) == {e.id for e in EXERCISES}
    seen = set()
    for name in [n for n in NAMES if n[:2] in SESSION_OF_NOTEBOOK]:
        nb = nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4)
        first = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
        nb.cells.insert(first, nbformat.v4.new_code_cell(TRACE))
        nb.cells.append(nbformat.v4.new_code_cell("print(sorted(_CALLED))"))
        NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NB_DIR)}}).execute()
        called = set(ast.literal_eval(nb.cells[-1].outputs[0]["text"]))
        late = {e for e in called if session[e] > SESSION_OF_NOTEBOOK[name[:2]]}
        assert not late, f"{name} calls exercises of later sessions: {sorted(late)}"
        seen |= called
    assert {"patchify-backward", "embed-forward", "vit-forward"} <= seen      # the trace does see calls
