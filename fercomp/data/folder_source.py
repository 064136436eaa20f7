"""Read an image folder: ROOT/<split>/<class>/* or ROOT/<class>/*.

Split folder names are matched case-insensitively (train/training, val/valid/validation/
publictest, test/privatetest); class folder names go through the synonym table or the user's
class map. Hidden entries and files without an image extension are skipped silently, since
folders copied around collect .DS_Store, Thumbs.db, README.txt and the like.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from ..errors import DataError
from .class_map import ClassResolver, ordered_class_names
from .classes import CLASS_NAMES
from .images import IMAGE_EXTENSIONS, IMAGE_SIZE, decode_gray_image, opencv_quiet, resize_batch
from .raw import RawSplit

SPLIT_FOLDERS = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "publictest": "val",
    "test": "test", "privatetest": "test",
}
_SKIPPED_FOLDERS = {"__macosx"}


def _visible(entry: Path) -> bool:
    return not entry.name.startswith(".") and entry.name.lower() not in _SKIPPED_FOLDERS


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and _visible(p))


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and _visible(path)


def _stray_images(folder: Path, hint: str) -> None:
    """Images lying next to the class folders have no label: refuse rather than guess."""
    stray = sorted(p for p in folder.iterdir() if p.is_file() and _is_image(p))
    if stray:
        raise DataError(f"{stray[0]}: image is not inside a class folder; move it into {hint}")


def _image_files(class_folder: Path) -> list[Path]:
    """Image files under a class folder (nested folders included), sorted for a stable order."""
    found = []
    for dirpath, dirnames, filenames in os.walk(class_folder):
        dirnames[:] = [d for d in dirnames if _visible(Path(d))]
        found.extend(Path(dirpath, f) for f in filenames if _is_image(Path(f)))
    return sorted(found)


def _split_layout(root: Path) -> dict[str, list[Path]]:
    """{split: [class folders]}; a root whose subfolders are not split names is one train split."""
    subfolders = _subfolders(root)
    split_named = [f for f in subfolders if f.name.lower() in SPLIT_FOLDERS]
    if not split_named:
        _stray_images(root, f"{root}/<class>/")
        return {"train": subfolders}
    others = [f.name for f in subfolders if f.name.lower() not in SPLIT_FOLDERS]
    if others:
        raise DataError(
            f"{root}: mixes split folders ({', '.join(f.name for f in split_named)}) with other folders "
            f"({', '.join(others)}); use ROOT/<split>/<class>/ or ROOT/<class>/"
        )
    layout: dict[str, list[Path]] = {}
    folder_of_split: dict[str, str] = {}
    for folder in split_named:
        split = SPLIT_FOLDERS[folder.name.lower()]
        if split in layout:
            raise DataError(
                f"{root}: both {folder_of_split[split]} and {folder.name} hold the {split} split; keep one"
            )
        _stray_images(folder, f"{folder}/<class>/")
        layout[split] = _subfolders(folder)
        folder_of_split[split] = folder.name
    return {s: layout[s] for s in ("train", "val", "test") if s in layout}


def folder_fingerprint(root: Path, files: list[Path]) -> str:
    """sha256 over sorted relative paths and sizes: cheap, and changes when files are added or edited."""
    digest = hashlib.sha256()
    for rel, size in sorted((p.relative_to(root).as_posix(), p.stat().st_size) for p in files):
        digest.update(f"{rel}\0{size}\n".encode())
    return digest.hexdigest()


def _resized_note(other_sizes: dict[tuple[int, int], int]) -> str | None:
    """"12 images of 64x64, 3 of 100x80 resized to 48x48" (the most common sizes first)."""
    if not other_sizes:
        return None
    ranked = sorted(other_sizes.items(), key=lambda kv: -kv[1])
    parts = [f"{n} {'images' if i == 0 else ''} of {h}x{w}".replace("  ", " ") for i, ((h, w), n) in enumerate(ranked[:3])]
    more = f" and {sum(n for _, n in ranked[3:])} of other sizes" if len(ranked) > 3 else ""
    return ", ".join(parts) + more + " resized to 48x48"


def read_folder(root: Path, class_map: dict[str, str] | None) -> tuple[dict[str, RawSplit], tuple[str, ...], str]:
    """-> ({split: RawSplit}, class_names, fingerprint). Without a class map the classes are the
    canonical seven; with one, they are the targets found (canonical order, then extras sorted)."""
    layout = _split_layout(root)
    resolver = ClassResolver(class_map, str(root))
    targets = {folder: resolver.resolve(folder.name) for folders in layout.values() for folder in folders}
    resolver.check_all_used(sorted({f.name for f in targets}))
    kept_targets = {t for t in targets.values() if t is not None}
    class_names = ordered_class_names(kept_targets) if class_map is not None else CLASS_NAMES
    if not class_names:
        raise DataError(f"{root}: the class map drops every class folder; keep at least one")

    splits: dict[str, RawSplit] = {}
    all_files: list[Path] = []
    for split, folders in layout.items():
        images, labels, other_sizes = [], [], {}
        for folder in folders:
            if targets[folder] is None:
                continue
            files = _image_files(folder)
            all_files.extend(files)
            with opencv_quiet():  # once per class folder, not per image
                decoded = [decode_gray_image(file) for file in files]
            for image in decoded:
                if image.shape != (IMAGE_SIZE, IMAGE_SIZE):
                    other_sizes[image.shape] = other_sizes.get(image.shape, 0) + 1
                images.append(resize_batch(image[None])[0])
            labels.extend([class_names.index(targets[folder])] * len(files))
        x = np.stack(images) if images else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
        splits[split] = RawSplit(x, np.array(labels, dtype=np.int64), resized=_resized_note(other_sizes))
    if not all_files:
        raise DataError(
            f"{root}: no images found; expected ROOT/<class>/*.png or ROOT/train/<class>/*.jpg "
            f"(classes: {', '.join(CLASS_NAMES)})"
        )
    return splits, class_names, folder_fingerprint(root, all_files)
