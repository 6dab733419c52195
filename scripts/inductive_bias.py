#!/usr/bin/env python3
"""Inductive bias against data size: a ViT, a CNN and a hybrid ViT trained on 1k … 60k Fashion-MNIST images.

The experiment is :mod:`vitnp.experiments.inductive_bias` (its docstring says what is measured and how), its
command line :func:`vitnp.cli.experiments.inductive_bias_main`; ``--help`` lists the flags.

    python scripts/inductive_bias.py --out runs/inductive_bias                        # the whole sweep
    python scripts/inductive_bias.py --out runs/ib --sizes 1000,5000 --models vit,cnn --steps 200 --jobs 2
"""
import sys

from vitnp.cli.experiments import inductive_bias_main

if __name__ == "__main__":
    sys.exit(inductive_bias_main())
