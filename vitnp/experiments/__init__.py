"""Experiments that answer the paper's questions on our own model, each resumable, each writing a results.json
that its figure is drawn from (``docs/results.md`` has every number and the command that made it).

========================  =====================================================================================
module                    what it measures
========================  =====================================================================================
``inductive_bias``        §3.1 / Fig 3–4: a ViT, a CNN and a hybrid ViT trained on 1k … 60k images, one budget
``self_supervision``      §4.6: masked patch prediction without labels, then fine-tuning on 1k and 5k labels
``new_heads``             new linear heads on a frozen body: other labellings, a question no label asked, few-shot
``fine_tuning``           §3.2: fine-tuning at a higher resolution; transfer to new classes against training
                          from scratch and a linear probe
``figures``               their figures, drawn from results.json alone
``results``               a resumable results.json: settings checked on resume, saved after every part
========================  =====================================================================================

Their command lines are in :mod:`vitnp.cli.experiments`, run as ``python scripts/inductive_bias.py …``,
``scripts/finetune_experiments.py``, ``scripts/self_supervision.py`` and ``scripts/new_heads.py``.
"""
