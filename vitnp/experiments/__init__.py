"""Experiments that answer the paper's questions on our own model, each resumable, each writing a results.json
that its figure is drawn from (``docs/results.md`` has every number and the command that made it).

========================  =====================================================================================
module                    what it measures
========================  =====================================================================================
``inductive_bias``        §3.1 / Fig 3–4: a ViT, a CNN and a hybrid ViT trained on 1k … 60k images, one budget
``fine_tuning``           §3.2: fine-tuning at a higher resolution; transfer to new classes against training
                          from scratch and a linear probe
``figures``               their figures, drawn from results.json alone
========================  =====================================================================================

Their command lines are in :mod:`vitnp.cli.experiments` (run as ``python scripts/inductive_bias.py …`` and
``python scripts/finetune_experiments.py …``).
"""
