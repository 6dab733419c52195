"""Notebook 10 (the bug zoo), the annotated Fig 1 and the course guide docs/course.md.

* the bug zoo has at least 8 "find the bug" questions, each a Markdown cell with nbgrader metadata (distinct grade ids,
  points) right after the code cell that shows the failing check, its model answer between the solution markers and
  the question outside them; the student edition (``vitnp.course.build.build``) cuts the answers and keeps the rest;
  nbgrader's ``generate_assignment`` releases it without the answers (when nbgrader is installed: the ``course`` extra);
* a notebook cannot be imported, so some of the planted bugs are planted again here, and our checks must catch them
  while passing the reference (the notebook asserts the same for all eight when CI executes it);
* every label of scripts/fig1_diagram.py names a real parameter, module function and notebook, and the script draws;
* docs/course.md links the figure, names every notebook, every code exercise and every notebook exercise.
"""
import ast
import importlib.util
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import vitnp
from vitnp.course.exercises import EXERCISES
from vitnp.course.markers import BEGIN, END, find_regions
from vitnp.gradcheck import MODEL_TOL, OP_TOL, check_pair
from vitnp.ops.block import BLOCK_KEYS, encoder_block_backward, encoder_block_forward
from vitnp.ops.dropout import dropout_backward, dropout_forward
from vitnp.ops.gelu import gelu_backward, gelu_forward
from vitnp.ops.layernorm import layernorm_backward
from vitnp.ops.linear import linear_forward
from vitnp.ops.attention import msa_backward
from vitnp.ops.mlp import mlp_backward, mlp_forward
from vitnp.ops.patches import patchify_forward
from vitnp.ops.softmax import softmax_backward, softmax_forward
from vitnp.optim import AdamW, decays
from vitnp.selfcheck import tiny_config

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
NAME = "10_bug_zoo"
MIN_BUGS = 8


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fig1 = _load("fig1_diagram", ROOT / "scripts" / "fig1_diagram.py")


def _is_answer(cell) -> bool:
    return bool(cell.metadata.get("nbgrader", {}).get("solution"))


# ---- the notebook's questions --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def notebook():
    pytest.importorskip("jupytext")
    build = _load("notebooks_build", NB_DIR / "build.py")
    return build.make_notebook(NAME)


def test_every_bug_has_a_graded_question_after_its_symptom(notebook):
    cells = notebook.cells
    answers = [i for i, c in enumerate(cells) if _is_answer(c)]
    assert len(answers) >= MIN_BUGS, f"{len(answers)} answer cells, expected at least {MIN_BUGS}"
    ids = [cells[i].metadata["nbgrader"]["grade_id"] for i in answers]
    assert len(set(ids)) == len(ids), f"grade ids repeat: {ids}"
    for i in answers:
        cell, meta = cells[i], cells[i].metadata["nbgrader"]
        where = meta["grade_id"]
        assert where.startswith("nb10-"), where
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
        symptom = cells[i - 1]                         # the failing check comes right before the question
        assert symptom.cell_type == "code" and "assert" in symptom.source, where


def test_no_code_cell_carries_solution_markers(notebook):
    """nbgrader refuses a solution region outside a solution cell; our builder would cut it as code."""
    for cell in notebook.cells:
        if not _is_answer(cell):
            assert "BEGIN SOLUTION" not in cell.source and "END SOLUTION" not in cell.source


def test_committed_notebook_shows_each_symptom():
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NB_DIR / f"{NAME}.ipynb", as_version=4)
    answers = [i for i, c in enumerate(nb.cells) if _is_answer(c)]
    for i in answers:
        text = "".join(o.get("text", "") for o in nb.cells[i - 1].get("outputs", []))
        assert "with the bug" in text, f"the cell before {nb.cells[i].metadata['nbgrader']['grade_id']} shows no symptom"


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    pytest.importorskip("jupytext")
    from vitnp.course.build import build
    out = tmp_path_factory.mktemp("edition") / "student"
    build(out, ROOT)
    return out


def test_student_edition_cuts_the_answers_and_keeps_questions_and_symptoms(student):
    import nbformat
    teacher = nbformat.read(NB_DIR / f"{NAME}.ipynb", as_version=4)
    pupil = nbformat.read(student / "notebooks" / f"{NAME}.ipynb", as_version=4)
    assert len(pupil.cells) == len(teacher.cells)
    cut = 0
    for t, s in zip(teacher.cells, pupil.cells):
        if not _is_answer(t):
            assert s.source == t.source
            if t.cell_type == "code":
                assert s.get("outputs") == t.get("outputs")          # the symptoms stay visible
            continue
        region = find_regions(t.source)[0]
        lines = t.source.split("\n")
        answer = [line for line in lines[region.begin + 1:region.end] if line.strip()]
        assert s.source.split("\n")[:region.begin] == lines[:region.begin]      # the question is kept
        assert "YOUR ANSWER HERE" in s.source and BEGIN not in s.source and END not in s.source
        assert not any(line in s.source for line in answer)
        cut += 1
    assert cut >= MIN_BUGS
    source = (student / "notebooks" / "src" / f"{NAME}.py").read_text(encoding="utf-8")
    assert "BEGIN SOLUTION" not in source and source.count("YOUR ANSWER HERE") == cut


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
    assert len(answers) >= MIN_BUGS
    for t, r in answers:
        assert "YOUR ANSWER HERE" in r.source and "BEGIN SOLUTION" not in r.source
        assert t.source.split("\n")[0] == r.source.split("\n")[0]                # the question is kept


# ---- the bugs, planted again: our checks must catch them -----------------------------------------------------------
rng = np.random.default_rng(1)


def _softmax_backward_diagonal(dy, cache):
    y, axis = cache
    return dy * y * (1 - y)


def test_softmax_backward_with_only_the_diagonal_is_caught():
    x = {"x": 3 * rng.standard_normal((2, 3, 5))}
    assert check_pair(softmax_forward, _softmax_backward_diagonal, x)["x"] > 1e-2
    assert check_pair(softmax_forward, softmax_backward, x)["x"] < OP_TOL


def _gelu_backward_cubed(dout, cache):
    x, _ = cache
    c = math.sqrt(2 / math.pi)
    T = np.tanh(c * (x + 0.044715 * x ** 3))
    return dout * (0.5 * (1 + T) + 0.5 * x * (1 - T ** 2) * c * (1 + 3 * 0.044715 * x ** 3))


def test_gelu_derivative_with_x_cubed_is_caught():
    x = {"x": 2 * rng.standard_normal((4, 6))}
    kw = {"approximate": "tanh"}
    assert check_pair(gelu_forward, _gelu_backward_cubed, x, kwargs=kw)["x"] > 1e-2
    assert check_pair(gelu_forward, gelu_backward, x, kwargs=kw)["x"] < OP_TOL


def _block_backward_without_the_mlp_residual(dout, cache):
    c_ln1, c_msa, c_drop, c_ln2, c_mlp = cache
    g = {}
    dm, g["mlp.W1"], g["mlp.b1"], g["mlp.W2"], g["mlp.b2"] = mlp_backward(dout, c_mlp)
    dm, g["ln2.gamma"], g["ln2.beta"] = layernorm_backward(dm, c_ln2)
    dz1 = dm                                                      # should be dout + dm
    da = dropout_backward(dz1, c_drop)
    da, g["U_qkv"], g["U_qkv_bias"], g["U_msa"], g["U_msa_bias"] = msa_backward(da, c_msa)
    da, g["ln1.gamma"], g["ln1.beta"] = layernorm_backward(da, c_ln1)
    return dz1 + da, g


def test_dropped_residual_gradient_is_caught_where_it_is():
    D, M = 6, 10
    arrays = {"z": rng.standard_normal((2, 4, D))}
    for k in BLOCK_KEYS:
        shape = {"U_qkv": (D, 3 * D), "U_qkv_bias": (3 * D,), "U_msa": (D, D), "mlp.W1": (D, M), "mlp.b1": (M,),
                 "mlp.W2": (M, D)}.get(k, (D,))
        arrays[k] = 0.5 * rng.standard_normal(shape) + (1.0 if k.endswith("gamma") else 0.0)

    def forward(z, *p):
        return encoder_block_forward(z, dict(zip(BLOCK_KEYS, p)), 2)

    def as_tuple(backward):
        return lambda dout, cache: (lambda dz, g: (dz, *(g[k] for k in BLOCK_KEYS)))(*backward(dout, cache))

    broken = check_pair(forward, as_tuple(_block_backward_without_the_mlp_residual), arrays)
    assert broken["z"] > 1e-2 and broken["U_qkv"] > 1e-2
    assert max(broken[k] for k in ("mlp.W1", "mlp.W2", "ln2.gamma")) < MODEL_TOL   # computed before the faulty line
    assert max(check_pair(forward, as_tuple(encoder_block_backward), arrays).values()) < MODEL_TOL


def _mlp_forward_without_train(x, W1, b1, W2, b2, gelu="exact", dropout=0.0, rng=None, train=False):
    h, _ = linear_forward(x, W1, b1)
    h, _ = gelu_forward(h, gelu)
    h, _ = dropout_forward(h, dropout, rng)                        # train not passed: dropout_forward's default is True
    out, _ = linear_forward(h, W2, b2)
    return dropout_forward(out, dropout, rng)[0], None


def test_dropout_left_on_at_test_time_changes_the_evaluation():
    args = [rng.standard_normal(s) for s in ((2, 3, 4), (4, 7), (7,), (7, 4), (4,))]
    gen = np.random.default_rng(0)
    bug = [_mlp_forward_without_train(*args, dropout=0.3, rng=gen, train=False)[0] for _ in range(2)]
    ref = [mlp_forward(*args, dropout=0.3, rng=gen, train=False)[0] for _ in range(2)]
    assert np.abs(bug[0] - bug[1]).max() > 1e-2
    assert np.array_equal(ref[0], ref[1]) and np.array_equal(ref[0], mlp_forward(*args)[0])


def _patchify_nchw(x, P):
    B, H, W, C = x.shape
    x_p = x.reshape(B, C, H // P, P, W // P, P).transpose(0, 2, 4, 3, 5, 1)
    return x_p.reshape(B, -1, P * P * C)


def test_channels_last_images_read_as_channels_first_are_caught_with_several_channels():
    colour, grey = rng.standard_normal((2, 6, 4, 3)), rng.standard_normal((2, 6, 4, 1))
    assert np.abs(_patchify_nchw(colour, 2) - patchify_forward(colour, 2)[0]).max() > 1e-2
    assert np.array_equal(_patchify_nchw(grey, 2), patchify_forward(grey, 2)[0])     # invisible with one channel


def _params_and_grads():
    cfg = tiny_config()
    params = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in vitnp.init_params(cfg, seed=0).items()}
    logits, cache = vitnp.vit_forward(params, rng.standard_normal((3, *cfg.hw, cfg.in_channels)), cfg)
    return params, vitnp.vit_backward(rng.standard_normal(logits.shape), cache)


def _adamw_decaying_everything(params, grads, lr, weight_decay, betas=(0.9, 0.999), eps=1e-8):
    b1, b2 = betas
    for name, p in params.items():
        p *= 1.0 - lr * weight_decay                              # should be: only where decays(name, p)
        m, v = (1 - b1) * grads[name], (1 - b2) * grads[name] ** 2
        p -= lr * (m / (1 - b1)) / (np.sqrt(v / (1 - b2)) + eps)


def test_adamw_that_decays_layernorm_gamma_is_caught():
    params, grads = _params_and_grads()
    ours = {k: v.copy() for k, v in params.items()}
    theirs = {k: v.copy() for k, v in params.items()}
    _adamw_decaying_everything(ours, grads, lr=0.01, weight_decay=0.1)
    AdamW(theirs, lr=0.01, weight_decay=0.1).step(theirs, grads)
    for k in params:
        diff = np.abs(ours[k] - theirs[k]).max()
        if decays(k, params[k]):
            assert diff < 1e-12, k
        else:
            assert diff > 1e-5, k                                   # γ, β, biases, x_class, E_pos must not decay
    assert not decays("blocks.0.ln1.gamma", params["blocks.0.ln1.gamma"])


def test_gradients_missing_the_class_token_and_position_embedding_are_refused():
    params, grads = _params_and_grads()
    assert np.abs(grads["x_class"]).max() > 0 and np.abs(grads["E_pos"]).max() > 0
    frozen = {k: v for k, v in grads.items() if k not in ("x_class", "E_pos")}
    with pytest.raises(ValueError, match=r"missing \['E_pos', 'x_class'\]"):
        AdamW(params, lr=1e-3).step(params, frozen)


# ---- the annotated Fig 1 ---------------------------------------------------------------------------------------------
def _functions(path: Path) -> set:
    return {n.name for n in ast.parse(path.read_text(encoding="utf-8")).body if isinstance(n, ast.FunctionDef)}


def test_fig1_labels_name_real_parameters_functions_and_notebooks():
    shapes = vitnp.param_shapes(tiny_config())
    named = set()
    for step in fig1.PIPELINE + fig1.ENCODER:
        for p in step["params"]:
            name = p.split()[0].replace("{l}", "0")
            if name.endswith(".*"):
                assert any(k.startswith(name[:-1]) for k in shapes), p
            else:
                assert name in shapes, f"{step['name']}: no parameter {name!r}"
                named.add(name)
        for where in step["code"]:
            path, function = where.split(": ")
            assert function in _functions(ROOT / path), f"{step['name']}: no function {function} in {path}"
        assert (NB_DIR / "src" / f"{step['notebook']}.py").is_file(), step["notebook"]
    block0 = {k for k in shapes if not k.startswith("blocks.") or k.startswith("blocks.0.")}
    assert named == block0, f"parameters not in the figure: {sorted(block0 - named)}"
    assert [s["name"] for s in fig1.ENCODER] == ["Norm", "Multi-Head Attention", "+", "Norm", "MLP", "+"]


def test_fig1_script_draws_the_committed_figure(tmp_path):
    out = fig1.draw(tmp_path / "fig1.png")
    committed = ROOT / "docs" / "figures" / "fig1_annotated.png"
    for path in (out, committed):
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width_height = lambda data: (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big"))  # noqa: E731
    assert width_height(out.read_bytes()) == width_height(committed.read_bytes()) == (1800, 1250)


# ---- the course guide ----------------------------------------------------------------------------------------------
def _notebook_exercises() -> dict:
    """{grade_id: notebook} of every cell with nbgrader metadata "solution": true in notebooks/src/*.py."""
    found = {}
    for path in sorted((NB_DIR / "src").glob("[0-9][0-9]_*.py")):
        for line in path.read_text(encoding="utf-8").splitlines():
            m = re.match(r"# %%.*?nbgrader=(\{.*\})\s*$", line)
            if m and json.loads(m.group(1)).get("solution"):
                found[json.loads(m.group(1))["grade_id"]] = path.stem
    return found


def test_course_guide_lists_notebooks_exercises_and_links_the_figure():
    text = (ROOT / "docs" / "course.md").read_text(encoding="utf-8")
    assert "figures/fig1_annotated.png" in text and (ROOT / "docs" / "figures" / "fig1_annotated.png").is_file()
    for path in (NB_DIR / "src").glob("[0-9][0-9]_*.py"):
        assert path.stem in text, f"docs/course.md does not name notebook {path.stem}"
    missing = [e.id for e in EXERCISES if f"`{e.id}`" not in text]
    assert not missing, f"docs/course.md does not place the code exercises {missing} in a session"
    notebook_ids = _notebook_exercises()
    assert sum(nb == NAME for nb in notebook_ids.values()) >= MIN_BUGS
    missing = [i for i in notebook_ids if f"`{i}`" not in text]
    assert not missing, f"docs/course.md does not place the notebook exercises {missing} in a session"
    for command in ("python -m vitnp course build --out", "python -m vitnp course grade --root", "generate_assignment",
                    'pip install -e ".[course]"'):
        assert command in text, command
