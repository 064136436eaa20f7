"""Follow faces across video frames: stable ids, boxes between detections, smoothed probabilities.

The tracker is deliberately light, since it runs on the frames the detector skips
(`--detect-every N`): each track is a box with a constant velocity estimated from its last two
detections. Detections are matched to where the tracks are predicted to be by the distance of
their centres relative to the face's size (not IoU: with detection every few frames a fast face
no longer overlaps its last box), with the Hungarian method
(scipy.optimize.linear_sum_assignment), which keeps ids right when two faces pass close by.
`Smoother` averages each track's class probabilities over its last K frames (`--smooth K`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from .faces import Box, level_crop

# A detection continues a track when its centre is within this many face sizes of the track's
# predicted centre and its size is within a factor of MAX_SCALE; otherwise it is a new face.
MAX_SHIFT = 1.0
MAX_SCALE = 2.0
MAX_MISSES = 2  # detection rounds a track survives without being seen (brief occlusion, blur)


def box_iou(a: Box, b: Box) -> float:
    ix = max(0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
    iy = max(0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
    inter = ix * iy
    union = a.w * a.h + b.w * b.h - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    id: int
    box: np.ndarray  # x, y, w, h as floats
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))  # per frame
    last_seen: int = 0  # frame index of the last detection
    misses: int = 0

    def at(self, frame: int) -> np.ndarray:
        return self.box + self.velocity * (frame - self.last_seen)


class Tracker:
    """update(frame, boxes) on detection frames, predict(frame) in between; both return [(id, Box)]."""

    def __init__(self, shape: tuple[int, int] | None = None):
        self.tracks: list[Track] = []
        self.next_id = 0
        self.shape = shape  # (height, width) to clamp predicted boxes to

    def update(self, frame: int, boxes: list[Box]) -> list[tuple[int, Box]]:
        predicted = [track.at(frame) for track in self.tracks]
        cost = np.array([[match_cost(p, b) for b in boxes] for p in predicted]).reshape(len(predicted), len(boxes))
        rows, cols = linear_sum_assignment(np.minimum(cost, 1e6)) if cost.size else ((), ())
        matched_tracks, matched_boxes = set(), {}
        for r, c in zip(rows, cols):
            if cost[r, c] <= MAX_SHIFT:
                matched_tracks.add(r)
                matched_boxes[c] = self.tracks[r]
        for c, track in matched_boxes.items():
            new = np.array(boxes[c], float)
            gap = max(1, frame - track.last_seen)
            track.velocity = (new - track.box) / gap
            track.box, track.last_seen, track.misses = new, frame, 0
        for r, track in enumerate(self.tracks):
            if r not in matched_tracks:
                track.misses += 1
        self.tracks = [t for t in self.tracks if t.misses <= MAX_MISSES]
        ids = {c: track.id for c, track in matched_boxes.items()}
        for c, box in enumerate(boxes):
            if c not in ids:
                self.tracks.append(Track(self.next_id, np.array(box, float), last_seen=frame))
                ids[c] = self.next_id
                self.next_id += 1
        # What this frame shows: the faces detected in it, each under its track's id.
        return [(ids[c], box) for c, box in enumerate(boxes)]

    def predict(self, frame: int) -> list[tuple[int, Box]]:
        """The tracked faces' boxes at a frame without detection (only tracks seen in the last round)."""
        out = []
        for track in self.tracks:
            if track.misses:
                continue
            box = self._clamp(as_box(track.at(frame)))
            if box is not None:
                out.append((track.id, box))
        return out

    def _clamp(self, box: Box) -> Box | None:
        if self.shape is None:
            return box if box.w > 0 and box.h > 0 else None
        height, width = self.shape
        x0, y0 = max(0, box.x), max(0, box.y)
        x1, y1 = min(width, box.x + box.w), min(height, box.y + box.h)
        return Box(x0, y0, x1 - x0, y1 - y0) if x1 > x0 and y1 > y0 else None


def match_cost(predicted: np.ndarray, box: Box) -> float:
    """Centre distance in face sizes; infinite when the sizes differ too much to be one face."""
    size_t, size_d = np.sqrt(max(predicted[2] * predicted[3], 1e-9)), np.sqrt(max(box.w * box.h, 1))
    if not 1 / MAX_SCALE <= size_d / size_t <= MAX_SCALE:
        return np.inf
    centre_t = predicted[:2] + predicted[2:] / 2
    centre_d = np.array([box.x + box.w / 2, box.y + box.h / 2])
    return float(np.linalg.norm(centre_t - centre_d) / np.sqrt(size_t * size_d))


def as_box(values: np.ndarray) -> Box:
    return Box(*(int(round(v)) for v in values))


class Smoother:
    """Each track's probabilities averaged over its last `window` frames (window 1: unchanged)."""

    def __init__(self, window: int):
        self.window = window
        self.history: dict[tuple[str, int], deque] = {}

    def __call__(self, key: tuple[str, int], probs: np.ndarray) -> np.ndarray:
        if self.window <= 1:
            return probs
        seen = self.history.setdefault(key, deque(maxlen=self.window))
        seen.append(np.asarray(probs, np.float32))
        return np.mean(seen, axis=0)


class StreamFaces:
    """One stream's faces frame by frame: detected every `detect_every`-th call, tracked in between,
    each under its track id; crops are levelled by the eyes the face had when last detected."""

    def __init__(self, detector, detect_every: int = 1):
        self.detector = detector
        self.detect_every = detect_every
        self.eyes: dict[int, np.ndarray] = {}  # each track's keypoints at its last detection
        self.tracker: Tracker | None = None
        self.calls = 0

    def locate(self, index: int, image: np.ndarray) -> list[tuple[int, Box]]:
        """(track id, box) of the faces in frame `index`."""
        if self.tracker is None:
            self.tracker = Tracker(image.shape[:2])
        if self.calls % self.detect_every == 0:
            faces = self.detector.detect(image)
            tracked = self.tracker.update(index, [face.box for face in faces])
            self.eyes.update((track, face.keypoints) for (track, _), face in zip(tracked, faces))
        else:
            tracked = self.tracker.predict(index)
        self.calls += 1
        return tracked

    def crops(self, gray: np.ndarray, tracked: list[tuple[int, Box]], margin: float, input_size: tuple[int, int],
              level: bool = True) -> list[np.ndarray]:
        return [level_crop(gray, box, margin, input_size, self.eyes.get(track) if level else None)
                for track, box in tracked]
