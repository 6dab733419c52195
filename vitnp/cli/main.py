"""Command line: python -m vitnp COMMAND …; python -m vitnp COMMAND --help explains one.

Every command's parser lives in vitnp/cli/; each command's code is imported only when it runs."""
import argparse
import sys


def _gradcheck(args):
    from ..selfcheck import run
    return 0 if run() else 1


def _forward_demo(args):
    """A forward pass of an untrained model on random images: shapes at each step of Eq 1–4."""
    import numpy as np
    from .. import ViTConfig, count_params, init_params, vit_forward
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


def _guarded(command, args):
    """Run a command; expected errors (bad paths, corrupt or mismatched files, bad values) become one
    line ``error: …`` on stderr and exit status 2, Ctrl-C exits with 130; anything else still raises."""
    try:
        return command(args)
    except (OSError, ValueError, TypeError) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except MemoryError as err:
        print(f"error: out of memory: {' '.join(str(err).split()) or 'an allocation failed'} (a smaller "
              f"--batch-size, model or image size needs less)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _lazy(module, function, guarded=True):
    """The handler of a command whose code lives in ``vitnp.<module>.<function>``, imported only when it runs
    (so ``python -m vitnp --help`` stays fast); expected errors go through :func:`_guarded`."""
    def handler(args):
        import importlib
        command = getattr(importlib.import_module(f"vitnp.{module}"), function)
        return _guarded(command, args) if guarded else command(args)
    return handler


# The commands whose code lives elsewhere: (name, module of vitnp.cli with its parser, the function there that adds
# the options, where the command's code is (module of vitnp, function), help, description or None).
COMMANDS = (
    ("bench", "bench", "add_arguments", ("bench.run", "run"),
     "training-step and inference throughput, next to PyTorch on the CPU",
     "Time vitnp's float32 training step (forward + backward + AdamW) and inference, alternating with the same "
     "ViT in PyTorch eager (if installed), and time the gradient-check suite. See docs/performance.md."),
    ("train", "train", "add_train_arguments", ("cli.train", "train_cli"),
     "train a ViT (or the CNN baseline) on Fashion-MNIST into a run directory (resumable)",
     "Train a ViT, a hybrid ViT (--stem) or the CNN baseline (--model cnn) on Fashion-MNIST, from scratch or from "
     "a checkpoint (--init-from); RUN_DIR gets config.json, metrics.jsonl, checkpoint.npz, best.npz and PNG "
     "plots. Ctrl-C saves a checkpoint."),
    ("evaluate", "evaluate", "add_evaluate_arguments", ("cli.evaluate", "evaluate_cli"),
     "test accuracy and per-class accuracy of a checkpoint", None),
    ("predict", "evaluate", "add_predict_arguments", ("cli.evaluate", "predict_cli"),
     "top-3 classes of PNG/JPEG images with a checkpoint", None),
    ("info", "evaluate", "add_info_arguments", ("cli.evaluate", "info_cli"),
     "config and parameter counts of a checkpoint", None),
    ("visualize", "visualize", "add_visualize_arguments", ("cli.visualize", "visualize_cli"),
     "attention rollout, attention distance, E_pos similarity and E filters of a checkpoint as PNGs (paper Fig 6, "
     "Fig 7)",
     "Write rollout.png (Fig 6), attention_distance.png (Fig 7 right), pos_embedding_similarity.png (Fig 7 "
     "centre) and filters.png (Fig 7 left) for a checkpoint and some images into DIR."),
    ("course", "course", "add_arguments", ("cli.course", "run"),
     "the course edition: build the student copy, grade a copy, list exercises",
     "The course edition (docs/course.md): `build --out DIR` writes the student copy with the solutions cut out, "
     "`grade [--root DIR]` grades a copy on the gradient checks, `list` lists the exercises."),
)


def main(argv=None):
    import importlib
    parser = argparse.ArgumentParser(prog="python -m vitnp", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("gradcheck", help="check every backward against centred differences (float64)")
    p.set_defaults(func=lambda args: _guarded(_gradcheck, args))
    p = sub.add_parser("forward", help="run one forward pass of an untrained ViT and print the shapes")
    p.add_argument("--batch-size", type=int, default=4)
    p.set_defaults(func=lambda args: _guarded(_forward_demo, args))
    for name, module, add_options, (where, function), help_text, description in COMMANDS:
        p = sub.add_parser(name, help=help_text, description=description)
        getattr(importlib.import_module(f"{__package__}.{module}"), add_options)(p)
        p.set_defaults(func=_lazy(where, function))
    args = parser.parse_args(argv)
    return args.func(args)
