"""Grading a class: ``python -m vitnp course grade --class DIR`` grades every student folder into a CSV gradebook,
and one student's crash, endless loop or missing package costs that student only."""
import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vitnp.course.grade import grade_class, write_gradebook

ROOT = Path(__file__).resolve().parents[1]
IDS = ["patchify-backward", "linear-backward"]


@pytest.fixture(scope="module")
def klass(tmp_path_factory):
    """Five students: a complete copy, one with a wrong db, one whose package kills its process on import, one
    stuck in an endless loop in linear_backward, and a folder with no package at all."""
    root = tmp_path_factory.mktemp("class")
    for name in ("alice", "bob", "carol", "dave"):
        shutil.copytree(ROOT / "vitnp", root / name / "vitnp", ignore=shutil.ignore_patterns("__pycache__"))
    linear = root / "bob/vitnp/ops/linear.py"
    linear.write_text(linear.read_text().replace("    db = d_rows.sum(0)", "    db = d_rows.mean(0)"))
    init = root / "carol/vitnp/__init__.py"
    init.write_text("import os\nos._exit(3)\n" + init.read_text())
    linear = root / "dave/vitnp/ops/linear.py"
    linear.write_text(linear.read_text().replace("    db = d_rows.sum(0)", "    while True:\n        pass"))
    (root / "eve").mkdir()
    (root / "eve/notes.txt").write_text("I did not hand in my copy")
    return root


def test_a_class_is_graded_into_a_gradebook(klass, tmp_path):
    rows = grade_class(klass, IDS, timeout=5, seed=11, jobs=2)
    got = {(r["student"], r["exercise"]): r for r in rows}
    assert len(rows) == 10 and {r["seed"] for r in rows} == {11}
    assert got["alice", "patchify-backward"]["points"] == 1 and got["alice", "linear-backward"]["points"] == 2
    assert got["bob", "patchify-backward"]["points"] == 1
    bob = got["bob", "linear-backward"]
    assert bob["points"] == 0 and bob["first_failing_check"].startswith("linear: db relative error"), bob
    for e in IDS:
        assert got["carol", e]["points"] == 0 and "exit code 3" in got["carol", e]["first_failing_check"]
        assert got["eve", e]["points"] == 0 and "no vitnp/ package" in got["eve", e]["first_failing_check"]
    assert got["dave", "patchify-backward"]["points"] == 1                     # the loop costs dave one exercise
    assert "timed out after 5 s" in got["dave", "linear-backward"]["first_failing_check"]
    out = tmp_path / "gradebook.csv"
    write_gradebook(rows, out)
    table = list(csv.DictReader(out.open()))
    assert list(table[0]) == ["student", "exercise", "points", "max_points", "first_failing_check", "seed"]
    totals = {r["student"]: (int(r["points"]), int(r["max_points"])) for r in table if r["exercise"] == "TOTAL"}
    assert totals == {"alice": (3, 3), "bob": (1, 3), "carol": (0, 3), "dave": (1, 3), "eve": (0, 3)}


def test_the_class_cli_writes_the_gradebook(klass, tmp_path):
    out = tmp_path / "book.csv"
    p = subprocess.run([sys.executable, "-m", "vitnp", "course", "grade", "--class", str(klass), "--exercise",
                        "patchify-backward", "--gradebook", str(out), "--seed", "5", "--timeout", "5"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "alice" in p.stdout and "seed 5" in p.stdout
    rows = list(csv.DictReader(out.open()))
    assert {r["student"] for r in rows} == {"alice", "bob", "carol", "dave", "eve"}
    p = subprocess.run([sys.executable, "-m", "vitnp", "course", "grade", "--class", str(klass / "nobody")],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "not a directory" in p.stderr
