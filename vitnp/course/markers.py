"""Solution regions: find them, and cut them out.

A region is the lines strictly between a line that reads ``### BEGIN SOLUTION`` and the next line that reads
``### END SOLUTION`` (after leading white space; nbgrader's markers).  In Python code every region lies inside
one function, and is cut to ``raise NotImplementedError("exercise <id>: <statement>")`` at the marker's
indentation; in a notebook cell it is cut to nbgrader's stubs (``# YOUR CODE HERE`` and a raise in code cells,
``YOUR ANSWER HERE`` in Markdown cells).
"""
from __future__ import annotations

import ast
import dataclasses
import re

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
# Either marker, also behind more comment signs (a Markdown line of a percent-format source: "# ### BEGIN …").
_ANY_MARKER = re.compile(r"[#\s]*(%s|%s)\s*" % (re.escape(BEGIN.lstrip("# ")), re.escape(END.lstrip("# "))))


class MarkerError(ValueError):
    """Unbalanced or misplaced solution markers."""


@dataclasses.dataclass(frozen=True)
class Region:
    """Lines ``begin`` … ``end`` (0-based, the marker lines included) of a text; ``function`` encloses them."""

    begin: int
    end: int
    indent: str
    function: str | None = None


def find_regions(text: str, where: str = "<text>") -> list:
    """The regions of ``text`` in order; MarkerError for a BEGIN without END, an END without BEGIN, or nesting."""
    regions, open_at = [], None
    for i, line in enumerate(text.split("\n")):
        mark = line.strip()
        if mark == BEGIN:
            if open_at is not None:
                raise MarkerError(f"{where}:{i + 1}: {BEGIN} inside the region opened at line {open_at + 1}")
            open_at = i
        elif mark == END:
            if open_at is None:
                raise MarkerError(f"{where}:{i + 1}: {END} without {BEGIN}")
            regions.append(Region(open_at, i, line[: len(line) - len(line.lstrip())]))
            open_at = None
    if open_at is not None:
        raise MarkerError(f"{where}:{open_at + 1}: {BEGIN} is never closed")
    return regions


def mentions_marker(text: str) -> bool:
    """Does any line of ``text`` read as a solution marker, even behind extra comment signs?  (The check that
    nothing between markers survived a build: looser than :func:`find_regions` on purpose.)"""
    return any(_ANY_MARKER.fullmatch(line) for line in text.splitlines())


def find_code_regions(source: str, where: str = "<source>") -> list:
    """The regions of a Python source, each with the name of the function that holds it (MarkerError if none)."""
    regions = find_regions(source, where)
    if not regions:
        return []
    functions = [node for node in ast.walk(ast.parse(source, where))
                 if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    out = []
    for r in regions:
        holders = [f for f in functions if f.lineno - 1 < r.begin < f.end_lineno]   # END may follow the last line
        if not holders:
            raise MarkerError(f"{where}:{r.begin + 1}: a solution region must lie inside a function")
        inner = max(holders, key=lambda f: f.lineno)                       # the innermost function
        out.append(dataclasses.replace(r, function=inner.name))
    return out


def cut(text: str, regions: list, stub) -> str:
    """``text`` with each region (markers included) replaced by the lines ``stub(region)`` returns."""
    lines = text.split("\n")
    for r in sorted(regions, key=lambda r: r.begin, reverse=True):
        lines[r.begin: r.end + 1] = stub(r)
    return "\n".join(lines)


STUB_PREFIX = "exercise "


def stub_exercise_id(text: str) -> str | None:
    """The exercise id of a stub's message (``exercise <id>: …``, what :func:`code_stub` raises), else None."""
    text = " ".join(str(text).split())
    if not text.startswith(STUB_PREFIX) or ":" not in text:
        return None
    return text[len(STUB_PREFIX):].split(":")[0].strip() or None


def code_stub(exercise):
    """The stub of a code region: one raise that names the exercise, says what to write and how to check it."""
    message = (f"{STUB_PREFIX}{exercise.id}: {exercise.statement} (not done yet: write it here, in "
               f"{exercise.where}, then check it with `python -m vitnp course grade --exercise {exercise.id}`)")
    return lambda r: [f"{r.indent}raise NotImplementedError({message!r})"]
