"""What the notebooks share: their first cell (:func:`setup`), the comparison of a hand-written step with the
library (:func:`diff`), and what a locked test cell says when its exercise is not done yet (:func:`exercise`).

Every test cell of a notebook code exercise runs its checks inside ``with exercise("<id>"):``.  When the solution
cell above still holds its stub (``raise NotImplementedError()``, so the function raises or the names it should
define do not exist), the test cell stops with :class:`ExerciseNotDone`, which names the exercise and says what to
do, instead of a bare ``NotImplementedError`` or ``NameError``.  The same holds in nbgrader's release (its stub is
the same) and in ``python -m vitnp course build``'s.
"""
from __future__ import annotations

import contextlib
import os

import numpy as np

from .markers import stub_exercise_id


def setup(precision=3, *, photos=False) -> bool:
    """The first cell of every notebook: prints the mode and vitnp's version, sets matplotlib's figure size and
    NumPy's print options (``precision`` digits), JPEG figures when ``photos`` (keeps a notebook of photographs
    small); returns FAST, True when ``VITNP_FAST`` is set (CI's fast mode: smaller runs, same cells)."""
    import matplotlib.pyplot as plt

    import vitnp
    fast = os.environ.get("VITNP_FAST", "") not in ("", "0")
    print("mode:", "fast (VITNP_FAST=1)" if fast else "full", "| vitnp", vitnp.__version__)
    plt.rcParams.update({"figure.dpi": 80, "axes.titlesize": 11})
    if photos:
        from matplotlib_inline.backend_inline import set_matplotlib_formats
        set_matplotlib_formats("jpeg", pil_kwargs={"quality": 85})
    np.set_printoptions(precision=precision, suppress=True, linewidth=110)
    return fast


def diff(a, b) -> float:
    """max |a − b| in float64 after checking that the shapes agree (0.0 for empty arrays): how far the library is
    from the hand-written code."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, f"shapes differ: {a.shape} vs {b.shape}"
    return float(np.abs(a.astype(np.float64) - b).max()) if a.size else 0.0


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
