"""Test-time augmentation: average a predictor's probabilities over augmented views of each face.

Views are cheap uint8 transforms of the crops (mirror, small shifts), the kind of variation the
model saw in training; `TTAPredictor` wraps any backend's predictor, so TTA works the same on
PyTorch, ONNX Runtime and TensorRT.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError

SHIFT = 2  # pixels: about 4% of a 48 px face, inside the geometric training augmentation


def _shift(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Translate by (dy, dx) pixels, repeating the edge row/column into the uncovered border."""
    h, w = images.shape[1:]
    padded = np.pad(images, ((0, 0), (SHIFT, SHIFT), (SHIFT, SHIFT)), mode="edge")
    return padded[:, SHIFT - dy : SHIFT - dy + h, SHIFT - dx : SHIFT - dx + w]


def _flip(images: np.ndarray) -> np.ndarray:
    return images[:, :, ::-1]


SHIFTS = [(-SHIFT, 0), (SHIFT, 0), (0, -SHIFT), (0, SHIFT)]
VIEWS = {
    "flip": lambda x: [x, _flip(x)],
    "shift": lambda x: [x] + [_shift(x, dy, dx) for dy, dx in SHIFTS],
    "flip-shift": lambda x: [x, _flip(x)] + [v for dy, dx in SHIFTS for v in (_shift(x, dy, dx), _shift(_flip(x), dy, dx))],
}


def tta_views(images: np.ndarray, mode: str) -> list[np.ndarray]:
    if mode not in VIEWS:
        raise ConfigError(f"--tta must be one of {', '.join(VIEWS)} (got {mode!r})")
    return [np.ascontiguousarray(v) for v in VIEWS[mode](np.asarray(images))]


class TTAPredictor:
    """A predictor whose probabilities are the mean over `mode`'s views of each image."""

    def __init__(self, predictor, mode: str):
        tta_views(np.zeros((1, 4, 4), np.uint8), mode)  # validate the mode now
        self.base, self.mode = predictor, mode
        self.backend = f"{predictor.backend} + tta {mode}"
        self.class_names = predictor.class_names
        self.spec = predictor.spec

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        views = tta_views(images, self.mode)
        return np.mean([self.base.predict_proba(v) for v in views], axis=0).astype(np.float32)
