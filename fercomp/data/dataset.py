"""In-memory data set containers: uint8 images plus labels, per split.

FER2013 is 80 MB, so every source is loaded fully into memory as uint8 arrays; augmentation
and normalisation happen batched on tensors later (see augment.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import DataError
from .classes import CLASS_NAMES

SPLITS = ("train", "val", "test")
# Pseudo-split name: every present split concatenated (for data-set statistics and refits).
ALL_SPLITS = "all"


@dataclass
class Split:
    """One split: images uint8 [N, H, W], hard labels int64 [N], optional soft targets float32 [N, C]."""

    x: np.ndarray
    y: np.ndarray
    soft: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.x.ndim != 3 or self.x.dtype != np.uint8:
            raise DataError(f"images must be uint8 [N,H,W], got {self.x.dtype} {self.x.shape}")
        self.y = np.asarray(self.y, dtype=np.int64)
        if len(self.y) != len(self.x):
            raise DataError(f"{len(self.x)} images but {len(self.y)} labels")
        if self.soft is not None and len(self.soft) != len(self.x):
            raise DataError(f"{len(self.x)} images but {len(self.soft)} soft-label rows")

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx: np.ndarray) -> "Split":
        return Split(self.x[idx], self.y[idx], None if self.soft is None else self.soft[idx])


@dataclass
class FerData:
    """A data set with named splits (some may be absent), its class names and where it came from."""

    splits: dict[str, Split]
    class_names: tuple[str, ...] = CLASS_NAMES
    source: str = "synthetic"
    # Provenance recorded in run manifests (e.g. file sha256, synthetic seed, label kind).
    meta: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_size(self) -> tuple[int, int]:
        any_split = next(iter(self.splits.values()))
        return tuple(any_split.x.shape[1:])  # type: ignore[return-value]

    def split(self, name: str) -> Split:
        """One split by name; "all" concatenates every non-empty split in train/val/test order."""
        if name == ALL_SPLITS:
            return self._all_splits()
        if name not in self.splits or len(self.splits[name]) == 0:
            have = ", ".join(k for k, v in self.splits.items() if len(v)) or "none"
            raise DataError(f"{self.source}: split '{name}' is missing or empty (have: {have})")
        return self.splits[name]

    def _all_splits(self) -> Split:
        names = [n for n in SPLITS if n in self.splits] + [n for n in self.splits if n not in SPLITS]
        parts = [self.splits[n] for n in names if len(self.splits[n])]
        if not parts:
            raise DataError(f"{self.source}: the data set holds no images")
        # Soft targets only survive when every split has them; a partial soft column would mislead.
        soft = None
        if all(p.soft is not None for p in parts):
            soft = np.concatenate([p.soft for p in parts])
        return Split(np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]), soft)
