"""Bring images of any size, depth and channel layout to uint8 grayscale 48x48."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import DataError

IMAGE_SIZE = 48
IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".bmp", ".dib", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm", ".pnm"}
)
# ITU-R BT.601 luma, the weights cv2.COLOR_RGB2GRAY uses.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def resize_batch(x: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """Resize uint8 [N,H,W] to [N,size,size]; INTER_AREA because it averages instead of aliasing."""
    if x.shape[1:] == (size, size):
        return x
    out = np.empty((len(x), size, size), dtype=np.uint8)
    for i, img in enumerate(x):
        out[i] = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return out


def to_uint8(x: np.ndarray, where: str) -> np.ndarray:
    """Integer arrays must already hold 0..255; float arrays in [0, 1] are scaled by 255."""
    if x.dtype == np.uint8:
        return x
    if x.dtype == np.bool_ or not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise DataError(f"{where}: images have dtype {x.dtype}; save them as uint8 0..255")
    if x.size == 0:
        return x.astype(np.uint8)
    if np.issubdtype(x.dtype, np.floating):
        bad = ~np.isfinite(x)
        if bad.any():
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            raise DataError(f"{where}: {int(bad.sum())} pixels are NaN or infinite, the first at index {index} "
                            f"(image {index[0]}); fix or drop those images")
    lo, hi = float(x.min()), float(x.max())
    if np.issubdtype(x.dtype, np.floating) and lo >= 0.0 and hi <= 1.0:
        return np.rint(x * 255.0).astype(np.uint8)
    if lo < 0 or hi > 255:
        raise DataError(f"{where}: image values span {lo:g}..{hi:g}; expected 0..255 (or floats in 0..1)")
    return np.rint(x).astype(np.uint8)


def to_gray_batch(x: np.ndarray, where: str, size: int = IMAGE_SIZE) -> np.ndarray:
    """[N,H,W], [N,H,W,1], [N,1,H,W], [N,H,W,3|4] (RGB[A]) or [N,size*size] -> uint8 [N,size,size]."""
    if x.ndim == 2 and x.shape[1] == size * size:
        x = x.reshape(len(x), size, size)
    elif x.ndim == 4 and x.shape[3] == 1:
        x = x[..., 0]
    elif x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    elif x.ndim == 4 and x.shape[3] in (3, 4):
        # Alpha carries no intensity; luma of the colour channels, computed in float then rounded.
        x = to_uint8(x[..., :3], where).astype(np.float32) @ _LUMA
        x = np.rint(x)
    if x.ndim != 3:
        raise DataError(
            f"{where}: images have shape {x.shape}; expected [N,H,W], [N,H,W,1] or RGB [N,H,W,3]"
        )
    return resize_batch(to_uint8(x, where), size)


@contextmanager
def opencv_quiet() -> Iterator[None]:
    """Mute what OpenCV and its codecs print on their own (libpng's "libpng error: ...", a missing
    camera's warnings) while fercomp's own error says it in one line. The codecs write to the C
    stderr directly, so file descriptor 2 points at /dev/null for the duration."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
        cv2.utils.logging.setLogLevel(level)


def _decode_with_pil(path: Path) -> np.ndarray | None:
    """Fallback for formats cv2 cannot read (e.g. GIF on some builds); first frame, grayscale."""
    try:
        with Image.open(path) as img:
            img.seek(0)
            if img.mode.startswith("I;16"):
                return (np.asarray(img, dtype=np.uint16) >> 8).astype(np.uint8)
            if img.mode in ("I", "F"):
                return to_uint8(np.asarray(img), str(path))
            return np.asarray(img.convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None


def read_gray_image(path: Path, size: int = IMAGE_SIZE) -> np.ndarray:
    """Decode any common image file to uint8 [size,size] grayscale, or raise DataError naming it."""
    with opencv_quiet():
        img = decode_gray_image(path)
    if img.shape != (size, size):
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return img


def decode_gray_image(path: Path) -> np.ndarray:
    """Decode any common image file to uint8 grayscale at its own size, or raise DataError naming it.
    Call it inside `opencv_quiet()` (once around a whole folder: it redirects stderr)."""
    # np.fromfile + imdecode instead of cv2.imread: imread cannot open non-ASCII paths on Windows.
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise DataError(f"{path}: cannot read image file ({err.strerror or err})") from err
    img = cv2.imdecode(raw, cv2.IMREAD_GRAYSCALE) if raw.size else None
    if img is None:
        img = _decode_with_pil(path)
    if img is None or img.ndim != 2 or img.size == 0:
        raise DataError(f"{path}: cannot decode image file (corrupt or unsupported format); delete or re-export it")
    return img
