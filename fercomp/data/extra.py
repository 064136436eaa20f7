"""Extra training images (e.g. GAN samples from `fercomp gan sample`) appended to the train split only.

Validation and test stay exactly the source's, so a model trained with extra data is selected
and scored on the same real images as one trained without.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from .dataset import Split
from .sources import read_source


def load_extra(path: str | Path, class_names: tuple[str, ...]) -> tuple[Split, dict]:
    """All images of an npz / csv / folder, relabelled to `class_names` -> (split, provenance)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"--extra-data {path}: no such file or directory")
    raw, extra_names, meta = read_source(path, None)
    parts = [part for part in raw.values() if len(part.y)]
    if not parts:
        raise DataError(f"--extra-data {path}: holds no images")
    unknown = [name for name in extra_names if name not in class_names]
    if unknown:
        raise DataError(f"--extra-data {path}: classes {', '.join(unknown)} are not in the training data's ({', '.join(class_names)})")
    to_ours = np.array([class_names.index(name) for name in extra_names], dtype=np.int64)
    x = np.concatenate([p.x for p in parts])
    if x.shape[1:] != (48, 48):
        raise DataError(f"--extra-data {path}: images are {x.shape[1]}x{x.shape[2]}, training uses 48x48")
    y = to_ours[np.concatenate([p.y for p in parts])]
    return Split(x, y), {"path": str(path.resolve()), "sha256": meta["sha256"], "images": int(len(y)),
                         "per_class": np.bincount(y, minlength=len(class_names)).tolist()}


def with_extra(train: Split, extra: Split, num_classes: int) -> Split:
    """train + extra; soft targets (FER+ votes) become one-hot for the extra images."""
    soft = None
    if train.soft is not None:
        soft = np.concatenate([train.soft, np.eye(num_classes, dtype=train.soft.dtype)[extra.y]])
    return Split(np.concatenate([train.x, extra.x]), np.concatenate([train.y, extra.y]), soft)
