"""The course edition: every solution region is an exercise, the student edition has no solutions left, and
the grader passes the instructor's tree, fails every exercise of the untouched student edition by id, and
fails exactly the exercise with a planted bug."""
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from pathlib import Path

from vitnp.course import checks
from vitnp.course.build import build, cut_code, project_files
from vitnp.course.exercises import BY_ID, EXERCISES
from vitnp.course.grade import format_table, grade
from vitnp.course.markers import MarkerError, find_code_regions, find_regions

ROOT = Path(__file__).resolve().parents[1]


def _regions():
    """{'path:function': number of regions} over the instructor's vitnp/ (the course package excluded)."""
    found = {}
    for rel in project_files(ROOT):
        posix = rel.as_posix()
        if posix.startswith("vitnp/") and rel.suffix == ".py" and not posix.startswith("vitnp/course/"):
            for r in find_code_regions((ROOT / rel).read_text(encoding="utf-8"), posix):
                found[f"{posix}:{r.function}"] = found.get(f"{posix}:{r.function}", 0) + 1
    return found


def test_every_region_is_one_exercise_and_every_exercise_one_region():
    found = _regions()
    assert set(found) == {e.where for e in EXERCISES}
    assert all(n == 1 for n in found.values()), found
    assert len(BY_ID) == len(EXERCISES)


def test_every_exercise_has_checks_that_change_with_the_seed_and_cover_the_required_ops():
    for e in EXERCISES:
        assert e.points > 0 and e.statement, e.id
        one, two = checks.cases(e.id, 1), checks.cases(e.id, 2)
        assert one and all(c.grads or c.values for c in one), e.id
        first = lambda cs: next(v for v in cs[0].arrays.values() if v.dtype.kind == "f")
        assert not (first(one) == first(two)).all(), e.id                  # fresh inputs for every seed
        assert (first(one) == first(checks.cases(e.id, 1))).all(), e.id    # the same for the same seed
    assert {e.id for e in EXERCISES if checks.referenced_exercises(e.id)} == checks.SELF_REFERENTIAL
    required = ["patchify-backward", "linear-backward", "class-token-backward", "pos-embed-backward",
                "layernorm-backward", "softmax-backward", "attention-backward", "msa-backward",
                "gelu-exact-derivative", "gelu-tanh-derivative", "mlp-backward", "encoder-block-backward",
                "cross-entropy", "vit-forward"]
    assert set(required) <= set(BY_ID)


def test_markers_are_checked():
    with pytest.raises(MarkerError, match="never closed"):
        find_regions("a\n### BEGIN SOLUTION\nb\n")
    with pytest.raises(MarkerError, match="without"):
        find_regions("### END SOLUTION\n")
    with pytest.raises(MarkerError, match="inside a function"):
        find_code_regions("### BEGIN SOLUTION\nx = 1\n### END SOLUTION\n")
    with pytest.raises(MarkerError, match="not an exercise"):
        cut_code("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n", "vitnp/ops/linear.py")


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    out = tmp_path_factory.mktemp("edition") / "student"
    report = build(out, ROOT)
    return out, report


def test_student_edition_has_no_solutions(student):
    out, report = student
    assert sorted(report["exercises"]) == sorted(e.id for e in EXERCISES)
    attention = (out / "vitnp/ops/attention.py").read_text()
    assert "dS = softmax_backward(dA, c_soft)" not in attention
    assert 'raise NotImplementedError("exercise attention-backward:' in attention.replace("'", '"')
    for rel in project_files(out):
        if rel.suffix in (".py", ".ipynb") and not rel.as_posix().startswith(("tests/", "vitnp/course/")):
            text = (out / rel).read_text(encoding="utf-8")
            assert "### BEGIN SOLUTION" not in text and "### END SOLUTION" not in text, rel
    fast_ln = (out / "vitnp/fast/layernorm.py").read_text()
    assert "einsum" not in fast_ln and "from ..ops.layernorm import" in fast_ln          # the twin is withheld
    assert "from ..model import vit_backward, vit_forward" in (out / "vitnp/fast/model.py").read_text()
    fused = (out / "vitnp/fast/ln_linear.py").read_text()                                # the reference's, not fused
    assert "xa.T @" not in fused and "from ..ops.ln_linear import ln_linear_backward, ln_linear_forward" in fused
    assert "vitnp/fast/ln_linear.py" in report["withheld"]
    assert (ROOT / "vitnp/ops/attention.py").read_text().count("### BEGIN SOLUTION") == 2   # instructor's unchanged
    assert "\nSTUDENT = True\n" in (out / "vitnp/course/edition.py").read_text()
    assert "\nSTUDENT = False\n" in (ROOT / "vitnp/course/edition.py").read_text()
    assert not (out / "docs/instructor.md").exists() and (out / "tests/test_course_exercises.py").is_file()


def test_build_refuses_an_existing_directory_and_a_non_project(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(ValueError, match="exists already"):
        build(tmp_path / "taken", ROOT)
    with pytest.raises(ValueError, match="is not the vitnp project"):
        build(tmp_path / "new", ROOT / "vitnp")
    assert not (tmp_path / "new").exists()


def test_student_edition_is_installable_and_runs_its_cli(student, tmp_path):
    """The copy builds a wheel (with no stored answers in it) and its own CLI lists the exercises."""
    out, _ = student
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(out),
                    "-w", str(tmp_path)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("vitnp-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "vitnp/course/checks.py" in names and not [n for n in names if n.endswith((".npz", ".npy"))], names
    p = subprocess.run([sys.executable, "-m", "vitnp", "course", "list"], cwd=out, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(out)})
    assert p.returncode == 0 and "attention-backward" in p.stdout, p.stderr


def test_course_cli_exit_codes(student, capsys):
    from vitnp.cli.main import main
    assert main(["course", "grade", "--root", str(student[0]), "--exercise", "linear-backward"]) == 1
    assert "0 / 2 points" in capsys.readouterr().out
    assert main(["course", "grade", "--exercise", "linear-backward"]) == 0            # the instructor's tree
    assert main(["course", "grade", "--exercise", "no-such-exercise"]) == 2
    assert "unknown exercise" in capsys.readouterr().err


def test_grading_the_student_edition_fails_every_exercise_by_id(student):
    rows = grade(student[0])
    assert [r["id"] for r in rows] == [e.id for e in EXERCISES]
    bad = [r for r in rows if r["passed"] or f"exercise {r['id']}:" not in (r["failure"] or "")]
    assert not bad, format_table(bad)


def test_grading_the_instructors_tree_passes_everything():
    rows = grade(ROOT)
    assert all(r["passed"] for r in rows), format_table(rows)
    total = sum(e.points for e in EXERCISES)
    n = len(EXERCISES)
    assert f"total: {total} / {total} points, {n} of {n} exercises passed" in format_table(rows)


def test_a_planted_bug_fails_exactly_its_exercise(tmp_path):
    """softmax backward with only the diagonal of the Jacobian, y(1 − y) — a bug seen in public NumPy ViTs."""
    copy = tmp_path / "copy"
    for rel in project_files(ROOT):
        if rel.as_posix().startswith("vitnp/"):
            (copy / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, copy / rel)
    path = copy / "vitnp/ops/softmax.py"
    text = path.read_text()
    right = "    return y * (dy - (dy * y).sum(axis, keepdims=True))"
    assert right in text
    path.write_text(text.replace(right, "    return dy * y * (1 - y)"))
    rows = grade(copy)
    failed = [r["id"] for r in rows if not r["passed"]]
    assert failed == ["softmax-backward"], format_table(rows)
    assert "relative error" in rows[[r["id"] for r in rows].index("softmax-backward")]["failure"]


def _copy_of_vitnp(tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(ROOT / "vitnp", copy / "vitnp", ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def test_wrong_forwards_fail_their_exercises(tmp_path):
    """A forward wrong only where the first answers do not look (the sine-cosine table, dropout, the mask) fails."""
    for broken, right, exercise in [
        ('        z = z + sincos_2d(cfg)', '        z = z', "embed-forward"),
        ('    z, c["drop"] = dropout_forward(z, cfg.dropout, rng, train)', '    c["drop"] = None', "embed-forward"),
        ('attention_dropout=cfg.attention_dropout, mask=attn_mask, rng=rng, train=train)',
         'attention_dropout=cfg.attention_dropout, mask=None, rng=rng, train=train)', "vit-forward"),
        ('attention_dropout=cfg.attention_dropout, mask=attn_mask, rng=rng, train=train)',
         'attention_dropout=cfg.attention_dropout, mask=attn_mask, rng=rng, train=False)', "vit-forward")]:
        copy = _copy_of_vitnp(tmp_path / exercise / str(abs(hash(right))))
        path = copy / "vitnp/model.py"
        text = path.read_text()
        assert text.count(broken) == 1, broken
        path.write_text(text.replace(broken, right))
        rows = grade(copy, ids=[exercise])
        assert not rows[0]["passed"], (broken, right, rows[0])


def test_printing_graded_code_and_a_student_grading_their_own_copy(student, tmp_path):
    """Output printed by the graded code cannot crash the grader; grading with a student edition's own
    installation names the exercise that is missing first."""
    copy = _copy_of_vitnp(tmp_path)
    path = copy / "vitnp/ops/softmax.py"
    debug = '    print("debug", end="")\n    y, axis = cache\n'                      # stdout the grader must survive
    path.write_text(path.read_text().replace('    y, axis = cache\n', debug))
    assert debug in path.read_text()
    rows = grade(copy, ids=["softmax-backward", "linear-backward"])
    assert [r["passed"] for r in rows] == [True, True], format_table(rows)
    own = tmp_path / "own"                           # a student edition in which msa (and attention) are done
    shutil.copytree(student[0], own, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "vitnp/ops/attention.py", own / "vitnp/ops/attention.py")
    p = subprocess.run([sys.executable, "-m", "vitnp", "course", "grade", "--root", str(own), "--exercise",
                        "msa-backward"], cwd=own, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(own)})             # the student's own installation
    assert p.returncode == 1 and "needs exercise linear-backward first" in p.stdout, (p.stdout, p.stderr)
    assert grade(own, ids=["msa-backward"])[0]["passed"]                   # the instructor's grader: isolated


def test_a_modified_checker_in_the_copy_changes_nothing(tmp_path):
    """The copy's own gradcheck/selfcheck are never used: edited to pass everything, a wrong answer still fails."""
    copy = tmp_path / "copy"
    shutil.copytree(ROOT / "vitnp", copy / "vitnp", ignore=shutil.ignore_patterns("__pycache__"))
    path = copy / "vitnp/gradcheck.py"
    path.write_text(path.read_text() + "\n\ndef rel_error(*args, **kwargs):\n    return 0.0\n")
    path = copy / "vitnp/ops/linear.py"
    path.write_text(path.read_text().replace("    db = d_rows.sum(0)", "    db = 2 * d_rows.sum(0)"))
    rows = grade(copy, ids=["linear-backward"])
    assert not rows[0]["passed"] and rows[0]["failure"].startswith("linear: db relative error"), rows[0]
    assert "(dx and dW are right)" in rows[0]["failure"]


def test_nan_gradient_fails(tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(ROOT / "vitnp", copy / "vitnp", ignore=shutil.ignore_patterns("__pycache__"))
    path = copy / "vitnp/ops/linear.py"
    text = path.read_text().replace("    db = d_rows.sum(0)", "    db = d_rows.sum(0) * np.nan")
    path.write_text(text.replace('"""\n\n\ndef linear_forward', '"""\nimport numpy as np\n\n\ndef linear_forward'))
    rows = grade(copy, ids=["linear-backward"])
    assert not rows[0]["passed"] and "linear: db is NaN at index (0,)" in rows[0]["failure"], rows[0]


def test_withheld_fast_modules_are_those_whose_reference_holds_or_builds_on_an_exercise():
    """fast.ln_linear is withheld because ops.ln_linear imports LayerNorm and linear (exercises); fast.erf is
    not (ops.erf holds none and imports none); the fast model because vitnp/model.py holds vit-forward."""
    from vitnp.course.build import withheld_modules
    assert withheld_modules(ROOT) == {"attention", "block", "gelu", "layernorm", "linear", "ln_linear", "model",
                                      "softmax"}


def test_a_solution_line_planted_in_a_student_test_fails_the_build(tmp_path):
    """Copy the project, put one line of layernorm-backward's model answer into a test the student edition ships,
    and the build refuses, naming the file; the untouched project builds (the student fixture)."""
    copy = tmp_path / "project"
    for rel in project_files(ROOT):
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, copy / rel)
    source = (ROOT / "vitnp/ops/layernorm.py").read_text()
    region, = find_regions(source)
    line = next(l for l in source.split("\n")[region.begin + 1:region.end] if "mean(-1" in l)
    target = copy / "tests/test_data.py"
    target.write_text(target.read_text() + f'\n\ndef _planted(dx_hat, x_hat, inv_std):\n{line.split("#")[0]}\n')
    from vitnp.course.build import LeakError
    with pytest.raises(LeakError, match="tests/test_data.py line"):
        build(tmp_path / "out", copy)
    assert not (tmp_path / "out").exists()


def test_leaks_are_found_in_notebook_outputs_and_markdown(tmp_path):
    import nbformat
    from vitnp.course.leaks import find_leaks, normalize
    answers = {normalize("dq = scale * (dS @ k)"): "vitnp/ops/attention.py"}
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)", outputs=[
        nbformat.v4.new_output("stream", name="stdout", text="dq = scale * (dS @ k)   # printed\n")])])
    (tmp_path / "nb.ipynb").write_text(nbformat.writes(nb))
    (tmp_path / "notes.md").write_text("Some text.\n    dq = scale * (dS @ k)\n")
    found = find_leaks(tmp_path, answers)
    assert [(f, place) for f, place, _ in found] == [("nb.ipynb", "cell 0 output"), ("notes.md", "line 2")]


def test_forward_docstrings_state_the_cache_their_backward_reads():
    import importlib
    import inspect
    forwards = {"patchify_backward": "patchify_forward", "linear_backward": "linear_forward",
                "class_token_backward": "class_token_forward", "pos_embed_backward": "pos_embed_forward",
                "readout_backward": "readout_forward", "layernorm_backward": "layernorm_forward",
                "softmax_backward": "softmax_forward", "attention_backward": "attention_forward",
                "msa_backward": "msa_forward", "mlp_backward": "mlp_forward",
                "encoder_block_backward": "encoder_block_forward", "embed_forward": "embed_forward",
                "head_forward": "head_forward", "vit_forward": "vit_forward"}
    for e in EXERCISES:
        if e.function not in forwards:
            continue                                     # the GELU derivatives and the loss have no cache
        module = importlib.import_module(e.path[:-3].replace("/", "."))
        doc = inspect.getdoc(getattr(module, forwards[e.function]))
        assert "cache = (" in doc or "cache = None" in doc or "cache: a dict with the keys" in doc \
            or "with the keys it reads" in doc, e.id


def test_every_written_question_has_a_rubric_and_the_zoo_its_key():
    import json
    import re
    text = (ROOT / "docs/instructor.md").read_text(encoding="utf-8")
    written = []
    for path in sorted((ROOT / "notebooks/src").glob("[0-9][0-9]_*.py")):
        for m in re.findall(r"^# %% \[markdown\].*?nbgrader=(\{.*\})\s*$", path.read_text(encoding="utf-8"), re.M):
            meta = json.loads(m)
            if meta.get("solution"):
                written.append(meta["grade_id"])
    assert len(written) >= 30
    zoo = [w for w in written if w.startswith("nb10-")]
    missing = [w for w in written if w not in zoo and f"**{w}** (" not in text]
    missing += [w for w in zoo if f"| `{w}` |" not in text]
    assert not missing, f"no rubric in docs/instructor.md for {missing}"
