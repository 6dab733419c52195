"""Every cross-reference in the notebooks and the glossary points somewhere real.

Checked in ``notebooks/src/*.py`` (the notebooks' sources) and ``docs/glossary.md``:

* "notebook 07", "Notebook 07", "notebooks 02–03", "notebooks 01 and 05": each number names a notebook that exists
  (``notebooks/src/NN_*.py``); in the glossary, the numbers of the "where" column too;
* "§4.3", "§3": a section of the paper, from the table below;
* "Appendix D.7", "Appendix D.7–D.8": an appendix of the paper, from the same table;
* links to ``../notebooks/NN_name.ipynb``: the file exists.

The table is the outline of Dosovitskiy et al., *An Image is Worth 16x16 Words* (ICLR 2021, arXiv 2010.11929).
Each check can fail: ``test_bad_references_are_caught`` feeds it wrong references.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "notebooks" / "src").glob("[0-9][0-9]_*.py"))
GLOSSARY = ROOT / "docs" / "glossary.md"

# The paper's sections and appendices (arXiv 2010.11929v2, the ICLR 2021 version).
PAPER_SECTIONS = {
    "1": "Introduction",
    "2": "Related Work",
    "3": "Method",
    "3.1": "Vision Transformer (ViT)",
    "3.2": "Fine-tuning and higher resolution",
    "4": "Experiments",
    "4.1": "Setup",
    "4.2": "Comparison to state of the art",
    "4.3": "Pre-training data requirements",
    "4.4": "Scaling study",
    "4.5": "Inspecting Vision Transformer",
    "4.6": "Self-supervision",
    "5": "Conclusion",
}
PAPER_APPENDICES = {
    "A": "Multihead self-attention",
    "B": "Experiment details",
    "B.1": "Training",
    "B.1.1": "Fine-tuning",
    "B.1.2": "Self-supervision",
    "C": "Additional results",
    "D": "Additional analyses",
    "D.1": "SGD vs. Adam for ResNets",
    "D.2": "Transformer shape",
    "D.3": "Head type and class token",
    "D.4": "Positional embedding",
    "D.5": "Empirical computational costs",
    "D.6": "Axial attention",
    "D.7": "Attention distance",
    "D.8": "Attention maps",
    "D.9": "ObjectNet results",
    "D.10": "VTAB breakdown",
}

NUM = r"\d\d(?!\d)"
# "notebook 07", "notebooks 02–03", "notebooks 01, 02 and 05": the first number, then any "–NN", ", NN", "and NN"
NOTEBOOK_REF = re.compile(rf"\bnotebooks?\s+({NUM}(?:\s*(?:[–-]|,|and|or)\s*{NUM})*)", re.IGNORECASE)
SECTION_REF = re.compile(r"§\s*(\d+(?:\.\d+)*)((?:\s*[–-]\s*§?\s*\d+(?:\.\d+)*)?)")
APPENDIX_REF = re.compile(r"\bAppendix\s+([A-Z](?:\.\d+)*)(?![\w.]*\w)((?:\s*[–-]\s*[A-Z](?:\.\d+)*)?)")
NOTEBOOK_LINK = re.compile(r"\]\(\.\./notebooks/([^)#\s]+)\)")


def notebook_numbers() -> set:
    """'01', '02', …: the numbers of the notebooks that exist."""
    return {p.name[:2] for p in SOURCES}


def _tail(tail: str) -> list:
    """The references after the first in '–03', '– D.8', '–§4.4' (the end of a range)."""
    return re.findall(r"[A-Z](?:\.\d+)*|\d+(?:\.\d+)*", tail)


def bad_references(text: str, notebooks: set) -> list:
    """Every reference in ``text`` that points nowhere, as (reference, reason) pairs."""
    bad = []
    for m in NOTEBOOK_REF.finditer(text):
        for n in re.findall(NUM, m.group(1)):
            if n not in notebooks:
                bad.append((m.group(0), f"there is no notebook {n}"))
    for m in SECTION_REF.finditer(text):
        for s in [m.group(1)] + _tail(m.group(2)):
            if s not in PAPER_SECTIONS:
                bad.append((m.group(0), f"the paper has no section {s}"))
    for m in APPENDIX_REF.finditer(text):
        for s in [m.group(1)] + _tail(m.group(2)):
            if s not in PAPER_APPENDICES:
                bad.append((m.group(0), f"the paper has no appendix {s}"))
    return bad


def bad_glossary_places(text: str, notebooks: set) -> list:
    """Numbers in the "where" column of the glossary's tables that name no notebook."""
    bad, where = [], None
    for line in text.splitlines():
        if not line.startswith("|"):
            where = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if where is None:                                    # a table's header row
            where = cells.index("where") if "where" in cells else -1
            continue
        if where < 0 or where >= len(cells) or set(cells[where]) <= set("-: "):
            continue
        place = re.sub(r"`[^`]*`", "", cells[where])        # code spans name vitnp, not notebooks
        for n in re.findall(rf"(?<![\w.]){NUM}(?![\w.])", place):
            if n not in notebooks:
                bad.append((cells[0], f"'where' names notebook {n}, which does not exist"))
    return bad


def bad_links(text: str, base: Path) -> list:
    """Relative links to ../notebooks/… whose file does not exist."""
    return [(m.group(0), "no such file") for m in NOTEBOOK_LINK.finditer(text)
            if not (base.parent / "notebooks" / m.group(1)).exists()]


@pytest.mark.parametrize("path", SOURCES + [GLOSSARY], ids=lambda p: p.name)
def test_references_point_somewhere(path):
    text = path.read_text(encoding="utf-8")
    bad = bad_references(text, notebook_numbers())
    if path == GLOSSARY:
        bad += bad_glossary_places(text, notebook_numbers()) + bad_links(text, GLOSSARY.parent)
    assert not bad, f"{path.relative_to(ROOT)}: " + "; ".join(f"{ref!r}: {why}" for ref, why in bad)


def test_the_files_have_references():
    """The patterns find what they are meant to find (a regex that matches nothing would pass everything)."""
    text = "\n".join(p.read_text(encoding="utf-8") for p in SOURCES)
    assert len(NOTEBOOK_REF.findall(text)) > 20
    assert len(SECTION_REF.findall(text)) > 10
    assert len(APPENDIX_REF.findall(text)) > 5
    glossary = GLOSSARY.read_text(encoding="utf-8")
    assert "09" in glossary and not bad_glossary_places(glossary, notebook_numbers())


def test_bad_references_are_caught():
    nbs = {"01", "02", "07"}
    good = ("notebook 07 and Notebook 01; notebooks 01–02; §3.1, §4.3 (Fig 3) and §4.4; Appendix A, Appendix D.7–D.8, "
            "Appendix B.1.1; §3")
    assert bad_references(good, nbs) == []
    cases = {
        "see notebook 06": "notebook 06",
        "Notebooks 01–04 built it": "notebook 04",
        "notebooks 01, 02 and 12": "notebook 12",
        "paper §4.7": "section 4.7",
        "§3.1–§3.3": "section 3.3",
        "Appendix E": "appendix E",
        "Appendix D.11": "appendix D.11",
        "Appendix D.7–D.12": "appendix D.12",
        "Appendix B.2": "appendix B.2",
    }
    for text, what in cases.items():
        reasons = [why for _, why in bad_references(text, nbs)]
        assert len(reasons) == 1 and reasons[0].endswith(what), (text, reasons)
    table = "| English | 한국어 | where | in one line |\n|---|---|---|---|\n| hybrid | 하이브리드 | 02, 08 | … |\n"
    assert [why for _, why in bad_glossary_places(table, nbs)] == ["'where' names notebook 08, which does not exist"]
    assert bad_links("[10](../notebooks/10_nothing_here.ipynb)", GLOSSARY.parent)
