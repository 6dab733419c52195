"""File formats: the original JAX/flax checkpoints, safe ``.npz`` reads and writes, atomic writes.  (A training
run's directory and its checkpoints build on these: :mod:`vitnp.training.rundir`.)

==================  ======================================================================================
module              what lives there
==================  ======================================================================================
``io.original``     the original google-research/vision_transformer ``.npz`` layout, both ways
``io.npz``          ``.npz`` files read with budgets and no pickle
``io.atomic``       writes that never leave a half-written file (temporary file, then rename)
``io.download``     the public original checkpoints, fetched once into a cache (the only network access)
==================  ======================================================================================
"""
