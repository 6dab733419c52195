"""What a notebook's locked test cell says when its exercise is not done yet.

Every test cell of a notebook code exercise runs its checks inside ``with exercise("<id>"):``.  When the solution
cell above still holds its stub (``raise NotImplementedError()``, so the function raises or the names it should
define do not exist), the test cell stops with :class:`ExerciseNotDone`, which names the exercise and says what to
do, instead of a bare ``NotImplementedError`` or ``NameError``.  The same holds in nbgrader's release (its stub is
the same) and in ``python -m vitnp course build``'s.
"""
from __future__ import annotations

import contextlib

from .markers import stub_exercise_id


class ExerciseNotDone(AssertionError):
    """A notebook exercise (or a code exercise it builds on) is not written yet."""


@contextlib.contextmanager
def exercise(grade_id: str):
    """Run a test cell's checks; turn "not written yet" into a message that names ``grade_id``."""
    todo = ("write your code in the cell above, in place of its `raise NotImplementedError()`, run that cell, "
            "then run this one again")
    try:
        yield
    except NotImplementedError as err:
        other = stub_exercise_id(err)
        if other is not None and other != grade_id:
            raise ExerciseNotDone(f"exercise {grade_id} needs a code exercise of vitnp/ first: "
                                  f"{' '.join(str(err).split())}") from None
        raise ExerciseNotDone(f"exercise {grade_id} is not done yet: {todo}") from None
    except NameError as err:
        raise ExerciseNotDone(f"exercise {grade_id} is not done yet ({err}): {todo}") from None
