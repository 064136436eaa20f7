"""One predictor interface over the backends: images in, class probabilities out.

Every backend shares `preprocess` (uint8 face crops -> normalised float tensors) so a number
measured on one backend means the same thing on another. `evaluate`, `bench`, `predict` and
the parity checks all go through `load(path).predict_proba(images)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import torch

from ..errors import ConfigError
from ..runs import Run, load_checkpoint


class Predictor(Protocol):
    backend: str
    class_names: list[str]
    spec: dict[str, Any]

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """uint8 grayscale images [N, H, W] (any H, W) -> float32 probabilities [N, C]."""


def preprocess(images: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """uint8 [N, H, W] -> float32 [N, 1, h, w] at the model's input size, normalised as in training."""
    images = np.asarray(images)
    if images.ndim == 2:
        images = images[None]
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ConfigError(f"expected uint8 grayscale images [N,H,W], got {images.dtype} {images.shape}")
    h, w = spec["input_size"]
    if images.shape[1:] != (h, w):
        images = np.stack([cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA) for im in images])
    norm = spec["normalization"]
    x = (images.astype(np.float32) / 255.0 - norm["mean"]) / norm["std"]
    return x[:, None]


class TorchPredictor:
    """PyTorch eager backend over a run folder or a fercomp checkpoint."""

    backend = "torch"

    def __init__(self, model: torch.nn.Module, spec: dict[str, Any], batch_size: int = 256):
        self.model = model.eval()
        self.spec = spec
        self.class_names = list(spec["class_names"])
        self.batch_size = batch_size

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                x = torch.from_numpy(preprocess(images[start : start + self.batch_size], self.spec))
                out.append(torch.softmax(self.model(x), dim=1).numpy())
        if not out:
            return np.zeros((0, len(self.class_names)), dtype=np.float32)
        return np.concatenate(out).astype(np.float32)


def load(path: str | Path, *, threads: int | None = None, batch_size: int = 256) -> Predictor:
    """A predictor for a run folder or a `.pt` checkpoint."""
    path = Path(path)
    if threads is not None:
        torch.set_num_threads(threads)
    if path.is_dir():
        model, spec = Run.load(path).load_model()
        return TorchPredictor(model, spec, batch_size=batch_size)
    if path.suffix == ".pt":
        model, spec = load_checkpoint(path)
        return TorchPredictor(model, spec, batch_size=batch_size)
    raise ConfigError(f"{path}: unsupported model file (expected a run folder or a .pt checkpoint)")
