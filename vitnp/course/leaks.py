"""Does the student edition give an answer away?  The check ``course build`` runs on every copy it writes.

An **answer line** is a line of a model solution (between the solution markers, in ``vitnp/`` or in a notebook
cell) that says something: at least :data:`MIN_CHARS` characters once its comment and white space are dropped
(``db = d_rows.sum(0)`` counts; ``return dx`` does not), compared in that form.  A line that the instructor's
library also has outside every solution region (``if cfg.classifier == "token":``, ``t0 = time.perf_counter()``)
is an idiom, not an answer; so is a bare ``return`` of names (``return dx, dgamma, dbeta``: the exercise's statement says what it returns).

:func:`find_leaks` reads every text file of a copy (code, tests, docs, and the cells *and outputs* of notebooks)
and lists each place where an answer line appears.  The build fails when it finds one.
"""
from __future__ import annotations

import re
from pathlib import Path

from .markers import find_regions

MIN_CHARS = 14            # characters of a line once its comment and white space are gone
_BARE_RETURN = re.compile(r"return[A-Za-z_0-9,()]*")


def normalize(line: str, code: bool = True) -> str:
    """``line`` without its comment (for code) and without white space."""
    if code:
        quote, kept = None, []
        for ch in line:
            if quote:
                kept.append(ch)
                quote = None if ch == quote else quote
            elif ch in "\"'":
                quote = ch
                kept.append(ch)
            elif ch == "#":
                break
            else:
                kept.append(ch)
        line = "".join(kept)
    return re.sub(r"\s+", "", line)


def _split_by_regions(text: str, code: bool, where: str) -> tuple:
    """(normalized lines inside solution regions, normalized lines outside them; markers in neither)."""
    lines = text.split("\n")
    regions = find_regions(text, where)
    inside = {i for r in regions for i in range(r.begin + 1, r.end)}
    markers = {i for r in regions for i in (r.begin, r.end)}
    within = [normalize(lines[i], code) for i in sorted(inside)]
    outside = [normalize(line, code) for i, line in enumerate(lines) if i not in inside and i not in markers]
    return within, outside


def answer_lines(src: Path, files) -> dict:
    """{normalized answer line: where it is a solution} for the instructor's project at ``src`` (``files``:
    its files, relative)."""
    import nbformat
    found, idioms = {}, set()
    for rel in files:
        posix, path = rel.as_posix(), src / rel
        if posix.startswith("vitnp/") and rel.suffix == ".py":
            within, outside = _split_by_regions(path.read_text(encoding="utf-8"), True, posix)
            if not posix.startswith("vitnp/fast/"):           # the fast twins are withheld from the student
                idioms.update(outside)
            for line in within:
                found.setdefault(line, posix)
        elif posix.startswith("notebooks/") and rel.suffix == ".ipynb":
            for cell in nbformat.read(path, as_version=4).cells:
                for line in _split_by_regions(cell.source, cell.cell_type == "code", posix)[0]:
                    found.setdefault(line, f"{posix} ({cell.metadata.get('nbgrader', {}).get('grade_id', '?')})")
    return {line: where for line, where in found.items()
            if len(line) >= MIN_CHARS and line not in idioms and not _BARE_RETURN.fullmatch(line)}


def _text_lines(path: Path):
    """(place, line, is code) of a text file ('line 12'), of a notebook's cell sources and text outputs ('cell 3',
    'cell 3 output'); nothing for binary files."""
    import nbformat
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return
    if path.suffix == ".ipynb":
        try:
            cells = nbformat.reads(text, as_version=4).cells
        except Exception:                                          # not a notebook after all: read it as text
            cells = None
        if cells is not None:
            for i, cell in enumerate(cells):
                for line in cell.source.split("\n"):
                    yield f"cell {i}", line, cell.cell_type == "code"
                for out in cell.get("outputs", []):
                    texts = [out.get("text", "")] + list((out.get("data") or {}).values()) + out.get("traceback", [])
                    for t in texts:
                        t = "".join(t) if isinstance(t, list) else t
                        if isinstance(t, str) and len(t) < 1_000_000:   # skip images (base64)
                            for line in t.split("\n"):
                                yield f"cell {i} output", line, True
            return
    code = path.suffix in (".py", ".sh", ".toml", ".cfg")
    for n, line in enumerate(text.split("\n"), 1):
        yield f"line {n}", line, code


def find_leaks(dst: Path, answers: dict) -> list:
    """[(file, place, answer's origin)] for every answer line found in a file under ``dst``."""
    leaks = []
    for path in sorted(p for p in dst.rglob("*") if p.is_file()):
        for place, line, code in _text_lines(path):
            key = normalize(line, code)
            hit = answers.get(key) if len(key) >= MIN_CHARS else None
            if hit is None and code:                               # a Markdown line of a .py source ("# …")
                plain = normalize(line.lstrip().lstrip("#"), False)
                hit = answers.get(plain) if len(plain) >= MIN_CHARS else None
            if hit is not None:
                leaks.append((path.relative_to(dst).as_posix(), place, hit))
    return leaks
