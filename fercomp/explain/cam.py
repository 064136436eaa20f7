"""Saliency for one batch of faces: Grad-CAM, Grad-CAM++, guided backpropagation, guided Grad-CAM.

The maintained `grad-cam` package (pytorch_grad_cam) computes all four; this module picks the
target layer and adapts our models to it:
  * the target layer is, by default, the last layer executed whose output is still a feature
    map (an SE block's 1x1 squeeze does not count), found with forward hooks, so it works for
    pruned models whose widths changed; or any module by its dotted name;
  * guided backpropagation rewrites nn.ReLU modules only, so a copy of the model has each ReLU6
    (MobileNetV2) replaced by ReLU followed by a clamp at 6: the same function, guided gradients.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError

METHODS = ("gradcam", "gradcam++", "guided-backprop", "guided-gradcam")


@dataclass
class Explanation:
    """Per image: heat map [H, W] in [0, 1] (None for guided-backprop), guided gradients [H, W]
    (None for the CAMs), the explained class and the model's probabilities."""

    heatmaps: np.ndarray | None
    guided: np.ndarray | None
    targets: np.ndarray
    probs: np.ndarray


def spatial_layers(model: nn.Module, example: torch.Tensor) -> list[str]:
    """Names of the modules, in the order they finish, whose outputs are feature maps larger than 1x1.

    Containers count: a residual block or a stage finishes after its last child, and its output
    is the sum that follows the shortcut, which no leaf module returns."""
    order: list[str] = []
    hooks = []
    for name, module in model.named_modules():
        if name:
            def record(mod, inputs, output, name=name):
                if isinstance(output, torch.Tensor) and output.dim() == 4 and output.shape[-1] * output.shape[-2] > 1:
                    order.append(name)
            hooks.append(module.register_forward_hook(record))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for hook in hooks:
            hook.remove()
    return order


def target_layer(model: nn.Module, example: torch.Tensor, name: str | None = None) -> tuple[str, nn.Module]:
    """The module Grad-CAM reads: `name`, or the last feature map before global pooling.

    That is the output of the last conv block (its final activation, after any residual add),
    which is what "the last conv layer" means in the Grad-CAM paper; the literally last Conv2d
    of a residual network is often a shortcut projection, which sees only the block's input.
    """
    if name:
        try:
            return name, model.get_submodule(name)
        except AttributeError:
            layers = spatial_layers(model, example)
            raise ConfigError(f"--layer {name}: no such module; the last feature-map layers are "
                              f"{', '.join(layers[-3:])}") from None
    if not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        raise ConfigError("the model has no float Conv2d layer to explain (an INT8 graph? explain its float parent run)")
    layers = spatial_layers(model, example)
    if not layers:
        raise ConfigError("the model has no feature map larger than 1x1 to explain; pass --layer NAME")
    return layers[-1], model.get_submodule(layers[-1])


def _guidable_copy(model: nn.Module) -> nn.Module:
    clone = copy.deepcopy(model)
    for parent in clone.modules():
        for child_name, child in list(parent.named_children()):
            if isinstance(child, nn.ReLU6):
                setattr(parent, child_name, nn.Sequential(nn.ReLU(), nn.Hardtanh(0.0, 6.0)))
            elif isinstance(child, nn.ReLU) and child.inplace:
                setattr(parent, child_name, nn.ReLU())  # in-place ops break the autograd Function swap
    return clone.eval()


def explain_batch(model: nn.Module, x: torch.Tensor, method: str, layer: nn.Module | None,
                  target_class: int | None = None) -> Explanation:
    """x: preprocessed float [N, 1, H, W]. Explains `target_class`, or each image's predicted class."""
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, GuidedBackpropReLUModel
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    if method not in METHODS:
        raise ConfigError(f"--method must be one of {', '.join(METHODS)} (got {method!r})")
    model.eval()
    with torch.no_grad():
        logits = model(x)
    num_classes = logits.shape[1]
    if target_class is not None and not 0 <= target_class < num_classes:
        raise ConfigError(f"--class {target_class}: the model has classes 0..{num_classes - 1}")
    probs = torch.softmax(logits.float(), 1).cpu().numpy()
    targets = np.full(len(x), target_class) if target_class is not None else probs.argmax(1)

    heatmaps = guided = None
    if method != "guided-backprop":
        cam_class = GradCAMPlusPlus if method == "gradcam++" else GradCAM
        with cam_class(model=model, target_layers=[layer]) as cam:
            heatmaps = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets])
    if method in ("guided-backprop", "guided-gradcam"):
        backprop = GuidedBackpropReLUModel(_guidable_copy(model), device=x.device)
        guided = np.stack([backprop(x[i : i + 1].clone(), target_category=int(t))[..., 0] for i, t in enumerate(targets)])
    return Explanation(heatmaps, guided, targets.astype(np.int64), probs)


def heat_mass_inside(heatmaps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per image, the share of heat-map mass on the masked pixels (e.g. the face)."""
    total = heatmaps.reshape(len(heatmaps), -1).sum(1)
    inside = (heatmaps * masks).reshape(len(heatmaps), -1).sum(1)
    return inside / np.maximum(total, 1e-12)
