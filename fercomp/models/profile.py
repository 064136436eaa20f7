"""Counting a model's size and compute: parameters and multiply-accumulates (MACs)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .registry import IN_CHANS, INPUT_SIZE, create


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(model: nn.Module) -> int:
    """MACs of one forward pass on one image of the model's input size (FLOPs / 2, as counted by
    torch's FlopCounterMode: convolutions and matrix products; the mode is restored afterwards)."""
    height, width = getattr(model, "input_size", INPUT_SIZE)
    in_chans = getattr(model, "in_chans", IN_CHANS)
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, in_chans, height, width, device=device, dtype=dtype))
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def model_summary(name_or_model: str | nn.Module, **kwargs: Any) -> dict[str, Any]:
    """{'params', 'macs', 'input_size'} of a model, or of `create(name, **kwargs)` for a name."""
    model = create(name_or_model, **kwargs) if isinstance(name_or_model, str) else name_or_model
    return {
        "params": count_params(model),
        "macs": count_macs(model),
        "input_size": tuple(getattr(model, "input_size", INPUT_SIZE)),
    }
