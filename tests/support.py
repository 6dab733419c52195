"""What several test modules share: small synthetic data and a tiny ViT (no network, no real data), a bitwise
comparison of parameter dicts, and a subprocess with capped memory.

The task: class k of 10 has a bright horizontal band at rows 2 + 2k … 3 + 2k, over uniform noise; a tiny ViT
learns it in a few epochs, so training, resuming and evaluation can be tested in seconds.
"""
import subprocess
import sys
import textwrap

import numpy as np

from vitnp import ViTConfig

# A tiny ViT with dropout (so a resumed run must restore the dropout RNG too): 28×28×1, P = 7 (16 tokens).
TINY = ViTConfig(patch_size=7, dim=16, depth=1, heads=2, mlp_dim=32, dropout=0.1)


def bands(n, seed, noise=60):
    """uint8 (n, 28, 28, 1) images whose class k has a bright band at rows 2+2k … 3+2k; labels 0..9 (int64)."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 10)
    images = rng.integers(0, noise, size=(n, 28, 28, 1))
    for i, k in enumerate(labels):
        images[i, 2 + 2 * k:4 + 2 * k, 4:24] += 180
    return images.astype(np.uint8), labels.astype(np.int64)


def band_data(n_train=64, n_test=30):
    """(train images, train labels, test images, test labels), train from seed 0 and test from seed 1."""
    return (*bands(n_train, 0), *bands(n_test, 1))


def assert_same_arrays(a: dict, b: dict):
    """Same keys in the same order, and every array bitwise equal (dtype, shape and bytes)."""
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert a[k].tobytes() == b[k].tobytes(), f"{k} differs"


def refused_under_memory_limit(call: str, limit_mb: int) -> str:
    """Run ``call`` (Python source that raises ValueError on refusal) in a subprocess whose address space is
    capped at ``limit_mb`` MiB; return what it printed: 'refused: <message>', or fail with its traceback."""
    code = textwrap.dedent(f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, ({limit_mb} << 20, {limit_mb} << 20))
        try:
            {call}
        except ValueError as err:
            print("refused:", err)
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout
