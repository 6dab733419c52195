"""The notebooks in notebooks/: executed top to bottom in fast mode, as CI does, and checked for drift.

* every notebook runs without an error with ``VITNP_FAST=1`` (each cell may take up to CELL_TIMEOUT s); the
  run happens in memory, in a temporary working directory, so the committed notebooks are never rewritten;
* 06_training also runs without the Fashion-MNIST files and must then say that it used synthetic data;
* the committed .ipynb files hold exactly the cells of their sources in notebooks/src/, with the outputs of
  a full (not fast) run: regenerate them with ``python notebooks/build.py``;
* each of Eq 1–8 has a code cell that names it and asserts against the library; every notebook links the
  glossary.

Needs nbformat, nbclient and ipykernel (``pip install -e ".[notebooks]"``).
"""
import importlib.util
import re
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
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


def test_source_parser_round_trip():
    cells = build.parse_source("# %% [markdown]\n# # Title\n#\n# text $x$\n\n# %%\nx = 1\n\n\n# %%\nassert x\n")
    assert cells == [("markdown", "# Title\n\ntext $x$"), ("code", "x = 1"), ("code", "assert x")]
    with pytest.raises(ValueError, match="before the first"):
        build.parse_source("x = 1\n# %%\n")
    with pytest.raises(ValueError, match="must start with '#'"):
        build.parse_source("# %% [markdown]\nnot a comment\n")
