"""Notebook 10, the bug zoo (instructor-only: ``course build`` withholds this file, which names the mistakes).

* eight exhibits, each a Markdown question with nbgrader metadata (neutral ids ``nb10-exhibit-N``, points) right after
  the code cell that shows its symptom, the model answer between the solution markers;
* the student edition keeps the questions and symptoms, cuts the answers, and names no mistake anywhere: not in ids,
  function names, headings, printed labels or outputs (a planted giveaway fails the check);
* no exhibit copies a graded exercise (the copies are of given functions);
* each exhibit's copy, taken from the notebook's source, is told apart from the vitnp function by its check
  (the notebook asserts the same when CI executes it; here the copies run on fresh inputs).
"""
import ast
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import vitnp
from vitnp.course.exercises import EXERCISES
from vitnp.course.markers import BEGIN, END, find_regions
from vitnp.gradcheck import MODEL_TOL, OP_TOL, check_pair, rel_error
from vitnp.ops.block import BLOCK_KEYS, encoder_backward, encoder_forward
from vitnp.ops.conv import maxpool_backward, maxpool_forward
from vitnp.ops.gelu import gelu_backward, gelu_forward
from vitnp.ops.mlp import mlp_forward
from vitnp.ops.attention import msa_forward
from vitnp.ops.patches import patchify_forward
from vitnp.optim import AdamW
from vitnp.selfcheck import tiny_config

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
NAME = "10_bug_zoo"
EXHIBITS = 8
# Words that would name a mistake (or its fix) in the student edition.
GIVEAWAYS = ("diagonal", "cubed", "no_skip", "residual-dropped", "nhwc", "nchw", "frozen", "train_flag", "no_out",
             "decays-all", "dropout-at-test", "average pooling", "reversed(", "x ** 3", "argmax")
COPIES = ("maxpool_backward_copy", "gelu_tanh_forward_copy", "encoder_backward_copy", "mlp_forward_copy",
          "msa_forward_copy", "patchify_forward_copy", "vit_backward_copy", "adamw_step")


def _is_answer(cell) -> bool:
    return bool(cell.metadata.get("nbgrader", {}).get("solution"))


@pytest.fixture(scope="module")
def notebook():
    nbformat = pytest.importorskip("nbformat")
    return nbformat.read(NB_DIR / f"{NAME}.ipynb", as_version=4)


def test_every_exhibit_has_a_graded_question_after_its_symptom(notebook):
    cells = notebook.cells
    answers = [i for i, c in enumerate(cells) if _is_answer(c)]
    ids = [cells[i].metadata["nbgrader"]["grade_id"] for i in answers]
    assert ids == [f"nb10-exhibit-{n}" for n in range(1, EXHIBITS + 1)], ids
    for i in answers:
        cell, meta = cells[i], cells[i].metadata["nbgrader"]
        where = meta["grade_id"]
        assert cell.cell_type == "markdown", where
        assert meta["grade"] is True and meta["points"] > 0 and meta["schema_version"] == 3 and meta["locked"] is False
        regions = find_regions(cell.source, where)
        assert len(regions) == 1, where
        lines = cell.source.split("\n")
        question = " ".join(" ".join(lines[:regions[0].begin]).split()).lower()
        answer = "\n".join(lines[regions[0].begin + 1:regions[0].end])
        assert f"**exercise {where}** (" in question and "?" in question, where
        assert "which line" in question or "where" in question, where
        assert len(answer.split()) >= 40, f"{where}: the model answer is too short"
        symptom = cells[i - 1]                         # the check comes right before the question
        assert symptom.cell_type == "code" and "assert" in symptom.source, where
        assert "with the copy" in "".join(o.get("text", "") for o in symptom.get("outputs", [])), where
    for cell in cells:
        if not _is_answer(cell):
            assert "BEGIN SOLUTION" not in cell.source and "END SOLUTION" not in cell.source


def _student_text(root: Path) -> str:
    """Everything a student sees of notebook 10: cells and outputs of the .ipynb, and the paired source."""
    import nbformat
    nb = nbformat.read(root / "notebooks" / f"{NAME}.ipynb", as_version=4)
    parts = [c.source for c in nb.cells]
    parts += [str(o.get("text", "")) + str((o.get("data") or {}).get("text/plain", "")) for c in nb.cells
              for o in c.get("outputs", [])]
    return "\n".join(parts + [(root / "notebooks" / "src" / f"{NAME}.py").read_text(encoding="utf-8")]).lower()


def _giveaways(text: str) -> list:
    return [w for w in GIVEAWAYS if w in text]


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    pytest.importorskip("jupytext")
    from vitnp.course.build import build
    out = tmp_path_factory.mktemp("edition") / "student"
    build(out, ROOT)
    return out


def test_student_edition_keeps_questions_and_symptoms_and_names_no_mistake(student, tmp_path):
    import nbformat
    teacher = nbformat.read(NB_DIR / f"{NAME}.ipynb", as_version=4)
    pupil = nbformat.read(student / "notebooks" / f"{NAME}.ipynb", as_version=4)
    assert len(pupil.cells) == len(teacher.cells)
    for t, s in zip(teacher.cells, pupil.cells):
        if not _is_answer(t):
            assert s.source == t.source
            if t.cell_type == "code":
                assert s.get("outputs") == t.get("outputs")          # the symptoms stay visible
            continue
        region = find_regions(t.source)[0]
        assert s.source.split("\n")[:region.begin] == t.source.split("\n")[:region.begin]   # the question is kept
        assert "YOUR ANSWER HERE" in s.source and BEGIN not in s.source and END not in s.source
    assert not _giveaways(_student_text(student))
    assert not (student / "tests" / "test_course_bug_zoo.py").exists() and not (student / "docs" / "instructor.md").exists()
    # the check can fail: a heading that names the mistake is found
    planted = tmp_path / "planted"
    shutil.copytree(student / "notebooks", planted / "notebooks")
    src = planted / "notebooks" / "src" / f"{NAME}.py"
    src.write_text(src.read_text(encoding="utf-8").replace("# ## Exhibit 1. Max-pooling's backward",
                                                           "# ## Exhibit 1. Max-pooling's backward (average pooling)"))
    assert _giveaways(_student_text(planted)) == ["average pooling"]


def test_nbgrader_generate_assignment_releases_questions_without_answers(tmp_path):
    pytest.importorskip("nbgrader")
    import nbformat
    course = tmp_path / "course"
    (course / "source" / "zoo").mkdir(parents=True)
    shutil.copy(NB_DIR / f"{NAME}.ipynb", course / "source" / "zoo" / f"{NAME}.ipynb")
    p = subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", "zoo",
                        f"--CourseDirectory.root={course}"], capture_output=True, text=True, cwd=course, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    released = nbformat.read(course / "release" / "zoo" / f"{NAME}.ipynb", as_version=4)
    teacher = nbformat.read(NB_DIR / f"{NAME}.ipynb", as_version=4)
    answers = [(t, r) for t, r in zip(teacher.cells, released.cells) if _is_answer(t)]
    assert len(answers) == EXHIBITS
    for t, r in answers:
        assert "YOUR ANSWER HERE" in r.source and "BEGIN SOLUTION" not in r.source
        assert t.source.split("\n")[0] == r.source.split("\n")[0]                # the question is kept


# ---- the copies, from the notebook's source -----------------------------------------------------------------------
def _copies() -> dict:
    """The exhibits' functions, compiled from notebooks/src/10_bug_zoo.py with the notebook's imports."""
    source = (NB_DIR / "src" / f"{NAME}.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    keep = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))
            or (isinstance(n, ast.FunctionDef) and n.name in COPIES)]
    namespace = {}
    exec(compile(ast.Module(body=keep, type_ignores=[]), str(NB_DIR / "src" / f"{NAME}.py"), "exec"), namespace)
    return {name: namespace[name] for name in COPIES}


COPY = _copies()
rng = np.random.default_rng(7)


def test_no_exhibit_copies_a_graded_exercise():
    graded = {e.function for e in EXERCISES}
    assert not {name.removesuffix("_copy") for name in COPIES} & graded


def test_exhibit_1_maxpool_backward_is_caught():
    x = {"x": rng.standard_normal((2, 6, 4, 3))}
    assert check_pair(maxpool_forward, COPY["maxpool_backward_copy"], x)["x"] > 1e-2
    assert check_pair(maxpool_forward, maxpool_backward, x)["x"] < OP_TOL


def test_exhibit_2_gelu_forward_is_caught_more_at_scale_2():
    errors = []
    for scale in (2.0, 0.1):
        x = {"x": scale * rng.standard_normal((4, 6))}
        errors.append(check_pair(COPY["gelu_tanh_forward_copy"], gelu_backward, x)["x"])
        assert check_pair(gelu_forward, gelu_backward, x, kwargs={"approximate": "tanh"})["x"] < OP_TOL
    assert errors[0] > 1e-2 and OP_TOL < errors[1] < errors[0] / 10


def test_exhibit_3_encoder_backward_is_caught_with_two_blocks():
    D, heads = 6, 2
    blocks = [{k: 0.5 * rng.standard_normal(s) + (1.0 if "gamma" in k else 0.0) for k, s in
               {"ln1.gamma": (D,), "ln1.beta": (D,), "U_qkv": (D, 3 * D), "U_qkv_bias": (3 * D,), "U_msa": (D, D),
                "U_msa_bias": (D,), "ln2.gamma": (D,), "ln2.beta": (D,), "mlp.W1": (D, 8), "mlp.b1": (8,),
                "mlp.W2": (8, D), "mlp.b2": (D,)}.items()} for _ in range(2)]
    z, g = rng.standard_normal((2, 4, D)), rng.standard_normal((2, 4, D))
    _, _, caches = encoder_forward(z, blocks, heads)
    dz_copy, grads_copy = COPY["encoder_backward_copy"](g, caches)
    dz_ref, grads_ref = encoder_backward(g, caches)
    assert rel_error(dz_copy, dz_ref) > 1e-2 and rel_error(grads_copy[0]["U_qkv"], grads_ref[0]["U_qkv"]) > 1e-2
    one = COPY["encoder_backward_copy"](g, caches[:1])                 # with one block the mistake is invisible
    assert rel_error(one[0], encoder_backward(g, caches[:1])[0]) < MODEL_TOL
    assert all(k in BLOCK_KEYS for k in grads_copy[0])


def test_exhibit_4_mlp_forward_differs_between_two_evaluations():
    args = [rng.standard_normal(s) for s in ((2, 3, 4), (4, 7), (7,), (7, 4), (4,))]
    gen = np.random.default_rng(0)
    a, b = (COPY["mlp_forward_copy"](*args, dropout=0.3, rng=gen, train=False)[0] for _ in range(2))
    assert np.abs(a - b).max() > 1e-2
    assert np.array_equal(mlp_forward(*args, dropout=0.3, rng=gen, train=False)[0], mlp_forward(*args)[0])


def test_exhibit_5_msa_forward_differs_from_the_reference():
    args = [rng.standard_normal(s) for s in ((2, 5, 6), (6, 18), (18,), (6, 6), (6,))]
    assert rel_error(COPY["msa_forward_copy"](*args, heads=2)[0], msa_forward(*args, heads=2)[0]) > 1e-2


def test_exhibit_6_patchify_forward_differs_only_with_several_channels():
    for C, differs in ((3, True), (1, False)):
        x = rng.standard_normal((2, 6, 4, C))
        d = np.abs(COPY["patchify_forward_copy"](x, 2)[0] - patchify_forward(x, 2)[0]).max()
        assert (d > 1e-2) if differs else d == 0.0


def test_exhibit_7_vit_backward_leaves_parameters_without_gradients():
    cfg = tiny_config()
    params = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in vitnp.init_params(cfg, seed=0).items()}
    logits, cache = vitnp.vit_forward(params, rng.standard_normal((3, *cfg.hw, cfg.in_channels)), cfg)
    grads = COPY["vit_backward_copy"](rng.standard_normal(logits.shape), cache)
    assert sorted(set(params) - set(grads)) == ["E_pos", "x_class"]
    with pytest.raises(ValueError, match="missing"):
        AdamW({k: v.copy() for k, v in params.items()}, lr=1e-3).step(params, grads)


def test_exhibit_8_adamw_step_moves_gamma_with_zero_gradients():
    params = {"W": rng.standard_normal((3, 3)), "ln.gamma": 1 + rng.standard_normal(3)}
    zero = {k: np.zeros_like(v) for k, v in params.items()}
    ours = {k: v.copy() for k, v in params.items()}
    COPY["adamw_step"](ours, zero, {k: 0 * v for k, v in zero.items()}, {k: 0 * v for k, v in zero.items()}, t=1,
                       lr=0.01, weight_decay=0.1)
    theirs = {k: v.copy() for k, v in params.items()}
    AdamW(theirs, lr=0.01, weight_decay=0.1).step(theirs, zero)
    assert np.abs(ours["ln.gamma"] - params["ln.gamma"]).max() > 1e-4
    assert np.array_equal(theirs["ln.gamma"], params["ln.gamma"])
    assert rel_error(ours["W"], theirs["W"]) < 1e-12
