"""`se_resnet`: a small ResNet of basic blocks with squeeze-and-excitation (document 003).

Layout for a 48x48 face: a 3x3 conv-BN-ReLU stem at full resolution, then four stages of
`depth[i]` SE basic blocks with widths width x (1, 2, 4, 8); each stage opens with a stride-2
block, so the stages run at 24, 12, 6 and 3 px; global average pooling, dropout, linear.

Default width 32, depth (2, 2, 2, 1): ResNet-18's layout at half width with one block in the
last stage, 1.63M params and 68M MACs, about 0.22 s per batch-64 training step on 2 CPU cores
(~100 s per FER2013 epoch), sized for the "<= 2M params, >= 68% within 120 min on CPU" target.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from . import options
from .layers import ClassifierHead, ConvBnAct, SqueezeExcite
from .registry import register_model

STAGE_WIDTH_MULTIPLIERS = (1, 2, 4, 8)


class SEBasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN-SE, plus the (projected when the shape changes) input, ReLU."""

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, se_reduction: int = 16):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chs, out_chs, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chs)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.se = SqueezeExcite(out_chs, se_reduction)
        if stride != 1 or in_chs != out_chs:
            self.shortcut = nn.Sequential(nn.Conv2d(in_chs, out_chs, 1, stride, bias=False), nn.BatchNorm2d(out_chs))
        else:
            self.shortcut = nn.Identity()
        self.act2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.se(self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x))))))
        return self.act2(out + self.shortcut(x))


class SEResNet(nn.Module):
    def __init__(
        self,
        num_classes: int = 7,
        width: int = 32,
        depth: Sequence[int] = (2, 2, 2, 1),
        se_reduction: int = 16,
        dropout: float = 0.2,
    ):
        super().__init__()
        self.stem = ConvBnAct(1, width)
        stages, in_chs = [], width
        for multiplier, blocks in zip(STAGE_WIDTH_MULTIPLIERS, depth):
            out_chs = width * multiplier
            stage = [SEBasicBlock(in_chs, out_chs, 2, se_reduction)]
            stage += [SEBasicBlock(out_chs, out_chs, 1, se_reduction) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*stage))
            in_chs = out_chs
        self.stages = nn.Sequential(*stages)
        self.classifier = ClassifierHead(in_chs, num_classes, dropout)

    def get_classifier(self) -> nn.Linear:
        return self.classifier[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.stages(self.stem(x)))


@register_model(
    "se_resnet",
    description="ResNet with squeeze-and-excitation (1.6M params at width 32, depth 2-2-2-1); options width, depth",
    family="resnet",
    default_cfg={"lr": 0.05, "weight_decay": 5e-4, "epochs": 50, "label_smoothing": 0.1, "warmup_epochs": 1},
)
def se_resnet(
    num_classes: int = 7,
    width: int = 32,
    depth: int | Sequence[int] = (2, 2, 2, 1),
    se_reduction: int = 16,
    dropout: float = 0.2,
) -> nn.Module:
    name = "se_resnet"
    return SEResNet(
        num_classes,
        options.int_in_range(name, "width", width, 4),
        options.int_tuple(name, "depth", depth, length=len(STAGE_WIDTH_MULTIPLIERS)),
        options.int_in_range(name, "se_reduction", se_reduction, 1),
        options.probability(name, "dropout", dropout),
    )
