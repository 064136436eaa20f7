"""Structured (channel) pruning with torch-pruning's dependency graph.

`--ratio r` means: the fraction of output channels removed from every prunable layer (uniform
pruning), or from all prunable layers taken together (global pruning, where layers that matter
less lose more). Coupled layers (a conv, its BatchNorm, the next layer's input channels, both
sides of a residual add, the depthwise conv between them, the squeeze-and-excitation convs)
are pruned together as one dependency group, so the network stays valid. The classifier is
never pruned: its outputs are the classes.
"""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn

from ..errors import ConfigError

IMPORTANCE_CRITERIA = ("l1", "l2", "taylor", "bn-scale")

# Global pruning may strip one layer far more than others; never remove more than this share of it.
MAX_LAYER_RATIO = 0.9


def importance_criterion(name: str) -> tp.importance.Importance:
    if name == "l1":
        return tp.importance.GroupMagnitudeImportance(p=1)
    if name == "l2":
        return tp.importance.GroupMagnitudeImportance(p=2)
    if name == "taylor":
        return tp.importance.GroupTaylorImportance()
    if name == "bn-scale":
        return tp.importance.BNScaleImportance()
    raise ConfigError(f"--importance must be one of {', '.join(IMPORTANCE_CRITERIA)} (got {name!r})")


def classifier_of(model: nn.Module) -> nn.Module:
    """The final Linear layer (registry models expose it as get_classifier())."""
    if hasattr(model, "get_classifier"):
        return model.get_classifier()
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError("model has no Linear classifier to protect from pruning")
    return linears[-1]


def prune_channels(
    model: nn.Module,
    ratio: float,
    *,
    importance: str = "l1",
    global_pruning: bool = False,
    round_to: int | None = None,
    calibration: Iterable[tuple[torch.Tensor, torch.Tensor]] = (),
    input_size: tuple[int, int] = (48, 48),
) -> nn.Module:
    """Remove `ratio` of the output channels in place and return the model.

    `calibration` yields (images, labels) batches; the Taylor criterion needs their gradients.
    """
    if not 0 < ratio < 1:
        raise ConfigError(f"--ratio must be in (0, 1), the fraction of channels removed (got {ratio})")
    criterion = importance_criterion(importance)
    was_training = model.training
    model.eval()
    example = torch.randn(1, getattr(model, "in_chans", 1), *input_size)
    pruner = tp.pruner.BasePruner(
        model,
        example_inputs=example,
        importance=criterion,
        pruning_ratio=ratio,
        global_pruning=global_pruning,
        max_pruning_ratio=MAX_LAYER_RATIO,
        ignored_layers=[classifier_of(model)],
        round_to=round_to,
    )
    if importance == "taylor":
        _accumulate_gradients(model, calibration)
    pruner.step()
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return model


def _accumulate_gradients(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> None:
    model.zero_grad(set_to_none=True)
    seen = 0
    for images, labels in batches:
        F.cross_entropy(model(images), labels).backward()
        seen += 1
    if seen == 0:
        raise ConfigError("--importance taylor needs calibration batches (training images) for its gradients")


def channel_widths(model: nn.Module) -> dict[str, int]:
    """Output channels of every conv, for reports."""
    return {name: m.out_channels for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
