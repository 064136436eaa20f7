"""Frames with faces at known boxes, regenerated from a seed: the reference video of the end-to-end
benchmark and the labelled set the detectors are scored on.

Faces are pasted onto smooth procedural backgrounds (colour gradients and blurred blobs, no
photographs needed); the only photograph is the public-domain astronaut in `examples/`. Every
pasted face's box is returned, so detection and tracking can be scored against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ..deploy.faces import Box, expand_box

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ASTRONAUT = EXAMPLES / "astronaut.jpg"
# Hand-labelled in the photograph (cheek to cheek, hairline to chin); tests/test_detectors.py uses it too.
ASTRONAUT_FACE = Box(180, 80, 92, 100)
# Pasted faces carry FER2013's framing: the face box grown by 10% on each side.
FRAMING = 0.1


def astronaut_face() -> np.ndarray:
    """The astronaut's face with FER2013-like framing, BGR."""
    photo = cv2.imread(str(ASTRONAUT))
    if photo is None:
        raise FileNotFoundError(f"{ASTRONAUT}: the example photograph is missing")
    frame = expand_box(ASTRONAUT_FACE, FRAMING, photo.shape)
    return photo[frame.y : frame.y + frame.h, frame.x : frame.x + frame.w].copy()


def background(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A smooth BGR background: a colour gradient with a few large blurred blobs."""
    height, width = shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    corners = rng.uniform(30, 220, (2, 2, 3)).astype(np.float32)
    u, v = (xs / max(1, width - 1))[..., None], (ys / max(1, height - 1))[..., None]
    image = (corners[0, 0] * (1 - u) * (1 - v) + corners[0, 1] * u * (1 - v)
             + corners[1, 0] * (1 - u) * v + corners[1, 1] * u * v)
    blobs = np.zeros((height, width, 3), np.float32)
    for _ in range(6):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        axes = (int(rng.integers(width // 12, width // 4)), int(rng.integers(height // 12, height // 4)))
        cv2.ellipse(blobs, centre, axes, float(rng.uniform(0, 180)), 0, 360, rng.uniform(-60, 60, 3).tolist(), -1)
    image += cv2.GaussianBlur(blobs, (0, 0), max(2.0, width / 80))
    image += rng.normal(0, 4, image.shape).astype(np.float32)  # sensor noise
    return np.clip(image, 0, 255).astype(np.uint8)


def paste(canvas: np.ndarray, face: np.ndarray, box: Box) -> None:
    """`face` resized into `box` (clipped to the canvas) in place."""
    resized = cv2.resize(face, (box.w, box.h), interpolation=cv2.INTER_AREA)
    if resized.ndim == 2:
        resized = cv2.cvtColor(resized, cv2.COLOR_GRAY2BGR)
    height, width = canvas.shape[:2]
    x0, y0, x1, y1 = max(0, box.x), max(0, box.y), min(width, box.x + box.w), min(height, box.y + box.h)
    if x1 > x0 and y1 > y0:
        canvas[y0:y1, x0:x1] = resized[y0 - box.y : y1 - box.y, x0 - box.x : x1 - box.x]


@dataclass(frozen=True)
class Mover:
    """A face moving in a straight line while its size swings: its box at any frame."""

    x: float
    y: float
    dx: float  # pixels per frame
    dy: float
    size: float
    swing: float  # relative size change, +-
    period: float  # frames per size cycle
    aspect: float = 1.0  # height / width of the pasted face
    flip: bool = False

    def box(self, frame: int) -> Box:
        side = self.size * (1 + self.swing * np.sin(2 * np.pi * frame / self.period))
        width, height = round(side), round(side * self.aspect)
        return Box(round(self.x + self.dx * frame - width / 2), round(self.y + self.dy * frame - height / 2), width, height)


def reference_movers(shape: tuple[int, int], faces: int, rng: np.random.Generator, frames: int,
                     aspect: float) -> list[Mover]:
    """`faces` faces in separate horizontal lanes, crossing the frame once, always inside it."""
    height, width = shape
    lane = height / faces
    movers = []
    for i in range(faces):
        size = float(min(lane * 0.75 / aspect / 1.15, width / 4) * rng.uniform(0.85, 1.0))
        direction = 1 if i % 2 == 0 else -1
        x0 = size if direction > 0 else width - size
        dx = direction * (width - 2 * size) / max(1, frames)
        movers.append(Mover(x0, lane * (i + 0.5), dx, 0.0, size, 0.15, float(rng.uniform(40, 80)), aspect,
                            flip=direction < 0))
    return movers


def moving_faces(shape: tuple[int, int] = (480, 640), faces: int = 1, frames: int = 100, seed: int = 0
                 ) -> Iterator[tuple[np.ndarray, list[Box]]]:
    """(BGR frame, true face boxes) for each frame of a clip of the astronaut's face moving and scaling."""
    rng = np.random.default_rng(seed)
    face = astronaut_face()
    flipped = face[:, ::-1].copy()
    back = background(shape, rng)
    movers = reference_movers(shape, faces, rng, frames, face.shape[0] / face.shape[1])
    for frame in range(frames):
        canvas = back.copy()
        boxes = []
        for mover in movers:
            box = mover.box(frame)
            paste(canvas, flipped if mover.flip else face, box)
            boxes.append(box)
        yield canvas, boxes


def write_video(path: str | Path, frames: Iterator[tuple[np.ndarray, list[Box]]], fps: float = 30.0) -> list[list[Box]]:
    """Frames -> an MJPG .avi (decodable by every OpenCV build); returns the true boxes per frame."""
    truth = []
    writer = None
    try:
        for image, boxes in frames:
            if writer is None:
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, image.shape[1::-1])
                if not writer.isOpened():
                    raise OSError(f"{path}: OpenCV cannot write MJPG video here")
            writer.write(image)
            truth.append(boxes)
    finally:
        if writer is not None:
            writer.release()
    return truth
