"""Mixup and CutMix on a training batch: images blended or patched with a shuffled copy of the
batch, and their targets mixed in the same proportion (Zhang et al. 2018; Yun et al. 2019).

Every random draw comes from the run's torch.Generator, so a resumed run replays the same mixes.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

MIX_MODES = ("none", "mixup", "cutmix")
DEFAULT_ALPHA = {"mixup": 0.2, "cutmix": 1.0}  # the Beta(alpha, alpha) each paper recommends


def _beta(alpha: float, generator: torch.Generator) -> float:
    # torch's Beta sampler takes no generator: seed numpy's from it, so the draw stays replayable.
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def as_probabilities(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Hard labels [B] -> one-hot [B, C]; soft targets [B, C] pass through."""
    return F.one_hot(target, num_classes).float() if target.ndim == 1 else target.float()


def mix_batch(x: torch.Tensor, target: torch.Tensor, num_classes: int, mode: str, alpha: float,
              generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(mixed images [B,C,H,W], mixed target probabilities [B, classes])."""
    probs = as_probabilities(target, num_classes)
    if mode == "none" or len(x) < 2:
        return x, probs
    lam = _beta(alpha, generator)
    perm = torch.randperm(len(x), generator=generator).to(x.device)
    if mode == "mixup":
        mixed = lam * x + (1 - lam) * x[perm]
    else:  # cutmix: a box covering 1 - lam of the image comes from the partner
        h, w = x.shape[-2:]
        cut = math.sqrt(1 - lam)
        ch, cw = int(round(h * cut)), int(round(w * cut))
        cy, cx = (int(v) for v in torch.randint(0, 2**31, (2,), generator=generator))
        cy, cx = cy % h, cx % w
        top, bottom = max(cy - ch // 2, 0), min(cy + ch - ch // 2, h)
        left, right = max(cx - cw // 2, 0), min(cx + cw - cw // 2, w)
        mixed = x.clone()
        mixed[..., top:bottom, left:right] = x[perm][..., top:bottom, left:right]
        lam = 1 - (bottom - top) * (right - left) / (h * w)  # the area actually pasted
    return mixed, lam * probs + (1 - lam) * probs[perm]
