"""Unstructured sparsity: global magnitude pruning and the 2:4 semi-structured pattern.

Both zero weights in place and keep the tensor shapes, so the model is made permanent (no
masks or `weight_orig` left behind) and loads like any other. Fine-tuning keeps the zeros at
zero (`TrainConfig.keep_sparsity`).

2:4 means: in every group of four consecutive weights along the input-channel dimension (for a
conv, at a fixed output channel and kernel position), at least two are zero — the pattern
NVIDIA's sparse tensor cores (Ampere, Jetson Orin) accelerate and TensorRT's SPARSE_WEIGHTS
uses. Layers whose input channels are not a multiple of four (the 1-channel stem, depthwise
convs) cannot carry the pattern and are left dense, as TensorRT would.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune

from ..errors import ConfigError

PATTERNS = ("2:4",)


def prunable_weights(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def global_magnitude_prune(model: nn.Module, sparsity: float) -> nn.Module:
    """Zero the `sparsity` fraction of smallest-magnitude conv/linear weights, across all layers."""
    if not 0 < sparsity < 1:
        raise ConfigError(f"--sparsity must be in (0, 1), the fraction of weights set to zero (got {sparsity})")
    layers = prunable_weights(model)
    prune.global_unstructured([(m, "weight") for _, m in layers], pruning_method=prune.L1Unstructured, amount=sparsity)
    for _, module in layers:
        prune.remove(module, "weight")  # bake the mask into the weight: permanent, plain state dict
    return model


def _input_dim_last(weight: torch.Tensor) -> torch.Tensor:
    """Conv [O, I, kh, kw] -> [O, kh, kw, I]; Linear [O, I] unchanged: groups run along I."""
    return weight.permute(0, 2, 3, 1) if weight.dim() == 4 else weight


def supports_2to4(module: nn.Module) -> bool:
    if isinstance(module, nn.Conv2d):
        return module.groups == 1 and module.in_channels % 4 == 0
    return isinstance(module, nn.Linear) and module.in_features % 4 == 0


def apply_2to4(model: nn.Module) -> dict[str, str]:
    """Keep the two largest-magnitude weights of every group of four; returns {layer: 'sparse'|reason}."""
    report = {}
    for name, module in prunable_weights(model):
        if not supports_2to4(module):
            report[name] = "dense (input channels not a multiple of 4, or grouped)"
            continue
        with torch.no_grad():
            w = _input_dim_last(module.weight)
            groups = w.reshape(-1, 4)
            keep = groups.abs().topk(2, dim=1).indices
            mask = torch.zeros_like(groups).scatter_(1, keep, 1.0).reshape(w.shape)
            if module.weight.dim() == 4:
                mask = mask.permute(0, 3, 1, 2)
            module.weight.mul_(mask)
        report[name] = "sparse"
    return report


def is_2to4(module: nn.Module) -> bool:
    """True if every group of four along the input dimension has at most two non-zeros."""
    groups = _input_dim_last(module.weight.detach()).reshape(-1, 4)
    return bool(((groups != 0).sum(dim=1) <= 2).all())


def layer_sparsity(model: nn.Module) -> dict[str, float]:
    """Fraction of zero weights per conv/linear layer."""
    return {name: float((m.weight == 0).float().mean()) for name, m in prunable_weights(model)}


def overall_sparsity(model: nn.Module) -> float:
    layers = prunable_weights(model)
    zeros = sum(int((m.weight == 0).sum()) for _, m in layers)
    return zeros / max(1, sum(m.weight.numel() for _, m in layers))
