"""Counter class imbalance (FER2013 has 16x more happy than disgust): loss weights or a sampler."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import DataError


def _labels(y, num_classes: int | None = None) -> torch.Tensor:
    y = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y).long().flatten()
    if len(y) == 0:
        raise DataError("cannot balance classes of an empty label set")
    if y.min() < 0:
        raise DataError(f"labels must be class indices >= 0, found {int(y.min())}")
    if num_classes is not None and y.max() >= num_classes:
        raise DataError(f"label {int(y.max())} is out of range for {num_classes} classes")
    return y


def class_weights(y, num_classes: int) -> torch.Tensor:
    """Inverse-frequency loss weights, float32 [num_classes].

    w_c = N / (K * n_c) over the K classes present, so sum_c w_c * n_c = N: the weighted loss
    keeps the scale of the unweighted one. Absent classes get weight 0.
    """
    y = _labels(y, num_classes)
    counts = torch.bincount(y, minlength=num_classes).double()
    present = counts > 0
    weights = torch.zeros(num_classes, dtype=torch.float64)
    weights[present] = len(y) / (int(present.sum()) * counts[present])
    return weights.float()


def balanced_sampler_indices(y, num_samples: int, generator: torch.Generator) -> torch.LongTensor:
    """Indices into y drawn with replacement, P(i) proportional to 1 / count(y_i): classes come out
    roughly uniform. Reproducible from the generator state."""
    if num_samples < 1:
        raise DataError(f"balanced sampling needs a positive number of samples, got {num_samples}")
    y = _labels(y)
    counts = torch.bincount(y).double()
    weights = (1.0 / counts)[y]
    return torch.multinomial(weights, num_samples, replacement=True, generator=generator)
