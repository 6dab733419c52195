"""Files: run directories and their checkpoints, the original JAX/flax checkpoints, safe writes and reads.

==================  ======================================================================================
module              what lives there
==================  ======================================================================================
``io.rundir``       a run directory's files (config, metrics, ``checkpoint.npz``, ``best.npz``), its lock,
                    ``save_checkpoint`` / ``load_checkpoint``
``io.original``     the original google-research/vision_transformer ``.npz`` layout, both ways
``io.npz``          ``.npz`` files read with budgets and no pickle
``io.atomic``       writes that never leave a half-written file (temporary file, then rename)
==================  ======================================================================================
"""
