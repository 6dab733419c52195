#!/usr/bin/env python3
"""Two fine-tuning experiments with vitnp (paper §3.2): a higher resolution, and transfer to new classes.

The experiments are :mod:`vitnp.experiments.fine_tuning` (its docstring says what is measured and how), their
command line :func:`vitnp.cli.experiments.fine_tuning_main`; ``--help`` lists the flags.

    python scripts/finetune_experiments.py --out runs/finetune                 # both experiments
    python scripts/finetune_experiments.py --out runs/finetune --figures docs/figures
    python scripts/finetune_experiments.py --out runs/finetune --only transfer --seeds 0,1,2
"""
import sys

from vitnp.cli.experiments import fine_tuning_main

if __name__ == "__main__":
    sys.exit(fine_tuning_main())
