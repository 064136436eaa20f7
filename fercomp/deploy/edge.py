"""What every edge format (OpenVINO, LiteRT) shares: its metadata file, its held-out images
with labels, and the check that decides whether an export is kept.

A converted model carries no fercomp metadata of its own, so each one gets `<file>.json` beside it
(classes, input size, normalisation, precision), as a TensorRT engine does. The gate is the
export's: an FP32 conversion must agree with PyTorch on top-1 for >= 99.9% of the held-out images;
an INT8 one must stay within 1 point of its float parent's accuracy on them.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import ConfigError, ModelError
from ..io import sha256_file, write_json

FP32_MIN_AGREEMENT = 0.999
INT8_MAX_ACCURACY_DROP = 0.01
REDUCED_MIN_AGREEMENT = 0.99  # bf16 / fp16 inference of an FP32 model


def metadata_path(model_file: str | Path) -> Path:
    model_file = Path(model_file)
    return model_file.with_name(model_file.name + ".json")


def write_metadata(model_file: Path, meta: dict[str, Any]) -> None:
    write_json(metadata_path(model_file), meta)


def read_metadata(model_file: str | Path) -> dict[str, Any]:
    path = metadata_path(model_file)
    if not path.is_file():
        raise ConfigError(f"{model_file}: its metadata {path.name} is missing (export it again with `fercomp export`)")
    try:
        meta = json.loads(path.read_text())
        meta["class_names"], meta["input_size"], meta["normalization"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{path}: damaged fercomp metadata ({exc.__class__.__name__}); "
                         "export it again with `fercomp export`") from None
    return meta


@contextmanager
def staging_dir(run_path: Path) -> Iterator[Path]:
    """A temporary folder inside the run; what `publish` moves out of it is kept, the rest removed."""
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=run_path))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish(staged: list[Path], dest: Path) -> dict[str, str]:
    """Move staged files into `dest` (each rename atomic; the last one named is the entry point, moved
    last) and return name -> sha256."""
    hashes = {}
    for path in staged:
        hashes[path.name] = sha256_file(path)
        os.replace(path, dest / path.name)
    return hashes


def labelled_images(run, limit: int | None, data_source: str | None) -> tuple[np.ndarray, np.ndarray, str]:
    """The held-out images export checks parity on (see export.held_out_split), with their labels."""
    from .export import held_out_split

    split, _, where = held_out_split(run, data_source)
    return (split.x[:limit], split.y[:limit], where) if limit else (split.x, split.y, where)


def verify(reference, candidate, images: np.ndarray, labels: np.ndarray, *, int8: bool, where: str,
           target: Path, reduced: bool = False) -> dict[str, Any]:
    """Compare `candidate` with the PyTorch `reference` (for INT8: the float parent) and raise
    ParityError, naming `target`, when the gate fails."""
    from .export import ParityError

    ref, cand = reference.predict_proba(images), candidate.predict_proba(images)
    diff = np.abs(ref - cand)
    result = {
        "images": int(len(images)), "data": where, "reference": reference.backend, "candidate": candidate.backend,
        "against": "float parent (torch)" if int8 else "torch (same weights)",
        "max_abs_prob_diff": float(diff.max()) if len(diff) else 0.0,
        "mean_abs_prob_diff": float(diff.mean()) if len(diff) else 0.0,
        "top1_agreement": float((ref.argmax(1) == cand.argmax(1)).mean()) if len(ref) else 1.0,
        "reference_accuracy": float((ref.argmax(1) == labels).mean()) if len(ref) else 0.0,
        "accuracy": float((cand.argmax(1) == labels).mean()) if len(cand) else 0.0,
    }
    if int8:
        result["gate"] = {"max_accuracy_drop": INT8_MAX_ACCURACY_DROP}
        drop = result["reference_accuracy"] - result["accuracy"]
        if drop > INT8_MAX_ACCURACY_DROP + 1e-12:
            raise ParityError(f"{target}: INT8 accuracy {result['accuracy']:.2%} is {drop:.2%} below its float "
                              f"parent's {result['reference_accuracy']:.2%} on {where} (allowed "
                              f"{INT8_MAX_ACCURACY_DROP:.0%}); nothing written")
    else:
        gate = REDUCED_MIN_AGREEMENT if reduced else FP32_MIN_AGREEMENT
        result["gate"] = {"min_top1_agreement": gate}
        if result["top1_agreement"] < gate:
            raise ParityError(f"{target}: agrees with PyTorch on only {result['top1_agreement']:.3%} of {where} "
                              f"(need {gate:.1%}); nothing written")
    return result
