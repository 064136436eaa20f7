"""Building blocks shared by the architectures, made only of standard layers.

Plain Conv2d / BatchNorm2d / ReLU / pooling modules keep every model traceable by torch-pruning's
dependency graph, exportable to ONNX and quantizable; activations are not in-place so that
Grad-CAM and guided-backprop hooks see clean tensors.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvBnAct(nn.Sequential):
    """Conv2d (no bias: BN follows) -> BatchNorm2d -> ReLU."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 3, stride: int = 1, padding: int | None = None):
        padding = kernel_size // 2 if padding is None else padding
        super().__init__(
            nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, bias=False),
            nn.BatchNorm2d(out_chs),
            nn.ReLU(),
        )


class SeparableConvBn(nn.Sequential):
    """Depthwise 3x3 conv -> pointwise 1x1 conv -> BatchNorm2d (the Xception separable conv)."""

    def __init__(self, in_chs: int, out_chs: int):
        super().__init__(
            nn.Conv2d(in_chs, in_chs, 3, padding=1, groups=in_chs, bias=False),
            nn.Conv2d(in_chs, out_chs, 1, bias=False),
            nn.BatchNorm2d(out_chs),
        )


class SqueezeExcite(nn.Module):
    """Channel attention (Hu et al.): scale each channel by a gate computed from its global mean."""

    def __init__(self, channels: int, reduction: int = 16, min_hidden: int = 8):
        super().__init__()
        hidden = max(min_hidden, channels // reduction)
        self.pool = nn.AdaptiveAvgPool2d(1)
        # 1x1 convs rather than Linear keep the [B, C, 1, 1] shape, so no reshapes in the graph.
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.act = nn.ReLU()
        self.expand = nn.Conv2d(hidden, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.expand(self.act(self.reduce(self.pool(x)))))


class ClassifierHead(nn.Sequential):
    """Global average pooling -> flatten -> dropout -> linear classifier."""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0):
        super().__init__(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(1),
            nn.Dropout(dropout),
            nn.Linear(in_features, num_classes),
        )
