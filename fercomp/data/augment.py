"""Batched training augmentation on tensors, reproducible from a torch.Generator.

Every random number comes from the generator passed in, drawn in a fixed order, so a run resumed
from a saved generator state replays the same augmentations. The photometric steps are
range-agnostic (they work on [0, 1] images and on mean/std-normalised ones alike).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import ConfigError

AUGMENT_PRESETS = ("none", "flip", "geometric", "erase", "strong")

MAX_ROTATION_DEG = 10.0
MAX_ZOOM = 0.10
MAX_SHIFT = 0.10  # fraction of the image size
ERASE_P = 0.5
ERASE_AREA = (0.02, 0.20)
ERASE_ASPECT = (0.3, 3.3)
CONTRAST = (0.7, 1.3)
BRIGHTNESS = 0.2  # shift in units of the image's own standard deviation


def _uniform(n: int, lo: float, hi: float, generator: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=generator, device=generator.device)


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability 0.5."""
    flip = torch.rand(len(x), generator=generator, device=generator.device).to(x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def random_affine(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip (p=0.5), rotate, zoom and shift each image, all in one grid_sample for the batch."""
    n = len(x)
    flip = torch.rand(n, generator=generator, device=generator.device) < 0.5
    angle = _uniform(n, -MAX_ROTATION_DEG, MAX_ROTATION_DEG, generator) * (math.pi / 180)
    zoom = _uniform(n, 1 - MAX_ZOOM, 1 + MAX_ZOOM, generator)
    # affine_grid works in [-1, 1] coordinates, where the full width is 2.
    shift = _uniform(2 * n, -2 * MAX_SHIFT, 2 * MAX_SHIFT, generator).view(n, 2)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    mirror = torch.where(flip, -1.0, 1.0)
    # theta maps output coordinates to input ones; mirroring negates the input x row.
    theta = torch.stack([
        torch.stack([cos * mirror, -sin * mirror, shift[:, 0] * mirror], dim=1),
        torch.stack([sin, cos, shift[:, 1]], dim=1),
    ], dim=1).to(device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _per_image(t: torch.Tensor) -> torch.Tensor:
    """[B] -> [B,1,1,1], to broadcast one value per image over [C,H,W]."""
    return t.view(-1, 1, 1, 1)


def _image_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # E[x^2] - E[x]^2: an order of magnitude faster than Tensor.std on CPU, precise enough here.
    flat = x.flatten(1)
    mean = flat.mean(1)
    var = (flat * flat).mean(1) - mean * mean
    return _per_image(mean), _per_image(var.clamp_min(0).sqrt())


def random_jitter(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Contrast about each image's mean, then a brightness shift scaled by its standard deviation."""
    n = len(x)
    contrast = _per_image(_uniform(n, *CONTRAST, generator).to(x))
    brightness = _per_image(_uniform(n, -BRIGHTNESS, BRIGHTNESS, generator).to(x))
    mean, std = _image_stats(x)
    return (x - mean) * contrast + mean + brightness * std


def random_erase(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """With p=0.5 per image, fill a random rectangle (2-20% of the area) with noise or the image mean."""
    n, _, h, w = x.shape
    apply = torch.rand(n, generator=generator, device=generator.device) < ERASE_P
    area = _uniform(n, *ERASE_AREA, generator) * (h * w)
    log_aspect = _uniform(n, math.log(ERASE_ASPECT[0]), math.log(ERASE_ASPECT[1]), generator)
    aspect = torch.exp(log_aspect)
    eh = torch.sqrt(area * aspect).round().clamp(1, h)
    ew = torch.sqrt(area / aspect).round().clamp(1, w)
    top = (torch.rand(n, generator=generator, device=generator.device) * (h - eh + 1)).floor()
    left = (torch.rand(n, generator=generator, device=generator.device) * (w - ew + 1)).floor()
    use_noise = torch.rand(n, generator=generator, device=generator.device) < 0.5
    apply, eh, ew, top, left, use_noise = (t.to(x.device) for t in (apply, eh, ew, top, left, use_noise))
    # Noise only for the images that get a noisy patch (a quarter on average): drawing it for the
    # whole batch would dominate the cost. Zero noise leaves the mean fill.
    noisy = torch.nonzero(apply & use_noise).flatten()
    noise = torch.zeros_like(x)
    noise[noisy] = torch.randn((len(noisy), *x.shape[1:]), generator=generator, device=generator.device,
                               dtype=x.dtype).to(x.device)
    rows = torch.arange(h, device=x.device).view(1, 1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, 1, w)
    top, left, eh, ew = (_per_image(t) for t in (top, left, eh, ew))
    in_rows = (rows >= top) & (rows < top + eh) & _per_image(apply)
    in_cols = (cols >= left) & (cols < left + ew)
    mean, std = _image_stats(x)
    return torch.where(in_rows & in_cols, mean + std * noise, x)


class Augmenter:
    """A preset of batched augmentations: none, flip, geometric (flip + affine), erase (geometric +
    random erasing) or strong (geometric + brightness/contrast jitter + random erasing). `erase`
    exists so random erasing can be measured on its own against geometric.

    Call with float images [B,C,H,W] and a torch.Generator; returns a new tensor of the same
    shape, dtype and device.
    """

    def __init__(self, preset: str = "none"):
        if preset not in AUGMENT_PRESETS:
            raise ConfigError(f"--augment must be one of {', '.join(AUGMENT_PRESETS)}, got '{preset}'")
        self.preset = preset

    def __repr__(self) -> str:
        return f"Augmenter({self.preset!r})"

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if x.ndim != 4 or not x.is_floating_point():
            raise ConfigError(f"augmentation expects float images [B,C,H,W], got {x.dtype} {tuple(x.shape)}")
        if self.preset == "none" or len(x) == 0:
            return x
        if self.preset == "flip":
            return random_flip(x, generator)
        x = random_affine(x, generator)
        if self.preset == "strong":
            x = random_jitter(x, generator)
        if self.preset in ("erase", "strong"):
            x = random_erase(x, generator)
        return x
