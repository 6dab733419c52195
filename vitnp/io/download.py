"""Public files fetched over the network, once, into a cache: the original ViT checkpoints (read them with
:func:`vitnp.io.original.load_original`).  Nothing else in vitnp uses the network."""
import os
import shutil
import urllib.request
from pathlib import Path

from .atomic import atomic_write

# The public checkpoints of google-research/vision_transformer that the notebooks can fetch: ImageNet-21k pre-training,
# 224×224, with the 21,843-class head and its pre_logits layer (load_original(..., drop_pre_logits=True) reads it).
ORIGINAL_URLS = {"ViT-B_16": "https://storage.googleapis.com/vit_models/imagenet21k/ViT-B_16.npz"}


def fetch_original(name="ViT-B_16", cache_dir=None, *, timeout=10.0) -> Path:
    """The path of a public original checkpoint (:data:`ORIGINAL_URLS`), downloaded into ``cache_dir`` (default
    ``$VITNP_CACHE``, else ``~/.cache/vitnp``) the first time and read from there afterwards.

    The download goes through a temporary file and a rename (:mod:`vitnp.io.atomic`), so an interrupted one leaves
    nothing behind.  OSError (no network, a refused or timed-out connection, an HTTP error) says why in one line.
    """
    if name not in ORIGINAL_URLS:
        raise ValueError(f"unknown checkpoint {name!r}; known: {', '.join(ORIGINAL_URLS)}")
    cache = Path(cache_dir or os.environ.get("VITNP_CACHE") or "~/.cache/vitnp").expanduser()
    path = cache / f"{name}.npz"
    if path.is_file():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(ORIGINAL_URLS[name], timeout=timeout) as response, \
                atomic_write(path, "wb") as f:
            shutil.copyfileobj(response, f, 1 << 20)
    except OSError as err:
        raise OSError(f"cannot download {ORIGINAL_URLS[name]}: {getattr(err, 'reason', None) or err}") from None
    return path
