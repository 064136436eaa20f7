"""torchvision backbones adapted to 48x48 grayscale faces: mobilenet_v2, resnet18, resnet50, vgg16.

Every transfer model takes the same [B, 1, 48, 48] input as the small CNNs. Inside its forward
it resizes to `resize` px (bilinear), so the resize is part of any exported graph, and its first
conv has one input channel. When RGB weights are loaded, the stem kernels are summed over the
colour axis: on a gray image (R = G = B) that 1-channel conv computes exactly what the RGB conv
computed.

Options shared by all four:
- `pretrained=False`: load ImageNet weights from torchvision's local cache only
  (<torch.hub.get_dir()>/checkpoints/<file>); never downloads.
- `weights=None`: a state dict file to load, either a fercomp checkpoint of this model
  (keys 'backbone.*') or a torchvision state dict of the RGB network (converted; a classifier
  whose class count differs is left freshly initialised).
- `freeze=0`: freeze the first N stages (parameters stop training; their BatchNorm layers stay
  in eval mode so their statistics keep what was loaded). Stages:
    mobilenet_v2 (6): stem conv + first block | 24-ch blocks | 32-ch | 64/96-ch | 160/320-ch | 1x1 conv to 1280
    resnet18/50 (5):  conv1 + bn1 | layer1 | layer2 | layer3 | layer4
    vgg16 (6):        conv block 1 | 2 | 3 | 4 | 5 | fc6 + fc7
  The final classifier is never frozen, so freeze=<stage count> is a linear probe.
- `resize`: side in px the 48x48 input is resized to (default 96 for mobilenet_v2 and resnet18,
  112 for resnet50 and vgg16).
- `dropout` (mobilenet_v2, vgg16): the dropout rate of torchvision's classifier.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision.models as tvm
from torch import nn

from ..errors import ConfigError, ModelError
from . import options
from .registry import INPUT_SIZE, register_model
from .weights import imagenet_checkpoint, read_state_dict

BACKBONE_PREFIX = "backbone."


@dataclass(frozen=True)
class BackboneSpec:
    """Where things are inside a torchvision model, by dotted module name."""

    constructor: Callable[..., nn.Module]
    weights_enum: type[Enum]
    stem_conv: str
    classifier: str
    stages: tuple[tuple[str, ...], ...]


def _range(prefix: str, start: int, stop: int) -> tuple[str, ...]:
    return tuple(f"{prefix}.{i}" for i in range(start, stop))


RESNET_STAGES = (("conv1", "bn1"), ("layer1",), ("layer2",), ("layer3",), ("layer4",))

SPECS: dict[str, BackboneSpec] = {
    "mobilenet_v2": BackboneSpec(
        tvm.mobilenet_v2, tvm.MobileNet_V2_Weights, "features.0.0", "classifier.1",
        (_range("features", 0, 2), _range("features", 2, 4), _range("features", 4, 7),
         _range("features", 7, 14), _range("features", 14, 18), ("features.18",)),
    ),
    "resnet18": BackboneSpec(tvm.resnet18, tvm.ResNet18_Weights, "conv1", "fc", RESNET_STAGES),
    "resnet50": BackboneSpec(tvm.resnet50, tvm.ResNet50_Weights, "conv1", "fc", RESNET_STAGES),
    "vgg16": BackboneSpec(
        tvm.vgg16, tvm.VGG16_Weights, "features.0", "classifier.6",
        (_range("features", 0, 5), _range("features", 5, 10), _range("features", 10, 17),
         _range("features", 17, 24), _range("features", 24, 31), ("classifier.0", "classifier.3")),
    ),
}


def _grayscale_stem(conv: nn.Conv2d) -> nn.Conv2d:
    """A fresh 1-input-channel replacement of an RGB stem conv, initialised as torchvision does
    (Kaiming normal, fan-out: the same weight scale as the RGB conv it replaces)."""
    gray = nn.Conv2d(
        1, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
        conv.dilation, conv.groups, conv.bias is not None,
    )
    nn.init.kaiming_normal_(gray.weight, mode="fan_out", nonlinearity="relu")
    if gray.bias is not None:
        nn.init.zeros_(gray.bias)
    return gray


class GrayscaleTransferNet(nn.Module):
    """A torchvision classifier behind a resize, with a 1-channel stem and stage-wise freezing."""

    def __init__(self, name: str, backbone: nn.Module, resize: int, freeze: int):
        super().__init__()
        self.spec = SPECS[name]
        self.resize = resize
        self.backbone = backbone
        # Hooks (Grad-CAM, guided backprop) need activations that are not overwritten in place.
        for module in backbone.modules():
            if isinstance(module, (nn.ReLU, nn.ReLU6)):
                module.inplace = False
        self.backbone.set_submodule(self.spec.stem_conv, _grayscale_stem(backbone.get_submodule(self.spec.stem_conv)))
        self.set_frozen_stages(freeze)

    def set_frozen_stages(self, count: int) -> None:
        """Freeze the first `count` stages and let the others train (two-phase fine-tuning moves this)."""
        self.frozen_stages = count
        for index in range(self.num_stages):
            for module in self.stage_modules(index):
                module.requires_grad_(index >= count)
        self.train(self.training)  # frozen stages' BatchNorm back to eval, unfrozen ones to train

    @property
    def num_stages(self) -> int:
        return len(self.spec.stages)

    def stage_modules(self, index: int) -> list[nn.Module]:
        return [self.backbone.get_submodule(name) for name in self.spec.stages[index]]

    def get_classifier(self) -> nn.Linear:
        return self.backbone.get_submodule(self.spec.classifier)

    def train(self, mode: bool = True) -> "GrayscaleTransferNet":
        super().train(mode)
        for index in range(self.frozen_stages):
            for module in self.stage_modules(index):
                module.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.resize != INPUT_SIZE[0]:
            x = F.interpolate(x, size=(self.resize, self.resize), mode="bilinear", align_corners=False)
        return self.backbone(x)

    def load_weights(self, state_dict: dict[str, torch.Tensor], source: str | Path) -> None:
        """Load a fercomp checkpoint of this model or a torchvision (RGB) state dict of its backbone."""
        if all(key.startswith(BACKBONE_PREFIX) for key in state_dict):
            state_dict = {key.removeprefix(BACKBONE_PREFIX): value for key, value in state_dict.items()}
        else:
            state_dict = self._from_torchvision(state_dict)
        expected = self.backbone.state_dict()
        missing = [key for key in expected if key not in state_dict]
        unexpected = [key for key in state_dict if key not in expected]
        if missing or unexpected:
            detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
            raise ModelError(
                f"weights {source} do not match this {type(self.backbone).__name__} ({detail}); "
                "pass a state dict saved from the same model"
            )
        for key, value in state_dict.items():
            if value.shape != expected[key].shape:
                raise ModelError(
                    f"weights {source}: '{key}' has shape {tuple(value.shape)} but the model expects "
                    f"{tuple(expected[key].shape)}; check num_classes and the model name"
                )
        self.backbone.load_state_dict(state_dict)

    def _from_torchvision(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Sum an RGB stem over colours; keep our fresh classifier where the file's has another class count."""
        state_dict = dict(state_dict)
        stem_key = f"{self.spec.stem_conv}.weight"
        stem = state_dict.get(stem_key)
        if stem is not None and stem.dim() == 4 and stem.shape[1] == 3:
            state_dict[stem_key] = stem.sum(dim=1, keepdim=True)
        head = self.get_classifier()
        file_head = state_dict.get(f"{self.spec.classifier}.weight")
        if file_head is not None and file_head.shape != head.weight.shape:  # e.g. ImageNet's 1000 classes
            for name, tensor in head.state_dict().items():
                state_dict[f"{self.spec.classifier}.{name}"] = tensor
        return state_dict


def _build(
    name: str,
    num_classes: int,
    pretrained: bool,
    weights: str | Path | None,
    freeze: int,
    resize: int,
    **constructor_kwargs: float,
) -> GrayscaleTransferNet:
    spec = SPECS[name]
    if not isinstance(pretrained, bool):
        raise ConfigError(f"model '{name}' option pretrained={pretrained!r} is invalid: expected true or false")
    if pretrained and weights is not None:
        raise ConfigError(f"model '{name}': pass either pretrained=True or weights=FILE, not both")
    options.int_in_range(name, "freeze", freeze, 0, len(spec.stages))
    options.int_in_range(name, "resize", resize, 32, 512)

    backbone = spec.constructor(weights=None, num_classes=num_classes, **constructor_kwargs)
    model = GrayscaleTransferNet(name, backbone, resize, freeze)
    if pretrained:
        path = imagenet_checkpoint(name, spec.weights_enum)
        model.load_weights(read_state_dict(path), path)
    elif weights is not None:
        model.load_weights(read_state_dict(weights), weights)
    return model


TRANSFER_CFG = {
    "optimizer": "adamw", "lr": 3e-4, "weight_decay": 1e-4, "epochs": 20,
    "label_smoothing": 0.1, "warmup_epochs": 1,
}


@register_model(
    "mobilenet_v2",
    description="torchvision MobileNetV2 (2.2M params), grayscale stem, input resized to 96 px",
    family="transfer",
    default_cfg=TRANSFER_CFG,
)
def mobilenet_v2(
    num_classes: int = 7,
    pretrained: bool = False,
    weights: str | Path | None = None,
    freeze: int = 0,
    resize: int = 96,
    dropout: float = 0.2,
) -> nn.Module:
    dropout = options.probability("mobilenet_v2", "dropout", dropout)
    return _build("mobilenet_v2", num_classes, pretrained, weights, freeze, resize, dropout=dropout)


@register_model(
    "resnet18",
    description="torchvision ResNet-18 (11.2M params), grayscale stem, input resized to 96 px",
    family="transfer",
    default_cfg=TRANSFER_CFG,
)
def resnet18(
    num_classes: int = 7,
    pretrained: bool = False,
    weights: str | Path | None = None,
    freeze: int = 0,
    resize: int = 96,
) -> nn.Module:
    return _build("resnet18", num_classes, pretrained, weights, freeze, resize)


@register_model(
    "resnet50",
    description="torchvision ResNet-50 (23.5M params), grayscale stem, input resized to 112 px",
    family="transfer",
    default_cfg={**TRANSFER_CFG, "batch_size": 32},
)
def resnet50(
    num_classes: int = 7,
    pretrained: bool = False,
    weights: str | Path | None = None,
    freeze: int = 0,
    resize: int = 112,
) -> nn.Module:
    return _build("resnet50", num_classes, pretrained, weights, freeze, resize)


@register_model(
    "vgg16",
    description="torchvision VGG-16 (134M params), grayscale stem, input resized to 112 px",
    family="transfer",
    default_cfg={**TRANSFER_CFG, "batch_size": 32, "lr": 1e-4},
)
def vgg16(
    num_classes: int = 7,
    pretrained: bool = False,
    weights: str | Path | None = None,
    freeze: int = 0,
    resize: int = 112,
    dropout: float = 0.5,
) -> nn.Module:
    dropout = options.probability("vgg16", "dropout", dropout)
    return _build("vgg16", num_classes, pretrained, weights, freeze, resize, dropout=dropout)
