"""Plain convolutional networks: the paper baselines and the VGG-style reference.

- `baseline_cnn`: document 001's vanilla CNN, four 3x3x32 same-padding convs with BN, two 2x2
  max-pools, dropout 0.5 and one FC layer (66.4% reported on FER2013).
- `tuned_cnn`: a ~244K-parameter CNN of the size of document 000's tuned model (245,927 params,
  58.6% test): three double-conv stages and a global-average-pooled linear head.
- `vgg_fer`: a ~5.2M-parameter VGG variant in the spirit of Khaireddin & Chen (2021) and of
  document 000's reference CNN (5,175,111 params, 68.9%): stages 64-128-256-512 of two
  conv-BN-ReLU each with max-pooling, then a dropout-regularised two-layer classifier.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from . import options
from .layers import ClassifierHead, ConvBnAct
from .registry import register_model


def _double_conv_stages(in_chs: int, channels: Sequence[int]) -> nn.Sequential:
    """Per width: conv-BN-ReLU twice, then a 2x2 max-pool that halves the resolution."""
    layers: list[nn.Module] = []
    for width in channels:
        layers += [ConvBnAct(in_chs, width), ConvBnAct(width, width), nn.MaxPool2d(2)]
        in_chs = width
    return nn.Sequential(*layers)


class BaselineCNN(nn.Module):
    def __init__(self, num_classes: int = 7, dropout: float = 0.5, width: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            ConvBnAct(1, width), ConvBnAct(width, width), nn.MaxPool2d(2),
            ConvBnAct(width, width), ConvBnAct(width, width), nn.MaxPool2d(2),
        )
        # 48x48 input, two 2x2 pools: a 12x12 map, flattened as in the paper's FC head.
        self.classifier = nn.Sequential(nn.Flatten(1), nn.Dropout(dropout), nn.Linear(width * 12 * 12, num_classes))

    def get_classifier(self) -> nn.Linear:
        return self.classifier[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class TunedCNN(nn.Module):
    def __init__(self, num_classes: int = 7, channels: Sequence[int] = (32, 64, 112), dropout: float = 0.3):
        super().__init__()
        self.features = _double_conv_stages(1, channels)
        self.classifier = ClassifierHead(channels[-1], num_classes, dropout)

    def get_classifier(self) -> nn.Linear:
        return self.classifier[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class VggFer(nn.Module):
    def __init__(
        self,
        num_classes: int = 7,
        channels: Sequence[int] = (64, 128, 256, 512),
        hidden: int = 1024,
        dropout: float = 0.5,
    ):
        super().__init__()
        self.features = _double_conv_stages(1, channels)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(1),
            nn.Dropout(dropout), nn.Linear(channels[-1], hidden), nn.ReLU(),
            nn.Dropout(dropout), nn.Linear(hidden, num_classes),
        )

    def get_classifier(self) -> nn.Linear:
        return self.classifier[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_model(
    "baseline_cnn",
    description="Document 001 baseline: 4 x conv3x3x32 + BN, two max-pools, dropout 0.5, FC (60K params)",
    family="cnn",
    default_cfg={"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "epochs": 30},
)
def baseline_cnn(num_classes: int = 7, dropout: float = 0.5) -> nn.Module:
    return BaselineCNN(num_classes, options.probability("baseline_cnn", "dropout", dropout))


@register_model(
    "tuned_cnn",
    description="Compact CNN (~244K params, document 000 size): conv stages 32-64-112, GAP, linear",
    family="cnn",
    default_cfg={"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "epochs": 40, "label_smoothing": 0.1},
)
def tuned_cnn(num_classes: int = 7, channels: Sequence[int] = (32, 64, 112), dropout: float = 0.3) -> nn.Module:
    name = "tuned_cnn"
    return TunedCNN(
        num_classes,
        options.int_tuple(name, "channels", channels, length=None),
        options.probability(name, "dropout", dropout),
    )


@register_model(
    "vgg_fer",
    description="VGG-style reference (~5.2M params): conv stages 64-128-256-512 with BN, FC 1024",
    family="cnn",
    default_cfg={"lr": 0.01, "weight_decay": 1e-4, "epochs": 50, "label_smoothing": 0.1, "warmup_epochs": 1},
)
def vgg_fer(
    num_classes: int = 7, channels: Sequence[int] = (64, 128, 256, 512), hidden: int = 1024, dropout: float = 0.5
) -> nn.Module:
    name = "vgg_fer"
    return VggFer(
        num_classes,
        options.int_tuple(name, "channels", channels, length=None),
        options.int_in_range(name, "hidden", hidden, 1),
        options.probability(name, "dropout", dropout),
    )
