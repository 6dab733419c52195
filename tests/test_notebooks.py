"""The notebooks in notebooks/: executed top to bottom in fast mode, as CI does, and checked for drift.

* every notebook runs without an error with ``VITNP_FAST=1`` (each cell may take up to CELL_TIMEOUT s); the
  run happens in memory, in a temporary working directory, so the committed notebooks are never rewritten;
* 06_training also runs without the Fashion-MNIST files and must then say that it used synthetic data;
* the committed .ipynb files hold exactly the cells of their jupytext-paired sources in notebooks/src/, with
  the outputs of a full (not fast) run: regenerate them with ``python notebooks/build.py``;
* the pairing is jupytext's own (notebooks/jupytext.toml), ``jupytext --sync`` leaves the committed pairs
  unchanged and carries an edit from a source into its notebook, and the drift check catches a mismatch;
* each of Eq 1–8 has a code cell that names it and asserts against the library; every notebook links the
  glossary.

Needs jupytext, nbformat, nbclient and ipykernel (``pip install -e ".[notebooks]"``).
"""
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
jupytext = pytest.importorskip("jupytext")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
CELL_TIMEOUT = 300          # seconds per cell in fast mode (a notebook should take ≤ 2 minutes in all)

_spec = importlib.util.spec_from_file_location("notebooks_build", NB_DIR / "build.py")
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)

# Where each equation is computed, and the notebook that asserts it against a hand-written version.
EQUATIONS = {1: "02_embeddings", 2: "04_encoder_block", 3: "04_encoder_block", 4: "04_encoder_block",
             5: "03_attention", 6: "03_attention", 7: "03_attention", 8: "03_attention"}


def _execute(name, tmp_path, monkeypatch, **env):
    """Run notebooks/{name}.ipynb in fast mode in memory; returns (executed notebook, seconds)."""
    monkeypatch.setenv("VITNP_FAST", "1")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4)
    t0 = time.perf_counter()
    build.execute(nb, tmp_path, timeout=CELL_TIMEOUT)        # raises CellExecutionError on any error
    seconds = time.perf_counter() - t0
    nbformat.write(nb, tmp_path / f"{name}.ipynb")            # for inspection after a failure
    return nb, seconds


def _text_outputs(nb):
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


@pytest.mark.parametrize("name", build.NAMES)
def test_notebook_executes_in_fast_mode(name, tmp_path, monkeypatch):
    nb, seconds = _execute(name, tmp_path, monkeypatch)
    sys.stderr.write(f"{name}: {seconds:.1f} s in fast mode\n")
    assert "mode: fast (VITNP_FAST=1)" in _text_outputs(nb)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors


def test_training_notebook_falls_back_to_synthetic_data(tmp_path, monkeypatch):
    empty = tmp_path / "no-fashion-mnist"
    empty.mkdir()
    nb, _ = _execute("06_training", tmp_path, monkeypatch, VITNP_DATA=str(empty))
    text = _text_outputs(nb)
    assert "Fashion-MNIST is NOT installed here" in text and "SYNTHETIC" in text


@pytest.mark.parametrize("name", build.NAMES)
def test_committed_notebook_matches_its_source_and_has_full_outputs(name):
    problem = build.stale(name)
    assert problem is None, f"{problem}; regenerate with: python notebooks/build.py"
    nb = nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), f"{name}.ipynb has unexecuted cells"
    assert "mode: full" in _text_outputs(nb), f"{name}.ipynb was not executed in full mode (VITNP_FAST unset)"


@pytest.mark.parametrize("name", build.NAMES)
def test_notebook_links_the_glossary(name):
    nb = build.make_notebook(name)
    assert "../docs/glossary.md" in "".join(c.source for c in nb.cells[:2] if c.cell_type == "markdown")
    assert (ROOT / "docs" / "glossary.md").is_file()


@pytest.mark.parametrize("eq", sorted(EQUATIONS))
def test_every_equation_is_asserted_against_the_library(eq):
    """A code cell of the notebook names Eq {eq} (alone or in a range like 'Eq 5–8') and asserts."""
    nb = build.make_notebook(EQUATIONS[eq])

    def names_eq(source):
        for a, b in re.findall(r"Eq (\d)(?:\s*[–-]\s*(\d))?", source):
            if int(a) == eq or (b and int(a) <= eq <= int(b)):
                return True
        return False

    cells = [c.source for c in nb.cells if c.cell_type == "code" and names_eq(c.source) and "assert" in c.source]
    assert cells, f"no code cell of {EQUATIONS[eq]} names Eq {eq} and asserts"


def _copy_pairs(names, dest):
    """Copy jupytext.toml and the named notebooks with their sources into ``dest``; returns dest."""
    (dest / "src").mkdir(parents=True)
    shutil.copy(NB_DIR / "jupytext.toml", dest / "jupytext.toml")
    for name in names:
        shutil.copy(NB_DIR / f"{name}.ipynb", dest / f"{name}.ipynb")
        shutil.copy(NB_DIR / "src" / f"{name}.py", dest / "src" / f"{name}.py")
    return dest


def _jupytext_sync(paths):
    """``jupytext --sync`` on the given files, as a teacher would run it; returns its output."""
    run = subprocess.run([sys.executable, "-m", "jupytext", "--sync", *map(str, paths)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout + run.stderr


@pytest.mark.parametrize("name", build.NAMES)
def test_jupytext_pairs_each_notebook_with_its_source_in_src(name):
    assert build.paired_source(name) == (NB_DIR / "src" / f"{name}.py", "py:percent")


def test_percent_convention_as_jupytext_reads_it():
    """The convention the sources use: '# %%' starts a code cell; '# %% [markdown]' a Markdown cell whose
    lines are '# '-prefixed comments; blank lines between cells belong to no cell."""
    nb = jupytext.reads("# %% [markdown]\n# # Title\n#\n# text $x$\n\n# %%\nx = 1\n\n\n# %%\nassert x\n",
                        fmt="py:percent")
    assert [(c.cell_type, c.source) for c in nb.cells] == [
        ("markdown", "# Title\n\ntext $x$"), ("code", "x = 1"), ("code", "assert x")]


def test_check_catches_a_notebook_that_differs_from_its_source(tmp_path, capsys):
    nb_dir = _copy_pairs(["01_patches"], tmp_path / "notebooks")
    source = nb_dir / "src" / "01_patches.py"
    text = source.read_text(encoding="utf-8")
    assert build.stale("01_patches", nb_dir) is None
    assert build.main(["--check"], nb_dir=nb_dir) == 0

    edited = text.replace("# %%\n", "# %%\nx_edited = 1\n", 1)       # a line added to the first code cell
    assert edited != text
    source.write_text(edited, encoding="utf-8")
    problem = build.stale("01_patches", nb_dir)
    assert problem is not None and "differs from src/01_patches.py" in problem and "x_edited" in problem
    assert build.main(["--check"], nb_dir=nb_dir) == 1
    assert "01_patches.ipynb: cell" in capsys.readouterr().out

    source.write_text(text + "\n# %%\nprint('one more cell')\n", encoding="utf-8")
    assert "cells, src/01_patches.py has" in build.stale("01_patches", nb_dir)

    build.main(["--no-execute", "01"], nb_dir=nb_dir)                 # rebuilding fixes it
    assert build.stale("01_patches", nb_dir) is None
    (nb_dir / "01_patches.ipynb").unlink()
    assert build.stale("01_patches", nb_dir) == "01_patches.ipynb is missing"


def test_jupytext_sync_leaves_the_committed_pairs_unchanged(tmp_path):
    """Whichever file of a pair is newer, ``jupytext --sync`` rewrites the other with the same bytes."""
    nb_dir = _copy_pairs(build.NAMES, tmp_path / "notebooks")
    files = sorted(nb_dir.glob("*.ipynb")) + sorted((nb_dir / "src").glob("*.py"))
    before = {p: p.read_bytes() for p in files}
    for newer in ("src/*.py", "*.ipynb"):
        later = time.time() + 10
        for p in nb_dir.glob(newer):
            os.utime(p, (later, later))
        _jupytext_sync(sorted(nb_dir.glob("*.ipynb")))
        changed = [p.relative_to(nb_dir) for p in files if p.read_bytes() != before[p]]
        assert not changed, f"jupytext --sync with {newer} newer rewrote {changed}"


def test_jupytext_sync_carries_a_source_edit_into_the_notebook_and_keeps_the_outputs(tmp_path):
    nb_dir = _copy_pairs(["01_patches"], tmp_path / "notebooks")
    ipynb, source = nb_dir / "01_patches.ipynb", nb_dir / "src" / "01_patches.py"
    before = nbformat.read(ipynb, as_version=4)
    text = source.read_text(encoding="utf-8")
    source.write_text(text.replace("an image becomes a sequence", "an image becomes a SEQUENCE", 1), encoding="utf-8")
    later = time.time() + 10
    os.utime(source, (later, later))
    _jupytext_sync([ipynb])
    after = nbformat.read(ipynb, as_version=4)
    assert "an image becomes a SEQUENCE" in after.cells[0].source
    assert [c.get("outputs") for c in after.cells] == [c.get("outputs") for c in before.cells]
    assert build.stale("01_patches", nb_dir) is None
