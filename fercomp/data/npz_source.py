"""Read an npz data set: per-split arrays (train_x, train_y, ...) or one split as x / y.

Optional extras, read only when present: `class_names`, `{split}_row` (0-based FER2013 csv row,
-1 unknown) and `{split}_ferplus` (FER+ votes [N,10], columns `ferplus_columns`).
"""

from __future__ import annotations

import tokenize
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError
from .classes import CLASS_NAMES, SYNONYMS
from .dataset import SPLITS
from .ferplus import FERPLUS_COLUMNS
from .images import IMAGE_SIZE, to_gray_batch
from .raw import RawSplit


def _image_size(x: np.ndarray) -> tuple[int, int] | None:
    """The stored (H, W) when it is not the 48x48 the models take (those images were resized)."""
    if x.ndim == 2 and x.shape[1] == IMAGE_SIZE * IMAGE_SIZE:
        return None
    size = tuple(x.shape[2:4]) if x.ndim == 4 and x.shape[1] == 1 else tuple(x.shape[1:3])
    return None if size == (IMAGE_SIZE, IMAGE_SIZE) else (int(size[0]), int(size[1]))


def _labels(y: np.ndarray, where: str) -> np.ndarray:
    if y.ndim != 1:
        raise DataError(f"{where}: labels must be a 1-D array of class indices, got shape {y.shape}")
    if np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0):
        y = y.astype(np.int64)
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{where}: labels have dtype {y.dtype}; save integer class indices")
    return y.astype(np.int64)


def _class_names(npz, path: Path, max_label: int) -> tuple[str, ...]:
    if "class_names" not in npz.files:
        if max_label >= len(CLASS_NAMES):
            raise DataError(
                f"{path}: labels go up to {max_label} but there is no class_names array; "
                "save class_names with one name per label"
            )
        return CLASS_NAMES
    raw = _array(npz, "class_names", path)
    if raw.ndim != 1 or raw.dtype.kind not in "US":
        raise DataError(f"{path}: class_names must be a 1-D string array, got {raw.dtype} {raw.shape}")
    names = tuple(SYNONYMS.get(str(n).strip().lower(), str(n).strip().lower()) for n in raw)
    if len(set(names)) != len(names):
        raise DataError(f"{path}: class_names has repeated classes: {', '.join(map(str, raw))}")
    if max_label >= len(names):
        raise DataError(f"{path}: labels go up to {max_label} but class_names lists only {len(names)} classes")
    return names


def _ferplus_votes(npz, path: Path, key: str, n: int) -> np.ndarray | None:
    if key not in npz.files:
        return None
    votes = _array(npz, key, path)
    if votes.shape != (n, len(FERPLUS_COLUMNS)):
        raise DataError(f"{path}: {key} has shape {votes.shape}, expected ({n}, {len(FERPLUS_COLUMNS)})")
    if "ferplus_columns" in npz.files:
        columns = [str(c) for c in _array(npz, "ferplus_columns", path)]
        if sorted(c.lower() for c in columns) != sorted(c.lower() for c in FERPLUS_COLUMNS):
            raise DataError(f"{path}: ferplus_columns is {columns}, expected {list(FERPLUS_COLUMNS)}")
        lower = [c.lower() for c in columns]
        votes = votes[:, [lower.index(c.lower()) for c in FERPLUS_COLUMNS]]
    return votes.astype(np.int16)


# What a damaged npz raises while an array is read (the archive itself opened fine).
# (numpy parses each array's header with the tokenize module: a damaged header raises its errors.)
READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError, tokenize.TokenError,
               SyntaxError)


def _array(npz, key: str, path: Path) -> np.ndarray:
    try:
        return npz[key]
    except READ_ERRORS as err:
        raise DataError(f"{path}: array {key} is corrupt ({err.__class__.__name__}: {err}); "
                        "re-save the file with numpy.savez") from None


def read_npz(path: Path) -> tuple[dict[str, RawSplit], tuple[str, ...]]:
    """-> ({split: RawSplit}, class_names). A single x/y pair becomes the train split."""
    try:
        npz = np.load(path, allow_pickle=False)
    except READ_ERRORS as err:
        raise DataError(f"{path}: cannot read npz file ({err}); re-save it with numpy.savez") from None
    with npz:
        files = set(npz.files)
        per_split = [s for s in SPLITS if f"{s}_x" in files or f"{s}_y" in files]
        if per_split and ({"x", "y"} & files):
            raise DataError(f"{path}: holds both x/y and per-split arrays; keep one layout")
        layout = {s: (f"{s}_x", f"{s}_y") for s in per_split} if per_split else {"train": ("x", "y")}
        if not per_split and not {"x", "y"} & files:
            raise DataError(
                f"{path}: no image arrays found (keys: {', '.join(sorted(files)) or 'none'}); "
                "expected train_x/train_y, val_x/val_y, test_x/test_y or x/y"
            )
        splits: dict[str, RawSplit] = {}
        for split, (x_key, y_key) in layout.items():
            for key in (x_key, y_key):
                if key not in files:
                    raise DataError(f"{path}: has {x_key if key == y_key else y_key} but no {key}")
            where = f"{path} [{x_key}]"
            raw_x = _array(npz, x_key, path)
            x = to_gray_batch(raw_x, where)
            y = _labels(_array(npz, y_key, path), f"{path} [{y_key}]")
            if len(x) != len(y):
                raise DataError(f"{path}: {x_key} has {len(x)} images but {y_key} has {len(y)} labels")
            if len(y) and y.min() < 0:
                raise DataError(f"{path}: {y_key} holds a negative label ({int(y.min())})")
            rows = _array(npz, f"{split}_row", path).astype(np.int64) if f"{split}_row" in files else None
            if rows is not None and rows.shape != y.shape:
                raise DataError(f"{path}: {split}_row has shape {rows.shape}, expected {y.shape}")
            votes = _ferplus_votes(npz, path, f"{split}_ferplus", len(y))
            size = _image_size(raw_x)
            resized = f"{len(y)} images of {size[0]}x{size[1]} resized to 48x48" if size else None
            splits[split] = RawSplit(x, y, rows=rows, votes=votes, resized=resized)
        max_label = max((int(s.y.max()) for s in splits.values() if len(s.y)), default=-1)
        class_names = _class_names(npz, path, max_label)
    if not any(len(s.y) for s in splits.values()):
        raise DataError(f"{path}: holds no images")
    return splits, class_names
