"""Training: the loop, its run directory, its presets and hyper-parameters, fine-tuning, seeds, and the models it
can train.

=====================  ===================================================================================
module                 what lives there
=====================  ===================================================================================
``training.trainer``   :func:`train`: sets a run up (fresh, resumed, or from a checkpoint) and trains it
``training.fit``       the loop: epochs, validation, checkpoints, the budget planner (:class:`Run`)
``training.rundir``    a run directory's files (config, metrics, ``checkpoint.npz``, ``best.npz``, plots), its
                       lock, ``save_checkpoint`` / ``load_checkpoint``
``training.presets``   :class:`HParams` and the named presets (``fast``, ``fmnist`` …)
``training.specs``     the models it trains (ViT, hybrid, CNN) behind one interface (``model_spec``)
``training.evaluation``  evaluate_arrays, predict_proba, the validation split: what the loop and the commands share
``training.finetune``  starting from a trained model: E_pos for a new resolution, a new head
``training.probe``     a new linear head on a frozen body (the linear probe)
``training.seeds``     several seeds of one preset, mean ± std
=====================  ===================================================================================

This package's names are the public face: ``from vitnp.training import train, load_checkpoint``.
"""
import importlib

_WHERE = {"train": ".trainer", "RESUMABLE_CHANGES": ".trainer", "Run": ".fit", "train_step": ".fit",
          "load_checkpoint": ".rundir", "save_checkpoint": ".rundir", "FORMAT": ".rundir",
          "model_spec": ".specs", "describe_model": ".specs", "HParams": ".presets", "get_preset": ".presets"}
__all__ = list(_WHERE)


def __getattr__(name):
    """The public names, imported when first asked for (PEP 562), so that the modules here
    may import each other's modules without an import cycle through this package's face."""
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
