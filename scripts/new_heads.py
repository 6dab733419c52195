#!/usr/bin/env python3
"""New heads on a frozen ViT body: other labellings, a task the labels never asked for, and few-shot heads.

The experiment is :mod:`vitnp.experiments.new_heads` (its docstring says what is measured and how), its command line
:func:`vitnp.cli.experiments.new_heads_main`; ``--help`` lists the flags.

    python scripts/new_heads.py --out runs/new_heads
"""
import sys

from vitnp.cli.experiments import new_heads_main

if __name__ == "__main__":
    sys.exit(new_heads_main())
