"""The notebooks handed out and graded with the real nbgrader, the way a teacher runs it (instructor-only: course build
withholds this file, which rebuilds the model answers).

``generate_assignment`` releases notebook 01; two students submit: one fills in every code exercise with the model
answer, one hands the release back as it is; ``autograde`` runs both and ``generate_feedback`` writes their
feedback. The filled-in notebook earns exactly the points of the locked test cells, the empty one none, and each gets
a feedback page.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vitnp.course.markers import find_regions

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbgrader")

ROOT = Path(__file__).resolve().parents[1]
NAME = "01_patches"
ASSIGNMENT = "ps1"


def _nbgrader(course: Path, *args):
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
               VITNP_FAST="1")
    p = subprocess.run([sys.executable, "-m", "nbgrader", *args, f"--CourseDirectory.root={course}"], cwd=course,
                       env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p


def _filled_in(released, teacher):
    """The released notebook with every code solution cell replaced by the model answer (markers dropped)."""
    nb = nbformat.from_dict(released)
    answers = {c.metadata["nbgrader"]["grade_id"]: c.source for c in teacher.cells
               if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")}
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if cell.cell_type == "code" and gid in answers:
            lines = answers[gid].split("\n")
            markers = {i for r in find_regions(answers[gid]) for i in (r.begin, r.end)}
            cell.source = "\n".join(line for i, line in enumerate(lines) if i not in markers)
    return nb


def test_a_class_released_submitted_autograded_and_given_feedback_with_nbgrader(tmp_path):
    course = tmp_path / "course"
    (course / "source" / ASSIGNMENT).mkdir(parents=True)
    shutil.copy(ROOT / "notebooks" / f"{NAME}.ipynb", course / "source" / ASSIGNMENT / f"{NAME}.ipynb")
    _nbgrader(course, "generate_assignment", ASSIGNMENT)
    released = nbformat.read(course / "release" / ASSIGNMENT / f"{NAME}.ipynb", as_version=4)
    teacher = nbformat.read(ROOT / "notebooks" / f"{NAME}.ipynb", as_version=4)
    auto_points = sum(c.metadata["nbgrader"]["points"] for c in teacher.cells
                      if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade"))
    assert auto_points > 0
    for student, nb in (("alice", _filled_in(released, teacher)), ("bob", released)):
        folder = course / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / f"{NAME}.ipynb")
    _nbgrader(course, "autograde", ASSIGNMENT)
    _nbgrader(course, "generate_feedback", ASSIGNMENT)
    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        alice = gb.find_submission(ASSIGNMENT, "alice")
        bob = gb.find_submission(ASSIGNMENT, "bob")
        assert alice.code_score == auto_points, (alice.code_score, auto_points)
        assert bob.code_score == 0
        assert alice.max_code_score == auto_points
    for student in ("alice", "bob"):
        assert (course / "feedback" / student / ASSIGNMENT / f"{NAME}.html").is_file()
    feedback = (course / "feedback" / "bob" / ASSIGNMENT / f"{NAME}.html").read_text(encoding="utf-8")
    assert "ExerciseNotDone" in feedback and "is not done yet" in feedback     # bob is told what to do
