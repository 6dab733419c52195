"""The annotated Fig 1 (scripts/fig1_diagram.py) and the course guide docs/course.md.

* every label of scripts/fig1_diagram.py names a real parameter, module function and notebook, and the script draws;
* docs/course.md links the figure, names every notebook, every code exercise and every notebook exercise.
"""
import ast
import importlib.util
import json
import re
from pathlib import Path

import vitnp
from vitnp.course.exercises import EXERCISES
from vitnp.selfcheck import tiny_config

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
ZOO = "10_bug_zoo"
MIN_EXHIBITS = 8


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fig1 = _load("fig1_diagram", ROOT / "scripts" / "fig1_diagram.py")


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
    assert sum(nb == ZOO for nb in notebook_ids.values()) >= MIN_EXHIBITS
    missing = [i for i in notebook_ids if f"`{i}`" not in text]
    assert not missing, f"docs/course.md does not place the notebook exercises {missing} in a session"
    for command in ("python -m vitnp course build --out", "python -m vitnp course grade --root", "generate_assignment",
                    'pip install -e ".[course]"'):
        assert command in text, command


def _table(text: str, header: str) -> list:
    """The rows (lists of cells) of the Markdown table whose header row starts with ``header``."""
    lines = text.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_course_guide_points_match_the_code_and_the_notebooks():
    text = (ROOT / "docs" / "course.md").read_text(encoding="utf-8")
    code = _table(text, "| code exercise |")
    assert [(r[0].strip("`"), int(r[2])) for r in code[:-1]] == [(e.id, e.points) for e in EXERCISES]
    assert code[-1][2] == f"**{sum(e.points for e in EXERCISES)}**"
    points = {}
    for path in sorted((NB_DIR / "src").glob("[0-9][0-9]_*.py")):
        metas = [json.loads(m) for m in re.findall(r"^# %%.*?nbgrader=(\{.*\})\s*$", path.read_text(encoding="utf-8"),
                                                   re.M)]
        by_id = {m["grade_id"]: m for m in metas}
        for m in metas:
            if m.get("solution"):
                points[m["grade_id"]] = m["points"] if m.get("grade") else by_id[m["grade_id"] + "-test"]["points"]
    notebook = _table(text, "| notebook | exercise |")
    assert {r[1].strip("`"): int(r[3]) for r in notebook[:-1]} == points
    total = sum(points.values()) + sum(e.points for e in EXERCISES)
    assert f"**The whole course: {total} points**" in text
    sessions = _table(text, "| session | code points |")
    assert sum(int(r[3]) for r in sessions) == total
