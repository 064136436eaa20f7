"""load_data: one entry point for every data source, with labels, class maps and carved splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from ..io import sha256_file
from .class_map import remap_classes
from .classes import CLASS_NAMES
from .csv_source import read_fer2013_csv
from .dataset import FerData, Split
from .ferplus import FERPLUS8_CLASS_NAMES, ferplus_labels, ferplus_majority_labels, read_ferplus_csv, votes_for_rows
from .folder_source import read_folder
from .npz_source import read_npz
from .raw import RawSplit
from .splits import check_val_fraction, complete_splits
from .synthetic import synthetic_data

LABEL_KINDS = ("fer2013", "ferplus", "ferplus-soft", "ferplus8", "ferplus8-soft")


def read_source(path: Path, class_map: dict | None) -> tuple[dict[str, RawSplit], tuple[str, ...], dict]:
    """Dispatch on the path -> (raw splits, class names, provenance meta)."""
    if path.is_dir():
        splits, class_names, fingerprint = read_folder(path, class_map)
        return splits, class_names, {"kind": "folder", "path": str(path), "sha256": fingerprint}
    suffix = path.suffix.lower()
    if suffix == ".csv":
        parsed, _, side = read_fer2013_csv(path)
        note = None if side == 48 else f"images of {side}x{side} resized to 48x48"
        splits = {name: RawSplit(x, y, rows=rows, resized=note and f"{len(y)} {note}")
                  for name, (x, y, rows) in parsed.items()}
        kind, class_names = "csv", CLASS_NAMES
    elif suffix == ".npz":
        splits, class_names = read_npz(path)
        kind = "npz"
    else:
        raise DataError(f"{path}: unsupported data source; give a .csv (fer2013.csv), an .npz or an image folder")
    return splits, class_names, {"kind": kind, "path": str(path), "sha256": sha256_file(path)}


def _ferplus_splits(
    raw: dict[str, RawSplit], class_names: tuple[str, ...], path: Path, labels: str, ferplus_csv: Path | None
) -> tuple[dict[str, Split], dict[str, int], str]:
    """Relabel with FER+ votes -> (splits, rows dropped per split, where the votes came from)."""
    if class_names != CLASS_NAMES:
        raise DataError(f"{path}: FER+ labels need the 7 FER2013 classes, but the file has {', '.join(class_names)}")
    csv_votes = None
    if ferplus_csv is not None:
        csv_votes = read_ferplus_csv(Path(ferplus_csv))
    splits: dict[str, Split] = {}
    dropped: dict[str, int] = {}
    for name, part in raw.items():
        if csv_votes is not None and part.rows is not None:
            votes = votes_for_rows(part.rows, *csv_votes, name, str(path), Path(ferplus_csv))
        elif part.votes is not None:
            votes = part.votes
        else:
            how = (
                "pass --ferplus-csv fer2013new.csv" if part.rows is not None
                else "use an npz with {split}_ferplus votes or {split}_row indices, or fer2013.csv with --ferplus-csv"
            )
            raise DataError(f"{path}: no FER+ votes for the {name} split; {how}")
        if labels.startswith("ferplus8"):
            keep, hard, soft_targets = ferplus_majority_labels(votes)
        else:
            keep, hard, soft_targets = ferplus_labels(votes, part.y)
        dropped[name] = int((~keep).sum())
        splits[name] = Split(part.x[keep], hard[keep], soft_targets[keep] if labels.endswith("-soft") else None)
    return splits, dropped, str(ferplus_csv) if csv_votes is not None else "npz"


def require_val_split(data: FerData) -> None:
    """Training selects on val: say what is missing and how to get one, not just 'no val split'."""
    splits, display, val_fraction = data.splits, data.source, data.meta.get("val_fraction", 0.1)
    if len(splits.get("val", ())) or not len(splits.get("train", ())):
        return
    if val_fraction == 0:
        raise DataError(f"{display}: has no val split and --val-fraction 0 carves none; give val rows "
                        "(csv Usage PublicTest, npz val_x/val_y, folder val/) or a --val-fraction above 0")
    per_class = np.bincount(splits["train"].y)
    raise DataError(f"{display}: has no val split, and its {len(splits['train'].y)} training images "
                    f"({int(per_class[per_class > 0].min())} in its smallest class) are too few to carve one; "
                    "give val rows (csv Usage PublicTest, npz val_x/val_y, folder val/) or more images")


def load_data(
    source: str | Path | None = None,
    *,
    labels: str = "fer2013",
    class_map: dict[str, str] | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    ferplus_csv: str | Path | None = None,
    synthetic_per_class: int = 300,
) -> FerData:
    """Load a data set into memory as uint8 48x48 grayscale images with int64 labels.

    source:
      * None or "synthetic": cartoon faces (synthetic_per_class per class, seeded by `seed`;
        val and test each take val_fraction of them).
      * "*.csv": Kaggle fer2013.csv (emotion,pixels[,Usage]); Usage Training/PublicTest/
        PrivateTest -> train/val/test, no Usage column -> everything is train.
      * "*.npz": train_x/train_y/val_x/val_y/test_x/test_y (any subset) or a single x/y pair;
        optional class_names, {split}_row and {split}_ferplus arrays.
      * a folder: ROOT/<split>/<class>/* or ROOT/<class>/* with any common image format.
    labels: "fer2013" (the source labels), "ferplus" (FER+ plurality vote over the 7 basic
      emotions, mapped to FER2013 order), or "ferplus-soft" (the same, plus `soft` = normalised
      votes). Votes come from the npz's {split}_ferplus arrays or, for a csv source or an npz
      with {split}_row, from `ferplus_csv` (fer2013new.csv, joined by row). Rows FER+ marks as
      non-faces are dropped and counted in meta["dropped"]["ferplus_nonface"].
      "ferplus8" / "ferplus8-soft": FER+'s 8 classes (FER2013 order + contempt) under Barsoum et
      al.'s majority rule (ferplus.ferplus_majority_labels); rows without a majority are counted in
      meta["dropped"]["ferplus_no_majority"].
    class_map: {source class -> target class or "drop"}; see class_map.py. With a map the
      classes are the targets found (canonical order first, then extras such as contempt).
    Missing splits are carved, stratified by class with `seed`:
      * a source with only train (x/y npz, ROOT/<class>/, csv without Usage): test and val each
        take val_fraction of it;
      * a source with train and test but no val: val takes val_fraction of train.
      val_fraction=0 carves nothing.
    """
    if labels not in LABEL_KINDS:
        raise ConfigError(f"--labels must be one of {', '.join(LABEL_KINDS)}, got '{labels}'")
    check_val_fraction(val_fraction)
    if ferplus_csv is not None and labels == "fer2013":
        raise ConfigError("--ferplus-csv is only used with --labels ferplus or ferplus-soft")

    if source is None or str(source) == "synthetic":
        if labels != "fer2013":
            raise DataError("synthetic data has no FER+ votes; use --labels fer2013 or a FER2013 source")
        data = synthetic_data(synthetic_per_class, seed=seed, val_fraction=val_fraction, test_fraction=val_fraction)
        splits, class_names = data.splits, data.class_names
        meta = {**data.meta, "path": None, "sha256": None}
        display = "synthetic"
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise DataError(f"{path}: no such file or directory")
        raw, class_names, meta = read_source(path, class_map)
        display = str(path)
        resized = {name: part.resized for name, part in raw.items() if part.resized}
        if resized:
            meta["resized"] = resized
        if not any(len(part.y) for part in raw.values()):
            raise DataError(f"{path}: holds no images")
        if labels == "fer2013":
            splits = {name: Split(part.x, part.y) for name, part in raw.items()}
        else:
            if meta["kind"] == "folder":
                raise DataError(
                    f"{path}: image folders carry no FER+ votes; use fer2013.npz or fer2013.csv with --ferplus-csv"
                )
            splits, dropped, votes_from = _ferplus_splits(raw, class_names, path, labels, ferplus_csv)
            meta["ferplus_votes"] = votes_from
            why = "ferplus_no_majority" if labels.startswith("ferplus8") else "ferplus_nonface"
            meta.setdefault("dropped", {})[why] = dropped
            if labels.startswith("ferplus8"):
                class_names = FERPLUS8_CLASS_NAMES

    # Folders resolve their class map while reading (folder names); arrays are remapped here.
    if class_map is not None and meta["kind"] != "folder":
        splits, class_names, by_map = remap_classes(splits, class_names, class_map, display)
        meta.setdefault("dropped", {})["class_map"] = by_map
    splits, carved = complete_splits(splits, val_fraction, seed)
    if not any(len(s) for s in splits.values()):
        raise DataError(f"{display}: no images left after relabelling and the class map")
    meta.update(
        labels=labels, seed=seed, val_fraction=val_fraction, class_map=class_map, carved=carved,
        counts={name: len(s) for name, s in splits.items()},
    )
    meta.setdefault("dropped", {})
    return FerData(splits, tuple(class_names), display, meta)
