"""``python -m vitnp visualize CHECKPOINT [IMAGE …] --out DIR``: the maps of :mod:`vitnp.analysis.visualize` as PNGs."""
from __future__ import annotations

from ..analysis.visualize import visualize
from . import add_data_flags
from .evaluate import add_reference_argument


def add_visualize_arguments(p) -> None:
    p.add_argument("checkpoint", help="a checkpoint.npz or best.npz written by `python -m vitnp train`")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="PNG or JPEG files (or use --index)")
    p.add_argument("--out", required=True, metavar="DIR", help="directory for the PNGs (created if missing)")
    p.add_argument("--index", type=int, action="append", default=[], metavar="N",
                   help="a Fashion-MNIST test image by index (repeatable); needs the data")
    add_data_flags(p, " for --index")
    p.add_argument("--invert", choices=("auto", "yes", "no"), default="auto",
                   help="invert light-background image files, as `predict` does (default: auto)")
    p.add_argument("--upsample", choices=("nearest", "bilinear"), default="nearest",
                   help="rollout map over the pixels: one block per patch (default) or interpolated")
    p.add_argument("--filters", type=int, default=28, metavar="K",
                   help="principal components of E to draw (default 28, as the paper's Fig 7)")
    add_reference_argument(p)


def visualize_cli(args) -> int:
    """``python -m vitnp visualize``: the four PNGs."""
    visualize(args.checkpoint, args.images, args.out, indices=args.index, data=args.data,
              verify=not args.no_verify, invert=args.invert, upsample=args.upsample, n_filters=args.filters,
              reference=args.reference)
    return 0
