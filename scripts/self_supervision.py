#!/usr/bin/env python3
"""§4.6 on our own model: masked patch prediction without labels, then fine-tuning on few labels.

The experiment is :mod:`vitnp.experiments.self_supervision` (its docstring says what is measured and how), its
command line :func:`vitnp.cli.experiments.self_supervision_main`; ``--help`` lists the flags.

    python scripts/self_supervision.py --out runs/self_supervision               # pre-train, fine-tune, probe
"""
import sys

from vitnp.cli.experiments import self_supervision_main

if __name__ == "__main__":
    sys.exit(self_supervision_main())
