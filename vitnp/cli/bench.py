"""``python -m vitnp bench``'s options, and the entry point of the vitnp worker process that the benchmark starts
(``python -m vitnp.cli.bench worker``); the benchmark itself is :mod:`vitnp.bench`."""
import argparse
import sys

from ..bench.run import CONFIGS, TORCH_WORKER, run, vitnp_worker


def add_arguments(p: argparse.ArgumentParser):
    """The options of ``python -m vitnp bench``."""
    p.add_argument("--config", choices=[*CONFIGS, "all"], default="all")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=None,
                   help="timed steps per round and side (default: small 10, base28 3)")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for both sides (default: vitnp.fast.parallel.num_threads(): the BLAS thread count, "
                        "one per core unless OPENBLAS_NUM_THREADS says otherwise)")
    p.add_argument("--no-torch", action="store_true", help="measure vitnp only")
    p.add_argument("--torch-worker", default=None, help=f"path of the PyTorch worker (default {TORCH_WORKER})")
    p.add_argument("--torch-attention", choices=("both", "sdpa", "explicit"), default="both",
                   help="PyTorch sides: F.scaled_dot_product_attention (the baseline of the ratios), explicit "
                        "softmax(q kᵀ/√D_h) v with the weights materialised as vitnp does, or both (default); "
                        "--profile uses sdpa for 'both'")
    p.add_argument("--eval-batch-size", type=int, default=500,
                   help="inference is also timed at this batch size (default 500, the CLI's evaluation batch) "
                        "and at batch 1 (latency)")
    p.add_argument("--reference", action="store_true",
                   help="also time the clear reference model (vitnp.model) as a third side, in the same rounds")
    p.add_argument("--ops", action="store_true",
                   help="instead: time each fast op against its reference twin (forward + backward, base28 shapes)")
    p.add_argument("--write-table", nargs="?", const="docs/performance.md", default=None, metavar="MD",
                   help="with --ops: write the gains into the table of this Markdown file (default "
                        "docs/performance.md), between its 'bench --ops --write-table' marker lines")
    p.add_argument("--profile", action="store_true",
                   help="instead: per-op time of one training step and one inference pass on one thread, vitnp "
                        "next to PyTorch's profiler (Markdown tables)")
    p.add_argument("--no-gradcheck", action="store_true", help="do not time the gradient-check suite")
    p.add_argument("--json", default=None, metavar="PATH", help="also write every number to this JSON file")
    p.add_argument("--quiet", action="store_true", help="print only the table")


def main(argv=None) -> int:
    """``python -m vitnp.cli.bench [worker] …``: the benchmark, or (``worker``) the vitnp side that it starts as a
    subprocess and times (:func:`vitnp.bench.run.serve`'s protocol)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["worker"]:
        p = argparse.ArgumentParser(prog="python -m vitnp.cli.bench worker")
        p.add_argument("--config", required=True)
        p.add_argument("--batch-size", type=int, default=128)
        p.add_argument("--threads", type=int, required=True)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--path", choices=("fast", "reference"), default="fast")
        return vitnp_worker(p.parse_args(argv[1:]))
    p = argparse.ArgumentParser(prog="python -m vitnp.cli.bench", description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
