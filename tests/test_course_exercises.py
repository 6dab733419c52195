"""Your code exercises, graded as the teacher grades them (``python -m pytest tests/test_course_exercises.py``).

One test per exercise of ``python -m vitnp course list``: it runs the course's grader on this copy of vitnp and
fails with the grader's first failing check (which output is wrong and how, or "exercise <id>: …" for an exercise
not written yet). In the student edition the forward exercises and the loss are left out: their answers can only
be computed with the instructor's installation, which grades them (``vitnp.course.checks.SELF_REFERENTIAL``).
"""
import pytest

from vitnp.course import checks, edition
from vitnp.course.exercises import EXERCISES
from vitnp.course.grade import grade

GRADABLE = [e.id for e in EXERCISES if not (edition.STUDENT and checks.self_referential(e))]


@pytest.mark.parametrize("exercise", GRADABLE)
def test_exercise(exercise):
    row, = grade(ids=[exercise])
    assert row["passed"], f"{exercise}: {row['failure']}"
