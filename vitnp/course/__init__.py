"""The course edition: exercises cut from the reference, a student copy, and a grader built on the gradient checks.

- :mod:`~vitnp.course.exercises`: the table of exercises (id, where, statement, points);
- :mod:`~vitnp.course.markers`: nbgrader's ``### BEGIN SOLUTION`` / ``### END SOLUTION`` regions;
- :mod:`~vitnp.course.build`: ``python -m vitnp course build --out DIR``, the student edition;
- :mod:`~vitnp.course.grade`: ``python -m vitnp course grade [--root DIR | --class DIR]``, the grader, which
  never imports what it grades;
- :mod:`~vitnp.course.checks`: each exercise's checks, computed by the grader's own reference;
- :mod:`~vitnp.course.protocol` and :mod:`~vitnp.course.worker`: the check process that runs the graded code
  and only sends back arrays.

``docs/course.md`` is the teacher's guide.
"""
