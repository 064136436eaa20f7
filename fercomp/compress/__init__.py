"""Compression: structured / unstructured / 2:4 pruning (and, next, quantization)."""

from .prune import PruneConfig, prune_run, resume_prune, step_ratios
from .sparsity import apply_2to4, global_magnitude_prune, is_2to4, layer_sparsity, overall_sparsity
from .structured import IMPORTANCE_CRITERIA, prune_channels

__all__ = [
    "IMPORTANCE_CRITERIA", "PruneConfig", "apply_2to4", "global_magnitude_prune", "is_2to4",
    "layer_sparsity", "overall_sparsity", "prune_channels", "prune_run", "resume_prune", "step_ratios",
]
