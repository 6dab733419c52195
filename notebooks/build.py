"""Rebuild the notebooks from their jupytext-paired sources in ``notebooks/src/`` and execute them in place.

    python notebooks/build.py                  # write and execute every notebook (the full runs)
    VITNP_FAST=1 python notebooks/build.py     # the same with the heavy cells shrunk (≤ 2 min each)
    python notebooks/build.py 03 05            # only the notebooks whose names start with 03 or 05
    python notebooks/build.py --no-execute     # only write the .ipynb files (without outputs)
    python notebooks/build.py --check          # exit 1 if an .ipynb's cells differ from its source

Each ``notebooks/NAME.ipynb`` is paired with ``notebooks/src/NAME.py`` by jupytext: ``notebooks/jupytext.toml``
says ``formats = "ipynb,src//py:percent"``. A source is a Python file in jupytext's "percent" format: ``# %%``
starts a code cell, ``# %% [markdown]`` a Markdown cell whose lines are comments (jupytext strips the ``# ``).
Jupytext converts both ways, so with jupytext installed, saving either file in Jupyter rewrites the other, and
``jupytext --sync notebooks/NAME.ipynb`` copies the newer file's cells into the other one, keeping the outputs.

This script only adds what jupytext does not do: it runs every notebook from its first cell with nbclient, in the
``python3`` kernel, with ``notebooks/`` as the working directory and this process's environment (so ``VITNP_FAST``
reaches the kernel), and writes the result through a temporary file and a rename. The committed notebooks and
their outputs are what the sources produce.
"""
from __future__ import annotations

import argparse
import difflib
import os
import sys
import time
from pathlib import Path

import jupytext
import nbformat
from jupytext.config import load_jupytext_config
from jupytext.paired_paths import paired_paths

from vitnp.io.atomic import atomic_write

HERE = Path(__file__).resolve().parent
SOURCES = "src"            # where jupytext.toml puts the sources; test_notebooks.py checks that the two agree
CELL_TIMEOUT = 1800        # seconds per cell: generous, the full training run is one long cell
KERNEL = "python3"
KERNELSPEC = {"name": KERNEL, "display_name": "Python 3", "language": "python"}


def notebook_names(nb_dir: Path = HERE) -> tuple:
    """01_patches, 02_embeddings, …: one notebook for each numbered source in ``nb_dir/src``."""
    return tuple(sorted(p.stem for p in (nb_dir / SOURCES).glob("[0-9][0-9]_*.py")))


NAMES = notebook_names()


def paired_source(name: str, nb_dir: Path = HERE) -> tuple:
    """(path, jupytext format) of the text file that jupytext pairs with ``nb_dir/{name}.ipynb``."""
    ipynb = str(nb_dir / f"{name}.ipynb")
    config = load_jupytext_config(ipynb)
    formats = config.default_formats(ipynb) if config else None
    if not formats:
        raise RuntimeError(f"no jupytext configuration pairs {ipynb}; expected {nb_dir / 'jupytext.toml'}")
    for path, fmt in paired_paths(ipynb, "ipynb", formats):
        if fmt["extension"] != ".ipynb":
            return Path(path), f"{fmt['extension'][1:]}:{fmt['format_name']}"
    raise RuntimeError(f"the jupytext formats {formats!r} pair {ipynb} with no text file")


def make_notebook(name: str, nb_dir: Path = HERE):
    """The notebook that jupytext reads from the source of ``{name}.ipynb``, without outputs."""
    path, fmt = paired_source(name, nb_dir)
    nb = jupytext.read(path, fmt=fmt, config=load_jupytext_config(str(path)))
    nb.metadata.pop("jupytext", None)          # how the text file was written; the pairing is in jupytext.toml
    nb.metadata.setdefault("kernelspec", dict(KERNELSPEC))
    nb.metadata.setdefault("language_info", {"name": "python"})
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{name[:2]}-{i:03d}"     # stable ids: re-building changes nothing in a diff
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
        jupytext.write(nb, f, fmt="ipynb")


def stale(name: str, nb_dir: Path = HERE) -> str | None:
    """Why ``{name}.ipynb`` does not hold the cells of its source (types and text), or None when it does."""
    ipynb = nb_dir / f"{name}.ipynb"
    source = paired_source(name, nb_dir)[0].relative_to(nb_dir)
    if not ipynb.exists():
        return f"{ipynb.name} is missing"
    have = [(c.cell_type, c.source) for c in jupytext.read(ipynb).cells]
    want = [(c.cell_type, c.source) for c in make_notebook(name, nb_dir).cells]
    for i, (h, w) in enumerate(zip(have, want)):
        if h != w:
            lines = [l for l in difflib.unified_diff(h[1].splitlines(), w[1].splitlines(), lineterm="", n=0)
                     if l[:1] in "+-" and l[:3] not in ("+++", "---")]
            first = lines[0] if lines else f"- {h[0]} cell / + {w[0]} cell"
            return f"{ipynb.name}: cell {i} differs from {source}: {first[:100]}"
    if len(have) != len(want):
        return f"{ipynb.name}: {len(have)} cells, {source} has {len(want)}"
    return None


def main(argv=None, nb_dir: Path = HERE) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("only", nargs="*", help="name prefixes, e.g. 03 05 (default: all)")
    parser.add_argument("--no-execute", action="store_true", help="write the notebooks without running them")
    parser.add_argument("--check", action="store_true", help="only compare the .ipynb cells with the sources")
    args = parser.parse_args(argv)
    every = notebook_names(nb_dir)
    names = [n for n in every if not args.only or any(n.startswith(p) for p in args.only)]
    if not names:
        parser.error(f"no notebook matches {args.only}; the names are {', '.join(every)}")

    if args.check:
        problems = [p for p in (stale(n, nb_dir) for n in names) if p]
        for p in problems:
            print(p)
        print("notebooks match their sources" if not problems else
              "run: python notebooks/build.py NAME (executes it), or jupytext --sync notebooks/NAME.ipynb "
              "(copies the newer file's cells, keeps the outputs)")
        return 1 if problems else 0

    fast = os.environ.get("VITNP_FAST", "") not in ("", "0")
    print(f"mode: {'fast (VITNP_FAST=1)' if fast else 'full'}")
    times = {}
    for name in names:
        nb = make_notebook(name, nb_dir)
        path = nb_dir / f"{name}.ipynb"
        if not args.no_execute:
            t0 = time.perf_counter()
            execute(nb, nb_dir)
            times[name] = time.perf_counter() - t0
            print(f"{name}: executed in {times[name]:.1f} s", flush=True)
        write_atomic(nb, path)
        print(f"wrote {os.path.relpath(path)}", flush=True)
    if times:
        print(f"total {sum(times.values()):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
