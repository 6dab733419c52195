"""The course edition: exercises cut from the reference, a student copy, and a grader built on the gradient checks.

- :mod:`~vitnp.course.exercises`: the table of exercises (id, where, statement, points, checks);
- :mod:`~vitnp.course.markers`: nbgrader's ``### BEGIN SOLUTION`` / ``### END SOLUTION`` regions;
- :mod:`~vitnp.course.build`: ``python -m vitnp course build --out DIR``, the student edition;
- :mod:`~vitnp.course.grade`: ``python -m vitnp course grade [--root DIR]``, the grader;
- :mod:`~vitnp.course.answers`: known answers for the forwards.

``docs/course.md`` is the teacher's guide.
"""
