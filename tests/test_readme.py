"""Every ```python block of the README runs as written, in a fresh interpreter, in the order the README gives."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def python_blocks(text: str) -> list:
    return re.findall(r"^```python\n(.*?)^```", text, re.M | re.S)


def test_python_blocks_of_the_readme_run(tmp_path):
    blocks = python_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    assert blocks, "the README has no ```python block"
    for i, block in enumerate(blocks):
        p = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, f"README python block {i + 1} fails:\n{block}\n{p.stderr[-2000:]}"


def test_the_block_finder_finds_a_failing_block(tmp_path):
    """The check can fail: a block that raises is reported (run the same way as the README's)."""
    block, = python_blocks("text\n```python\nimport vitnp\nvitnp.ops.no_such_module\n```\nmore\n")
    p = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert p.returncode != 0 and "no_such_module" in p.stderr
