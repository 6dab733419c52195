"""Write the notebooks from their sources in ``notebooks/src/`` and execute them in place.

    python notebooks/build.py                  # write and execute every notebook (the full runs)
    VITNP_FAST=1 python notebooks/build.py     # the same with the heavy cells shrunk (≤ 2 min each)
    python notebooks/build.py 03 05            # only the notebooks whose names start with 03 or 05
    python notebooks/build.py --no-execute     # only write the .ipynb files (without outputs)
    python notebooks/build.py --check          # exit 1 if an .ipynb's cells differ from its source

A source is a Python file in the "percent" format that Jupytext and VS Code understand: ``# %%`` starts
a code cell, ``# %% [markdown]`` a Markdown cell whose lines are written as comments (``# `` is
stripped).  Edit the source, then run this script: the committed notebooks and their outputs are always
what the sources produce.  Each notebook runs with ``notebooks/`` as its working directory, in the
``python3`` kernel, and inherits this process's environment (so ``VITNP_FAST`` reaches it).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat

from vitnp.atomic import atomic_write

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"
NAMES = tuple(sorted(p.stem for p in SRC.glob("[0-9][0-9]_*.py")))   # 01_patches, 02_embeddings, …
CELL_TIMEOUT = 1800        # seconds per cell: generous, the full training run is one long cell
KERNEL = "python3"


def parse_source(text: str) -> list:
    """Percent-format text -> [(kind, source)] with kind 'markdown' or 'code', blank edges trimmed."""
    cells, kind, lines = [], None, []

    def close():
        if kind is None:
            if any(l.strip() for l in lines):
                raise ValueError("text before the first '# %%' marker")
            return
        body = "\n".join(lines).strip("\n")
        if body.strip():
            cells.append((kind, body))

    for line in text.splitlines():
        if line.startswith("# %%"):
            close()
            marker = line[4:].strip()
            if marker not in ("", "[markdown]"):
                raise ValueError(f"unknown cell marker {line!r}; use '# %%' or '# %% [markdown]'")
            kind, lines = ("markdown" if marker else "code"), []
        elif kind == "markdown":
            if line and not line.startswith("#"):
                raise ValueError(f"a Markdown cell line must start with '#': {line!r}")
            lines.append(line[2:] if line.startswith("# ") else line[1:])
        else:
            lines.append(line)
    close()
    return cells


def make_notebook(name: str):
    """The nbformat v4 notebook for ``name`` from ``src/{name}.py``, without outputs."""
    cells = []
    for i, (kind, body) in enumerate(parse_source((SRC / f"{name}.py").read_text(encoding="utf-8"))):
        cell = nbformat.v4.new_markdown_cell(body) if kind == "markdown" else nbformat.v4.new_code_cell(body)
        cell["id"] = f"{name[:2]}-{i:03d}"        # stable ids: re-building changes nothing in a diff
        cells.append(cell)
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def execute(nb, cwd, timeout=CELL_TIMEOUT):
    """Run every cell of ``nb`` top to bottom (in place); raises nbclient's CellExecutionError on error."""
    from nbclient import NotebookClient
    client = NotebookClient(nb, timeout=timeout, kernel_name=KERNEL, record_timing=False,
                            resources={"metadata": {"path": str(cwd)}})
    client.execute()
    return nb


def write_atomic(nb, path: Path):
    """Validate and write ``nb`` to ``path`` through a temporary file and a rename (never half a file)."""
    nbformat.validate(nb)
    with atomic_write(path, "w") as f:
        nbformat.write(nb, f)


def cell_sources(nb) -> list:
    """[(cell type, source)] of a notebook: what ``--check`` compares."""
    return [(c.cell_type, c.source) for c in nb.cells]


def stale(name: str) -> str | None:
    """Why ``{name}.ipynb`` does not match its source, or None when it does."""
    path = HERE / f"{name}.ipynb"
    if not path.exists():
        return f"{path.name} is missing"
    have = cell_sources(nbformat.read(path, as_version=4))
    want = cell_sources(make_notebook(name))
    if have == want:
        return None
    for i, (h, w) in enumerate(zip(have, want)):
        if h != w:
            return f"{path.name}: cell {i} differs from src/{name}.py"
    return f"{path.name}: {len(have)} cells, src/{name}.py makes {len(want)}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("only", nargs="*", help="name prefixes, e.g. 03 05 (default: all)")
    parser.add_argument("--no-execute", action="store_true", help="write the notebooks without running them")
    parser.add_argument("--check", action="store_true", help="only compare the .ipynb cells with the sources")
    args = parser.parse_args(argv)
    names = [n for n in NAMES if not args.only or any(n.startswith(p) for p in args.only)]
    if not names:
        parser.error(f"no notebook matches {args.only}; the names are {', '.join(NAMES)}")

    if args.check:
        problems = [p for p in map(stale, names) if p]
        for p in problems:
            print(p)
        print("notebooks match their sources" if not problems else "run: python notebooks/build.py")
        return 1 if problems else 0

    fast = os.environ.get("VITNP_FAST", "") not in ("", "0")
    print(f"mode: {'fast (VITNP_FAST=1)' if fast else 'full'}")
    times = {}
    for name in names:
        nb = make_notebook(name)
        path = HERE / f"{name}.ipynb"
        if not args.no_execute:
            t0 = time.perf_counter()
            execute(nb, HERE)
            times[name] = time.perf_counter() - t0
            print(f"{name}: executed in {times[name]:.1f} s", flush=True)
        write_atomic(nb, path)
        print(f"wrote {path.relative_to(HERE.parent)}", flush=True)
    if times:
        print(f"total {sum(times.values()):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
