"""``python -m vitnp course build|grade|list``: the teacher's commands; the code is in :mod:`vitnp.course`."""
from __future__ import annotations

import sys

from ..course.grade import GUARANTEE, MEMORY, TIMEOUT


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="course_command", required=True)
    b = sub.add_parser("build", help="write the student edition (solutions cut out) to a new directory",
                       description="Write a complete, installable copy of the project with every solution region "
                                   "replaced by `raise NotImplementedError(\"exercise <id>: …\")` (code) or nbgrader's "
                                   "stubs (notebooks). The instructor's tree is only read.")
    b.add_argument("--out", required=True, metavar="DIR", help="the new directory (must not exist)")
    b.add_argument("--src", default=None, metavar="ROOT",
                   help="the instructor's project root (default: the installed vitnp's)")
    g = sub.add_parser("grade", help="grade a copy (or a whole class): every exercise checked on fresh random inputs",
                       description="Grade every exercise of the tree at ROOT (default: the installed vitnp's) and "
                                   "print `id | what | points | result | first failing check`, the total and the seed; "
                                   "or, with --class, every student folder under DIR into a CSV gradebook. "
                                   "Exit status 0 only when everything passes. " + GUARANTEE)
    where = g.add_mutually_exclusive_group()
    where.add_argument("--root", default=None, metavar="DIR", help="the project root holding vitnp/ to grade")
    where.add_argument("--class", dest="class_dir", default=None, metavar="DIR",
                       help="grade every folder under DIR (one per student, each holding vitnp/)")
    g.add_argument("--gradebook", default=None, metavar="CSV",
                   help="with --class: where to write the gradebook (default DIR/gradebook.csv)")
    g.add_argument("--exercise", action="append", default=None, metavar="ID", help="grade only this one (repeatable)")
    g.add_argument("--seed", type=int, default=None,
                   help="the inputs' seed (default: a new one, printed, so that a run can be repeated)")
    g.add_argument("--timeout", type=float, default=TIMEOUT, help=f"seconds per exercise (default {TIMEOUT:g})")
    g.add_argument("--memory-mb", type=int, default=MEMORY >> 20,
                   help=f"address space of a check process, MiB (default {MEMORY >> 20})")
    g.add_argument("--jobs", type=int, default=1, help="with --class: check processes run at once (default 1)")
    g.add_argument("--show-output", action="store_true", help="print the last output of each failing exercise")
    sub.add_parser("list", help="list the exercises: id, points, where, statement")


def run(args) -> int:
    if args.course_command == "build":
        from ..course.build import build
        report = build(args.out, args.src)
        print(f"student edition written to {args.out}: {report['files']} files, {len(report['exercises'])} code "
              f"exercises cut, {report['notebook_cells']} notebook cells cut, withheld: "
              f"{', '.join(report['withheld']) or 'none'}")
        return 0
    if args.course_command == "grade":
        return _grade(args)
    from ..course.exercises import EXERCISES
    for e in EXERCISES:
        print(f"{e.id:<24} {e.points:>2} pt  {e.where:<44} {e.statement}")
    print(f"{len(EXERCISES)} exercises, {sum(e.points for e in EXERCISES)} points", file=sys.stderr)
    return 0


def _grade(args) -> int:
    from ..course.grade import format_table, grade, grade_class, totals, write_gradebook
    if args.timeout <= 0 or args.memory_mb <= 0 or args.jobs <= 0:
        raise ValueError("--timeout, --memory-mb and --jobs must be positive")
    options = dict(timeout=args.timeout, seed=args.seed, memory=args.memory_mb << 20)
    if args.class_dir is None:
        if args.gradebook is not None:
            raise ValueError("--gradebook goes with --class")
        rows = grade(args.root, args.exercise, **options)
        print(format_table(rows))
        if args.show_output:
            for r in rows:
                if not r["passed"] and r["output"].strip():
                    print(f"\n--- output of {r['id']} (last lines) ---\n" + "\n".join(r["output"].splitlines()[-20:]))
        return 0 if all(r["passed"] for r in rows) else 1
    from pathlib import Path
    out = Path(args.gradebook) if args.gradebook else Path(args.class_dir) / "gradebook.csv"
    progress = lambda student, exercise, ok: print(f"{student:<24} {exercise:<24} {'pass' if ok else 'FAIL'}",
                                                   file=sys.stderr, flush=True)
    rows = grade_class(args.class_dir, args.exercise, jobs=args.jobs, progress=progress, **options)
    write_gradebook(rows, out)
    per_student = totals(rows)
    for student, (got, total, _) in per_student.items():
        print(f"{student:<24} {got:>4} / {total}")
    print(f"gradebook: {out} ({len(per_student)} students, seed {rows[0]['seed']})")
    return 0
