"""Command line: ``python -m vitnp COMMAND …``; ``python -m vitnp --help`` lists the commands."""
import argparse
import sys


def _gradcheck(args):
    from .selfcheck import run
    return 0 if run() else 1


def _forward(args):
    """A forward pass of an untrained model on random images: shapes at each step of Eq 1–4."""
    import numpy as np
    from . import ViTConfig, count_params, init_params, vit_forward
    cfg = ViTConfig()
    params = init_params(cfg, seed=0)
    x = np.random.default_rng(0).standard_normal((args.batch_size, *cfg.hw, cfg.in_channels)).astype(cfg.np_dtype)
    logits, cache = vit_forward(params, x, cfg)
    print(f"config: {cfg}")
    print(f"parameters: {count_params(cfg):,}")
    print(f"x {x.shape} -> patches ({args.batch_size}, {cfg.num_patches}, {cfg.patch_dim}) -> "
          f"z0 ({args.batch_size}, {cfg.num_tokens}, {cfg.dim}) -> {cfg.depth} blocks -> y ({args.batch_size}, "
          f"{cfg.dim}) -> logits {logits.shape} {logits.dtype}")
    print(f"attention weights per layer: {cache['attention'][0].shape}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m vitnp", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("gradcheck", help="check every backward against centred differences (float64)")
    p.set_defaults(func=_gradcheck)
    p = sub.add_parser("forward", help="run one forward pass of an untrained ViT and print the shapes")
    p.add_argument("--batch-size", type=int, default=4)
    p.set_defaults(func=_forward)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
