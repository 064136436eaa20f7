"""Two-phase transfer learning: which backbone stages train in which epoch.

Phase 1 (epochs 1..head_epochs) trains only the new classifier on a frozen backbone, so its
random weights cannot wreck the pretrained features through large early gradients; phase 2
unfreezes the last `unfreeze` stages (all by default) at a lower learning rate.
"""

from __future__ import annotations

from torch import nn

from ..errors import ConfigError
from .config import TrainConfig


def check_two_phase(cfg: TrainConfig, model: nn.Module) -> None:
    if not cfg.head_epochs:
        return
    if not hasattr(model, "set_frozen_stages"):
        raise ConfigError("--head-epochs needs a torchvision transfer model (mobilenet_v2, resnet18, resnet50, vgg16)")
    if cfg.unfreeze is not None and cfg.unfreeze > model.num_stages:
        raise ConfigError(f"--unfreeze {cfg.unfreeze}: this model has only {model.num_stages} stages")


def frozen_stages(cfg: TrainConfig, model: nn.Module, epoch: int) -> int:
    """How many leading stages are frozen during `epoch` (1-based)."""
    if epoch <= cfg.head_epochs:
        return model.num_stages
    return model.num_stages - (cfg.unfreeze or model.num_stages)


def in_head_phase(cfg: TrainConfig, step: int, steps_per_epoch: int) -> bool:
    return step < cfg.head_epochs * steps_per_epoch
