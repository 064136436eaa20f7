"""Find faces in an image and cut them out the way the model saw faces in training.

The detectors are in `detectors` (BlazeFace by default); OpenCV's frontal-face Haar cascade
(shipped inside opencv-python-headless, so no download) is here. A crop is the detected box grown
by a margin, clamped to the image, in grayscale at the model's input size. Images that already are
face crops skip detection.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from ..errors import ConfigError
from .board.face_detect import expand

CASCADE_FILE = "haarcascade_frontalface_default.xml"

# detectMultiScale settings: 10% scale steps and 5 neighbours are OpenCV's documented defaults
# for this cascade; below 30 px a face holds too little detail for a 48x48 model anyway.
SCALE_FACTOR = 1.1
MIN_NEIGHBORS = 5
MIN_FACE_PX = 30
# The cascade's cost grows with the pixel count; faces in larger photos are found just as well
# on a copy whose longest side is this long.
DETECT_MAX_SIDE = 1280



class Box(NamedTuple):
    x: int
    y: int
    w: int
    h: int


@lru_cache(maxsize=1)
def face_cascade() -> cv2.CascadeClassifier:
    """The frontal-face cascade, loaded once per process."""
    path = Path(cv2.data.haarcascades) / CASCADE_FILE
    if not path.is_file():
        raise ConfigError(
            f"{path}: OpenCV's face detector is missing; reinstall opencv-python-headless<5, "
            "or pass --no-detect with images that are face crops already"
        )
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise ConfigError(f"{path}: OpenCV could not load this face detector file; reinstall opencv-python-headless<5")
    return cascade


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Any pixel depth -> uint8: 16-bit keeps its high byte, floats in [0, 1] are scaled by 255."""
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return (image >> 8).astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating) and image.size and float(np.nanmax(image)) <= 1.0:
        image = image * 255.0
    return np.clip(np.nan_to_num(image.astype(np.float32)), 0, 255).round().astype(np.uint8)


def to_gray(image: np.ndarray) -> np.ndarray:
    """Gray, gray+channel, BGR or BGRA at any depth -> uint8 [H, W] (alpha carries no intensity)."""
    image = to_uint8(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    elif image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    if image.ndim != 2:
        raise ValueError(f"unsupported image shape {image.shape}")
    return image


def to_bgr(image: np.ndarray) -> np.ndarray:
    """Any supported image -> uint8 BGR [H, W, 3], the canvas annotations are drawn on."""
    image = to_uint8(image)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return cv2.cvtColor(to_gray(image), cv2.COLOR_GRAY2BGR)


def is_face_crop(gray: np.ndarray, input_size: tuple[int, int]) -> bool:
    """An image exactly the model's input size is a face crop already (FER2013-style data)."""
    return tuple(gray.shape[:2]) == tuple(input_size)


def whole_image_box(gray: np.ndarray) -> Box:
    return Box(0, 0, gray.shape[1], gray.shape[0])


def detect_faces(gray: np.ndarray) -> list[Box]:
    """Face boxes in a uint8 grayscale image, left to right then top to bottom."""
    scale = min(1.0, DETECT_MAX_SIDE / max(gray.shape))
    small = gray if scale == 1.0 else cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    min_side = max(1, round(MIN_FACE_PX * scale))
    found = face_cascade().detectMultiScale(
        small, scaleFactor=SCALE_FACTOR, minNeighbors=MIN_NEIGHBORS, minSize=(min_side, min_side)
    )
    boxes = [Box(*(int(round(v / scale)) for v in box)) for box in found]
    return sorted(boxes, key=lambda b: (b.x, b.y))


def expand_box(box: Box, margin: float, shape: tuple[int, ...]) -> Box:
    """`box` grown by `margin` x its size on each side, clamped to an image of `shape`."""
    return Box(*expand(*box, margin, *shape[:2]))


def crop_face(gray: np.ndarray, box: Box, margin: float, input_size: tuple[int, int]) -> np.ndarray:
    """The face in `box` (plus margin) as uint8 [h, w] at the model's input size."""
    region = expand_box(box, margin, gray.shape)
    patch = gray[region.y : region.y + region.h, region.x : region.x + region.w]
    h, w = input_size
    if patch.shape == (h, w):
        return np.ascontiguousarray(patch)
    return cv2.resize(patch, (w, h), interpolation=cv2.INTER_AREA)


def level_crop(gray: np.ndarray, box: Box, margin: float, input_size: tuple[int, int],
               keypoints: np.ndarray | None) -> np.ndarray:
    """Like `crop_face`, with the face first turned about its centre so its eyes are level
    (keypoints [6, 2]: right eye, left eye, ...; without keypoints it is `crop_face`)."""
    if keypoints is None:
        return crop_face(gray, box, margin, input_size)
    (rx, ry), (lx, ly) = keypoints[0], keypoints[1]
    angle = float(np.degrees(np.arctan2(ly - ry, lx - rx)))
    # Rotate only the crop's neighbourhood (the crop's diagonal covers any angle), not the frame.
    region = expand_box(box, margin + 0.5, gray.shape)
    patch = gray[region.y : region.y + region.h, region.x : region.x + region.w]
    centre = (box.x + box.w / 2 - region.x, box.y + box.h / 2 - region.y)
    turned = cv2.warpAffine(patch, cv2.getRotationMatrix2D(centre, angle, 1.0), (patch.shape[1], patch.shape[0]),
                            flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return crop_face(turned, Box(box.x - region.x, box.y - region.y, box.w, box.h), margin, input_size)


def find_face_crops(
    image: np.ndarray, input_size: tuple[int, int], detector=None, *, margin: float | None = None, level: bool = True
) -> tuple[list[Box], list[np.ndarray]]:
    """(boxes, crops) of the faces in an image (gray or BGR), found by `detector` (see `detectors`).

    `detector=None`, or an image already the model's input size, is one whole-image face. The
    margin defaults to the detector's own, the one that reproduces FER2013's framing; `level`
    turns each face upright by its eyes where the detector gives them (BlazeFace).
    """
    gray = to_gray(image)
    if detector is None or is_face_crop(gray, input_size):
        box = whole_image_box(gray)
        return [box], [crop_face(gray, box, 0.0, input_size)]
    margin = detector.margin if margin is None else margin
    faces = detector.detect(image)
    return [f.box for f in faces], [level_crop(gray, f.box, margin, input_size, f.keypoints if level else None)
                                    for f in faces]
