"""Data-set health report: counts, blank images, exact duplicates within and across splits.

Duplicates are exact: images compare equal byte for byte (hashed with blake2b). FER2013 has
many (about 1,200 surplus copies in Training, hundreds shared between splits), which inflate
test scores of a model that memorises its training set.
"""

from __future__ import annotations

import hashlib

import numpy as np
from rich.table import Table

from .dataset import SPLITS, FerData

NEAR_BLANK_STD = 2.0
# (split, split it is compared with): how many images of the first also occur in the second.
CROSS_PAIRS = (("val", "train"), ("test", "train"), ("test", "val"))
_STD_CHUNK = 4096


def _digests(x: np.ndarray) -> np.ndarray:
    return np.array([hashlib.blake2b(img.tobytes(), digest_size=16).digest() for img in x], dtype="S16")


def _pixel_std(x: np.ndarray) -> np.ndarray:
    # Chunked so a 28k-image split never becomes a float64 copy of 500 MB.
    flat = x.reshape(len(x), -1)
    return np.concatenate(
        [flat[i:i + _STD_CHUNK].astype(np.float32).std(axis=1) for i in range(0, len(flat), _STD_CHUNK)]
    ) if len(flat) else np.zeros(0, dtype=np.float32)


def _split_info(x: np.ndarray, y: np.ndarray, class_names: tuple[str, ...], digests: np.ndarray) -> dict:
    flat = x.reshape(len(x), -1)
    constant = flat.min(axis=1) == flat.max(axis=1) if len(x) else np.zeros(0, dtype=bool)
    near_blank = (_pixel_std(x) < NEAR_BLANK_STD) & ~constant
    _, group, size = np.unique(digests, return_inverse=True, return_counts=True)
    in_dup = size[group] > 1
    # A group conflicts when its images do not all carry the same label.
    labels_per_group = np.unique(np.stack([group, y]), axis=1)[0] if len(y) else np.zeros(0, dtype=np.int64)
    conflicting = int((np.bincount(labels_per_group, minlength=len(size)) > 1).sum())
    counts = np.bincount(y, minlength=len(class_names))
    return {
        "n": int(len(y)),
        "per_class": {name: int(c) for name, c in zip(class_names, counts)},
        "blank": int(constant.sum()),
        "blank_indices": np.flatnonzero(constant).tolist(),
        "near_blank": int(near_blank.sum()),
        "near_blank_indices": np.flatnonzero(near_blank).tolist(),
        "duplicate_groups": int((size > 1).sum()),
        "duplicate_images": int(in_dup.sum()),
        "surplus_copies": int(in_dup.sum() - (size > 1).sum()),
        "conflicting_groups": conflicting,
    }


def data_info(data: FerData) -> dict:
    """Counts per split and class, blank images (constant; near-blank: pixel std < 2), exact
    duplicate groups and surplus copies within each split, labels that disagree inside a group,
    and images shared across splits (e.g. "val∩train": val images that also occur in train)."""
    names = [s for s in SPLITS if s in data.splits] + [s for s in data.splits if s not in SPLITS]
    digests = {name: _digests(data.splits[name].x) for name in names}
    splits = {
        name: _split_info(data.splits[name].x, data.splits[name].y, data.class_names, digests[name])
        for name in names
    }
    cross = {
        f"{a}∩{b}": int(np.isin(digests[a], digests[b]).sum())
        for a, b in CROSS_PAIRS if a in digests and b in digests
    }
    return {
        "source": data.source,
        "class_names": list(data.class_names),
        "image_size": list(data.image_size) if data.splits else [],
        "splits": splits,
        "cross_split": cross,
    }


def render_data_info(info: dict) -> list[Table]:
    """Rich tables for the CLI, to print in order: images per class and split, quality, overlap."""
    splits = info["splits"]
    counts = Table(title=f"Images per class ({info['source']})")
    counts.add_column("class")
    for name in splits:
        counts.add_column(name, justify="right")
    for cls in info["class_names"]:
        counts.add_row(cls, *(f"{s['per_class'][cls]:,}" for s in splits.values()))
    counts.add_row("total", *(f"{s['n']:,}" for s in splits.values()), style="bold")

    quality = Table(title="Quality")
    for col in ("split", "images", "blank", "near-blank (std<2)", "dup groups", "surplus copies", "conflicting groups"):
        quality.add_column(col, justify="left" if col == "split" else "right")
    for name, s in splits.items():
        quality.add_row(name, *(f"{s[k]:,}" for k in (
            "n", "blank", "near_blank", "duplicate_groups", "surplus_copies", "conflicting_groups")))

    tables = [counts, quality]
    if info["cross_split"]:
        overlap = Table(title="Images shared across splits")
        overlap.add_column("splits")
        overlap.add_column("images", justify="right")
        for pair, n in info["cross_split"].items():
            overlap.add_row(pair, f"{n:,}")
        tables.append(overlap)
    return tables
