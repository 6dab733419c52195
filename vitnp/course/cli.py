"""``python -m vitnp course build|grade|answers``: the teacher's commands."""
from __future__ import annotations

import sys


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="course_command", required=True)
    b = sub.add_parser("build", help="write the student edition (solutions cut out) to a new directory",
                       description="Write a complete, installable copy of the project with every solution region "
                                   "replaced by `raise NotImplementedError(\"exercise <id>: …\")` (code) or nbgrader's "
                                   "stubs (notebooks). The instructor's tree is only read.")
    b.add_argument("--out", required=True, metavar="DIR", help="the new directory (must not exist)")
    b.add_argument("--src", default=None, metavar="ROOT",
                   help="the instructor's project root (default: the installed vitnp's)")
    g = sub.add_parser("grade", help="grade a tree: the gradient checks and known answers of every exercise",
                       description="Grade every exercise of the tree at ROOT (default: the installed vitnp's) and "
                                   "print `id | what | points | result | first failing check` and the total. "
                                   "Exit status 0 only when everything passes.")
    g.add_argument("--root", default=None, metavar="DIR", help="the project root holding vitnp/ to grade")
    g.add_argument("--exercise", action="append", default=None, metavar="ID", help="grade only this one (repeatable)")
    g.add_argument("--timeout", type=float, default=300, help="seconds per exercise (default 300)")
    sub.add_parser("answers", help="write vitnp/course/answers.npz again from the installed reference")
    sub.add_parser("list", help="list the exercises: id, points, where, statement")


def run(args) -> int:
    if args.course_command == "build":
        from .build import build
        report = build(args.out, args.src)
        print(f"student edition written to {args.out}: {report['files']} files, {len(report['exercises'])} code "
              f"exercises cut, {report['notebook_cells']} notebook cells cut, fast twins withheld: "
              f"{', '.join(report['withheld']) or 'none'}")
        return 0
    if args.course_command == "grade":
        from .grade import format_table, grade
        if args.timeout <= 0:
            raise ValueError(f"--timeout must be positive, got {args.timeout}")
        rows = grade(args.root, args.exercise, timeout=args.timeout)
        print(format_table(rows))
        return 0 if all(r["passed"] for r in rows) else 1
    if args.course_command == "answers":
        from .answers import ANSWERS_FILE, write
        answers = write()
        print(f"{len(answers)} arrays written to {ANSWERS_FILE}")
        return 0
    from .exercises import EXERCISES
    for e in EXERCISES:
        print(f"{e.id:<24} {e.points:>2} pt  {e.where:<44} {e.statement}")
    print(f"{len(EXERCISES)} exercises, {sum(e.points for e in EXERCISES)} points", file=sys.stderr)
    return 0
