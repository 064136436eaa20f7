"""Rebuilding a pruned model from the registry and a weights-only checkpoint.

Structured pruning (torch-pruning) narrows Conv2d, Linear and BatchNorm layers in place. A
checkpoint keeps only the registry name, its kwargs and the state dict, so loading one means:
create the model at full width, then `fit_to_state_dict` resizes each layer to the shapes the
state dict holds and loads it strictly.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..errors import ModelError


def _tensor(state_dict: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in state_dict:
        raise ModelError(f"checkpoint has no '{key}'; it was not saved from this model (check the model name)")
    return state_dict[key]


def _replace_parameter(module: nn.Module, name: str, like: torch.Tensor) -> None:
    old = getattr(module, name)
    if old is None:
        return
    if old.shape == like.shape:
        return
    setattr(module, name, nn.Parameter(torch.empty_like(like, device=old.device), requires_grad=old.requires_grad))


def _fit_conv(conv: nn.Conv2d, weight: torch.Tensor, where: str) -> None:
    out_chs, in_per_group = weight.shape[:2]
    if tuple(weight.shape[2:]) != tuple(conv.kernel_size):
        raise ModelError(
            f"checkpoint '{where}.weight' has kernel {tuple(weight.shape[2:])}, the model {conv.kernel_size}"
        )
    depthwise = conv.groups == conv.in_channels and conv.groups > 1
    if depthwise:
        # Stays depthwise: one group per input channel, the same channel multiplier as before.
        multiplier = conv.out_channels // conv.in_channels
        if in_per_group != 1 or out_chs % multiplier:
            raise ModelError(
                f"checkpoint '{where}.weight' of shape {tuple(weight.shape)} cannot be a depthwise conv "
                f"with {multiplier} output(s) per channel"
            )
        groups = in_chs = out_chs // multiplier
    else:
        groups = conv.groups
        in_chs = in_per_group * groups
        if out_chs % groups:
            raise ModelError(
                f"checkpoint '{where}.weight' has {out_chs} output channels, not divisible into {groups} groups"
            )
    conv.in_channels, conv.out_channels, conv.groups = in_chs, out_chs, groups
    _replace_parameter(conv, "weight", weight)
    _replace_parameter(conv, "bias", weight.new_empty(out_chs))


def _fit_linear(linear: nn.Linear, weight: torch.Tensor) -> None:
    linear.out_features, linear.in_features = weight.shape
    _replace_parameter(linear, "weight", weight)
    _replace_parameter(linear, "bias", weight.new_empty(weight.shape[0]))


def _fit_batchnorm(bn: _BatchNorm, state_dict: dict[str, torch.Tensor], where: str) -> None:
    key = f"{where}.running_mean" if bn.track_running_stats else f"{where}.weight"
    like = _tensor(state_dict, key)
    if like.shape[0] == bn.num_features:
        return
    bn.num_features = like.shape[0]
    for name in ("weight", "bias"):
        _replace_parameter(bn, name, like)
    if bn.track_running_stats:
        # Buffers are overwritten by the strict load that follows; only their shape matters here.
        bn.running_mean = torch.zeros_like(like, device=bn.running_mean.device)
        bn.running_var = torch.ones_like(like, device=bn.running_var.device)


def fit_to_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> nn.Module:
    """Resize every Conv2d, Linear and BatchNorm of `model` to the shapes in `state_dict`, then
    load it strictly; returns the model. Raises ModelError when the two cannot be reconciled."""
    for where, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            _fit_conv(module, _tensor(state_dict, f"{where}.weight"), where)
        elif isinstance(module, nn.Linear):
            _fit_linear(module, _tensor(state_dict, f"{where}.weight"))
        elif isinstance(module, _BatchNorm):
            _fit_batchnorm(module, state_dict, where)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise ModelError(f"checkpoint does not fit model {type(model).__name__}: {detail[:300]}") from exc
    return model
