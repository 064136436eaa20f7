"""Seeded, class-stratified splitting, and carving val/test out of sources that lack them."""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, DataError
from .dataset import Split


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices of `y` into (keep_idx, carved_idx), carving `fraction` of every class.

    Each class contributes round(n_c * fraction) samples to the carved side, clipped so that a
    class with at least 2 samples keeps at least one on each side (a single sample stays on the
    keep side). Both index arrays are sorted; the same (y, fraction, seed) always gives the same split.
    """
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"labels must be a 1-D integer array, got {y.dtype} {y.shape}")
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"split fraction must be between 0 and 1 (exclusive), got {fraction}")
    if len(y) and y.min() < 0:
        raise DataError(f"labels must be non-negative, found {int(y.min())}")
    n = len(y)
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy()
    rng = np.random.default_rng(seed)
    # Random order within each class: shuffle, then a stable sort by label keeps the shuffle per class.
    shuffled = rng.permutation(n)
    grouped = shuffled[np.argsort(y[shuffled], kind="stable")]
    counts = np.bincount(y)
    carve = np.rint(counts * fraction).astype(np.int64)
    carve = np.where(counts >= 2, np.clip(carve, 1, np.maximum(counts - 1, 1)), 0)
    class_start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    labels_in_order = y[grouped]
    rank_in_class = np.arange(n) - class_start[labels_in_order]
    is_carved = rank_in_class < carve[labels_in_order]
    return np.sort(grouped[~is_carved]), np.sort(grouped[is_carved])


def check_val_fraction(val_fraction: float) -> None:
    # Single-split sources lose val_fraction twice (val and test), so it must stay below one half.
    if not 0.0 <= val_fraction < 0.5:
        raise ConfigError(f"--val-fraction must be in [0, 0.5), got {val_fraction}")


def complete_splits(splits: dict[str, Split], val_fraction: float, seed: int) -> tuple[dict[str, Split], dict]:
    """Carve the splits a source does not provide; returns (splits, what-was-carved for meta).

    * only train (single-split sources): test = val_fraction of it, val = val_fraction of it
      (both stratified, fractions of the whole set);
    * train and test but no val: val = val_fraction of train;
    * anything else is kept as it is. val_fraction == 0 carves nothing.
    """
    check_val_fraction(val_fraction)
    present = {name for name, s in splits.items() if len(s)}
    carved: dict = {}
    if val_fraction == 0 or "train" not in present or "val" in present:
        return splits, carved
    splits = dict(splits)
    train = splits["train"]
    if "test" not in present:
        keep, test_idx = stratified_split(train.y, val_fraction, seed)
        splits["test"] = train.subset(test_idx)
        train = train.subset(keep)
        carved["test"] = {"from": "train", "fraction": val_fraction, "n": len(test_idx)}
        # val is val_fraction of the original set, i.e. a larger fraction of what is left.
        val_share = val_fraction / (1.0 - val_fraction)
    else:
        val_share = val_fraction
    keep, val_idx = stratified_split(train.y, val_share, seed + 1)
    splits["val"] = train.subset(val_idx)
    splits["train"] = train.subset(keep)
    carved["val"] = {"from": "train", "fraction": val_fraction, "n": len(val_idx)}
    ordered = {name: splits[name] for name in ("train", "val", "test") if name in splits}
    return ordered, carved
