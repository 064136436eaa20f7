"""BlazeFace post-processing with numpy alone: SSD anchors, box decoding, weighted NMS, letterbox.

This one file serves fercomp's detector (`fercomp.deploy.detectors` runs the network with ONNX
Runtime) and the Jetson bundle (copied verbatim; TensorRT runs the network there), so a box on the
board is computed by exactly the code tested here. `BlazeFace` takes the network as a function, so
the same pre- and post-processing wraps either runtime.

The constants and formulas are MediaPipe's, as its face detection graphs configure them
(mediapipe/modules/face_detection/face_detection_{short,full}_range*.pbtxt):
- SsdAnchorsCalculator with fixed_anchor_size: every anchor is a unit-size box centred on a
  feature-map cell, one anchor per aspect ratio plus one "interpolated" anchor per layer when
  interpolated_scale_aspect_ratio > 0, layers of equal stride sharing one feature map;
- TensorsToDetectionsCalculator with reverse_output_order: each of the 16 regressor values per
  anchor is (x_center, y_center, w, h, 6 x (x, y) keypoints) in input pixels, offsets from the
  anchor's centre; scores are sigmoid(clip(logit, -100, 100));
- NonMaxSuppressionCalculator, WEIGHTED: the best remaining box absorbs every box that overlaps it
  by more than the threshold (IoU) and becomes their score-weighted mean.
The network sees an RGB image letterboxed (aspect kept, zero padding) to its square input, with
pixels scaled to [-1, 1].
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth_center", "right_ear_tragion", "left_ear_tragion")
SCORE_CLIP = 100.0


@dataclass(frozen=True)
class SsdOptions:
    """One BlazeFace variant: its input side, anchor layout and score threshold."""

    input_size: int
    strides: tuple[int, ...]
    interpolated_scale_aspect_ratio: float
    min_score: float
    suppression_iou: float = 0.3
    anchor_offset: float = 0.5
    aspect_ratios: tuple[float, ...] = (1.0,)


# face_detection_short_range_common.pbtxt: faces within ~2 m of the camera (selfies, webcams).
SHORT_RANGE = SsdOptions(input_size=128, strides=(8, 16, 16, 16), interpolated_scale_aspect_ratio=1.0, min_score=0.5)
# face_detection_full_range_common.pbtxt: smaller faces up to ~5 m (rooms, CCTV).
FULL_RANGE = SsdOptions(input_size=192, strides=(4,), interpolated_scale_aspect_ratio=0.0, min_score=0.6)


def ssd_anchors(options: SsdOptions) -> np.ndarray:
    """Anchor centres [N, 2] as (x, y) in [0, 1], in the network's output order."""
    centres = []
    layer = 0
    while layer < len(options.strides):
        stride = options.strides[layer]
        per_cell = 0
        # Consecutive layers with the same stride share a feature map: their anchors interleave per cell.
        while layer < len(options.strides) and options.strides[layer] == stride:
            per_cell += len(options.aspect_ratios) + (options.interpolated_scale_aspect_ratio > 0)
            layer += 1
        side = math.ceil(options.input_size / stride)
        ys, xs = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
        cells = np.stack([(xs.ravel() + options.anchor_offset) / side, (ys.ravel() + options.anchor_offset) / side], 1)
        centres.append(np.repeat(cells, per_cell, axis=0))
    return np.concatenate(centres).astype(np.float32)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(x.astype(np.float64), -SCORE_CLIP, SCORE_CLIP)))).astype(np.float32)


def decode(regressors: np.ndarray, logits: np.ndarray, anchors: np.ndarray, options: SsdOptions
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw outputs of one image -> (boxes [N, 4] as x0, y0, x1, y1, keypoints [N, 6, 2], scores [N]).

    Coordinates are fractions of the letterboxed input; only anchors scoring >= min_score are kept.
    """
    regressors = np.asarray(regressors, np.float32).reshape(len(anchors), -1)
    scores = sigmoid(np.asarray(logits, np.float32).reshape(len(anchors)))
    keep = scores >= options.min_score
    raw, centre, scores = regressors[keep] / options.input_size, anchors[keep], scores[keep]
    xy = raw[:, 0:2] + centre
    half = raw[:, 2:4] / 2
    boxes = np.concatenate([xy - half, xy + half], axis=1)
    keypoints = raw[:, 4:16].reshape(-1, 6, 2) + centre[:, None, :]
    return boxes, keypoints, scores


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one x0, y0, x1, y1 box with each of `boxes` [N, 4]."""
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, threshold: float
                 ) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """MediaPipe's weighted NMS: [(box [4], keypoints [6, 2], score)], best first."""
    order = np.argsort(-scores, kind="stable")
    boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
    remaining = np.arange(len(scores))
    faces = []
    while len(remaining):
        overlap = iou(boxes[remaining[0]], boxes[remaining])
        group = remaining[overlap > threshold]
        group = group if len(group) else remaining[:1]  # a degenerate (zero-area) box still stands for itself
        weights = scores[group] / scores[group].sum()
        faces.append((weights @ boxes[group], np.tensordot(weights, keypoints[group], 1), float(scores[remaining[0]])))
        remaining = remaining[~np.isin(remaining, group)]
    return faces


@dataclass(frozen=True)
class Letterbox:
    """How an image is fitted into the square input (aspect kept, centred): maps boxes back to pixels."""

    width: int  # the image resized to fit, in input pixels
    height: int
    pad_x: int  # input pixels left of (and above) the fitted image
    pad_y: int
    scale_x: float  # input pixels per image pixel
    scale_y: float
    size: int

    def to_image(self, xy: np.ndarray) -> np.ndarray:
        """Fractions of the input [..., 2] -> image pixel coordinates."""
        xy = np.asarray(xy, np.float32) * self.size - np.array([self.pad_x, self.pad_y], np.float32)
        return xy / np.array([self.scale_x, self.scale_y], np.float32)


def letterbox_geometry(height: int, width: int, size: int) -> Letterbox:
    scale = size / max(height, width)
    fitted_w, fitted_h = max(1, round(width * scale)), max(1, round(height * scale))
    return Letterbox(fitted_w, fitted_h, (size - fitted_w) // 2, (size - fitted_h) // 2,
                     fitted_w / width, fitted_h / height, size)


def to_input(fitted_rgb: np.ndarray, geometry: Letterbox) -> np.ndarray:
    """The image resized to (geometry.height, geometry.width), uint8 RGB -> float32 [1, 3, size, size] in [-1, 1].

    The padding is black, i.e. -1 after scaling, as MediaPipe pads.
    """
    canvas = np.full((3, geometry.size, geometry.size), -1.0, np.float32)
    top, left = geometry.pad_y, geometry.pad_x
    canvas[:, top : top + geometry.height, left : left + geometry.width] = (
        fitted_rgb.transpose(2, 0, 1).astype(np.float32) * (2.0 / 255.0) - 1.0)
    return canvas[None]


def detections(regressors: np.ndarray, logits: np.ndarray, anchors: np.ndarray, options: SsdOptions,
               geometry: Letterbox) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """The network's outputs for one image -> faces [(box x0, y0, x1, y1, keypoints [6, 2], score)] in image pixels."""
    boxes, keypoints, scores = decode(regressors, logits, anchors, options)
    faces = []
    for box, points, score in weighted_nms(boxes, keypoints, scores, options.suppression_iou):
        corners = geometry.to_image(box.reshape(2, 2)).reshape(4)
        faces.append((corners, geometry.to_image(points), score))
    return faces


def expand(x: int, y: int, w: int, h: int, margin: float, height: int, width: int) -> tuple[int, int, int, int]:
    """A box grown by `margin` x its size on each side, clamped to a height x width image."""
    dx, dy = round(w * margin), round(h * margin)
    x0, y0 = max(0, x - dx), max(0, y - dy)
    x1, y1 = min(width, x + w + dx), min(height, y + h + dy)
    return x0, y0, x1 - x0, y1 - y0


def options_to_json(options: SsdOptions) -> dict:
    return asdict(options)


def options_from_json(data: dict) -> SsdOptions:
    return SsdOptions(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


class BlazeFace:
    """Faces in a uint8 BGR (or gray) image: letterbox, run `network`, decode, NMS, clamp to pixels.

    `network(x)` takes float32 [1, 3, size, size] and returns (regressors [1, N, 16], logits [1, N, 1]).
    `detect` returns [(x, y, w, h, score, keypoints [6, 2])] with integer boxes inside the image.
    """

    def __init__(self, network: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], options: SsdOptions):
        self.network, self.options = network, options
        self.anchors = ssd_anchors(options)

    def detect(self, image: np.ndarray) -> list[tuple[int, int, int, int, float, np.ndarray]]:
        import cv2

        height, width = image.shape[:2]
        geometry = letterbox_geometry(height, width, self.options.input_size)
        # Shrink first, convert colour after: on a 640x480 frame that is 20x fewer pixels to convert.
        fitted = cv2.resize(image, (geometry.width, geometry.height), interpolation=cv2.INTER_AREA)
        if fitted.ndim == 2 or fitted.shape[2] == 1:
            rgb = cv2.cvtColor(fitted.reshape(fitted.shape[:2]), cv2.COLOR_GRAY2RGB)
        elif fitted.shape[2] == 4:
            rgb = cv2.cvtColor(fitted, cv2.COLOR_BGRA2RGB)
        else:
            rgb = cv2.cvtColor(fitted, cv2.COLOR_BGR2RGB)
        regressors, logits = self.network(to_input(rgb, geometry))
        faces = []
        for corners, keypoints, score in detections(regressors[0], logits[0], self.anchors, self.options, geometry):
            x0, y0 = max(0, int(round(corners[0]))), max(0, int(round(corners[1])))
            x1, y1 = min(width, int(round(corners[2]))), min(height, int(round(corners[3])))
            if x1 > x0 and y1 > y0:
                faces.append((x0, y0, x1 - x0, y1 - y0, score, keypoints))
        return sorted(faces, key=lambda f: (f[0], f[1]))
