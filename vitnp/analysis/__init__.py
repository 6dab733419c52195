"""What a trained ViT has learned (the paper's Fig 6 and Fig 7), and the figures that show it.

==========================  ==============================================================================
module                      what lives there
==========================  ==============================================================================
``analysis.maps``           attention maps, rollout, mean attention distance, E_pos similarity, E's filters
``analysis.plots``          the figures of a run (curves, confusion matrix, predictions)
``analysis.visualize``      ``python -m vitnp visualize``: the maps of a checkpoint drawn to PNG files
==========================  ==============================================================================

This package's names are the public face: ``from vitnp.analysis import attention_rollout``.
"""
from .maps import (attention_maps, attention_rollout, embedding_filters, mean_attention_distance, patch_distances,
                   pos_embedding_similarity)

__all__ = ["attention_maps", "attention_rollout", "patch_distances", "mean_attention_distance",
           "pos_embedding_similarity", "embedding_filters"]
