"""Cartoon faces drawn by the project: a FER-shaped data set that needs no download.

Each of the 7 canonical classes has its own brows (height, inner-end tilt), eyes (open, wide,
narrow) and mouth (clenched, wavy sneer, stretched-open, smile, frown, O, flat line), so a small
CNN can learn them; pose, scale, lighting, noise, hair and occluders vary per image so that it
has to. Faces are drawn with cv2 primitives on a 2x canvas (anti-aliased, sub-pixel), warped
down to the output size in one warpAffine, and lit and noised batched in numpy.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..errors import ConfigError
from .classes import CLASS_NAMES
from .dataset import FerData, Split
from .splits import stratified_split

# Faces are designed in a 96x96 coordinate space, scaled to the canvas when drawn.
_DESIGN = 96.0
_SHIFT = 4  # cv2 fixed-point bits: coordinates are drawn with 1/16-pixel precision
_ONE = 1 << _SHIFT

# Per class, in canonical order: brow raise (up > 0), brow inner-end tilt (inner end up > 0),
# eye half-opening, and mouth style.
_BROW_RAISE = np.array([-3.0, -2.0, 4.0, 1.0, 1.0, 7.0, 0.0])
_BROW_TILT = np.array([-5.0, -3.0, 4.0, 0.0, 5.0, 0.0, 0.0])
_EYE_OPEN = np.array([1.8, 1.4, 5.5, 2.5, 3.0, 6.0, 3.5])
_MOUTHS = ("clenched", "sneer", "stretched", "smile", "frown", "o", "flat")
assert len(_MOUTHS) == len(CLASS_NAMES) == len(_BROW_RAISE)


class _Pen:
    """Anti-aliased, sub-pixel cv2 drawing in design units (a 96x96 face) on a canvas of any size."""

    def __init__(self, img: np.ndarray):
        self.img = img
        self.k = img.shape[0] / _DESIGN

    def _pt(self, x: float, y: float) -> tuple[int, int]:
        return int(round(x * self.k * _ONE)), int(round(y * self.k * _ONE))

    def _len(self, v: float) -> int:
        return max(1, int(round(v * self.k * _ONE)))

    def _width(self, w: float) -> int:
        return -1 if w < 0 else max(1, int(round(w * self.k)))

    def ellipse(self, cx, cy, ax, ay, color, width=-1.0, start=0, end=360, line_type=cv2.LINE_AA) -> None:
        """Filled when width < 0; start/end in degrees draw an arc."""
        cv2.ellipse(self.img, self._pt(cx, cy), (self._len(ax), self._len(ay)), 0, start, end, color,
                    self._width(width), line_type, _SHIFT)

    def line(self, x0, y0, x1, y1, color, width) -> None:
        cv2.line(self.img, self._pt(x0, y0), self._pt(x1, y1), color, self._width(width), cv2.LINE_AA, _SHIFT)

    def polyline(self, xs, ys, color, width) -> None:
        pts = np.array([self._pt(x, y) for x, y in zip(xs, ys)], dtype=np.int32)
        cv2.polylines(self.img, [pts], False, color, self._width(width), cv2.LINE_AA, _SHIFT)

    def rectangle(self, x0, y0, x1, y1, color, width=-1.0) -> None:
        cv2.rectangle(self.img, self._pt(x0, y0), self._pt(x1, y1), color, self._width(width), cv2.LINE_AA, _SHIFT)

    def circle(self, cx, cy, r, color) -> None:
        cv2.circle(self.img, self._pt(cx, cy), self._len(r), color, -1, cv2.LINE_AA, _SHIFT)


def _sample_params(labels: np.ndarray, rng: np.random.Generator, size: int) -> dict[str, np.ndarray]:
    """All random choices of a batch, drawn in a fixed order so a seed fixes every image."""
    n = len(labels)

    def u(lo: float, hi: float) -> np.ndarray:
        return rng.uniform(lo, hi, n)

    skin = u(110, 225)
    # Background darker or lighter than the skin, far enough away to outline the face;
    # when that side would leave 0..255 the other side is used.
    gap = np.where(rng.random(n) < 0.5, -1.0, 1.0) * u(45, 110)
    bg = np.where((skin + gap < 0) | (skin + gap > 255), skin - gap, skin + gap)
    return {
        "label": labels,
        "skin": skin, "bg": bg, "ink": u(5, 70), "white": u(200, 255), "hair": u(0, 90),
        "has_hair": rng.random(n) < 0.5,
        "face_w": u(26, 32), "face_h": u(33, 40),
        "eye_dx": u(11, 14.5), "eye_y": u(40, 46), "eye_w": u(5, 7),
        "brow_gap": u(6.5, 9), "brow_w": u(7, 10), "brow_th": u(2.0, 3.2),
        "mouth_y": u(67, 74), "mouth_w": u(10, 15),
        "intensity": u(0.75, 1.25), "jitter": rng.normal(0, 0.6, (n, 4)),
        "angle": u(-15, 15), "scale": u(0.85, 1.1),
        "shift": rng.uniform(-0.06, 0.06, (n, 2)) * size,
    }


def _draw_brows(pen: _Pen, p: dict, i: int, cx: float, ink: float) -> None:
    label, t = p["label"][i], p["intensity"][i]
    raise_, tilt = _BROW_RAISE[label] * t, _BROW_TILT[label] * t
    y_base = p["eye_y"][i] - p["brow_gap"][i] - raise_
    width = p["brow_th"][i]
    for side in (-1, 1):
        inner_x = cx + side * (p["eye_dx"][i] - p["brow_w"][i] * 0.55)
        outer_x = cx + side * (p["eye_dx"][i] + p["brow_w"][i] * 0.65)
        # Disgust: one brow pulled down harder than the other.
        drop = 2.5 * t if label == 1 and side == -1 else 0.0
        if label == 5:  # surprise: high round arches
            half_width = abs(outer_x - inner_x) / 2
            pen.ellipse((inner_x + outer_x) / 2, y_base + 2.5, half_width, 3.5 * t, ink, width, 190, 350)
        else:
            pen.line(inner_x, y_base - tilt / 2 + drop + p["jitter"][i, 0],
                     outer_x, y_base + tilt / 2 + drop + p["jitter"][i, 1], ink, width)


def _draw_eyes(pen: _Pen, p: dict, i: int, cx: float, ink: float, white: float) -> None:
    opening = _EYE_OPEN[p["label"][i]] * (0.85 + 0.15 * p["intensity"][i])
    for side in (-1, 1):
        ex, ey, ew = cx + side * p["eye_dx"][i], p["eye_y"][i], p["eye_w"][i]
        if opening < 2.0:  # squint: a dark slit
            pen.ellipse(ex, ey, ew, opening, ink)
            continue
        pen.ellipse(ex, ey, ew, opening, white)
        # Wide eyes show white all around a small pupil; others a pupil filling the opening.
        pupil = min(2.6, opening * 0.75) if opening < 5 else 2.0
        pen.circle(ex + p["jitter"][i, 2] * 0.5, ey, pupil, ink)


def _draw_mouth(pen: _Pen, p: dict, i: int, cx: float, ink: float, white: float) -> None:
    style, t = _MOUTHS[p["label"][i]], p["intensity"][i]
    my, mw = p["mouth_y"][i], p["mouth_w"][i]
    if style == "clenched":  # angry: teeth bared between tight lips
        pen.rectangle(cx - mw * 0.8, my - 2.5, cx + mw * 0.8, my + 2.5, white)
        pen.rectangle(cx - mw * 0.8, my - 2.5, cx + mw * 0.8, my + 2.5, ink, 2.4)
        pen.line(cx - mw * 0.8, my, cx + mw * 0.8, my, ink, 1.2)
    elif style == "sneer":  # disgust: wavy, one corner raised
        xs = np.linspace(cx - mw, cx + mw, 12)
        ys = my + 2.2 * t * np.sin((xs - cx) / mw * 2.5 * math.pi) - (xs - cx) / mw * 3.0 * t
        pen.polyline(xs, ys, ink, 2.4)
    elif style == "stretched":  # fear: wide open, lips pulled sideways, upper teeth showing
        pen.ellipse(cx, my, mw * 1.05, 4.5 * t, ink)
        pen.ellipse(cx, my - 2.5 * t, mw * 0.8, 1.3, white)
    elif style == "smile":
        pen.ellipse(cx, my - 3, mw * 1.1, 7 * t, ink, 3.4, 10, 170)
    elif style == "frown":
        pen.ellipse(cx, my + 5, mw, 6 * t, ink, 3.4, 195, 345)
    elif style == "o":  # surprise
        pen.ellipse(cx, my + 1, 5.5 * t, 8 * t, ink)
    else:  # neutral: a flat line
        y = my + p["jitter"][i, 3] * 0.5
        pen.line(cx - mw * 0.8, y, cx + mw * 0.8, y, ink, 2.4)


def _draw_canvas(p: dict, i: int, canvas: int) -> tuple[np.ndarray, np.ndarray]:
    """One face on a canvas x canvas image; returns (image, face mask)."""
    skin, ink, white = float(p["skin"][i]), float(p["ink"][i]), float(p["white"][i])
    pen = _Pen(np.full((canvas, canvas), p["bg"][i], dtype=np.uint8))
    cx, cy, face_w, face_h = 48.0, 52.0, p["face_w"][i], p["face_h"][i]
    if p["has_hair"][i]:
        pen.ellipse(cx, cy - 7, face_w + 3, face_h - 2, float(p["hair"][i]), start=180, end=360)
    pen.ellipse(cx, cy, face_w, face_h, skin)
    mask = _Pen(np.zeros((canvas, canvas), dtype=np.uint8))
    mask.ellipse(cx, cy, face_w, face_h, 255, line_type=cv2.LINE_8)
    # Nose: the same for every class, a shadow line and nostril arc a little darker than the skin.
    shade = max(0.0, skin - 45)
    pen.line(cx, 50, cx + 1, 59, shade, 1.5)
    pen.ellipse(cx, 59, 3.5, 1.8, shade, 1.5, 0, 180)
    if p["label"][i] == 1:  # disgust: wrinkled nose
        for side in (-1, 1):
            pen.line(cx + side * 3, 53, cx + side * 6, 56, shade, 1.2)
    _draw_brows(pen, p, i, cx, ink)
    _draw_eyes(pen, p, i, cx, ink, white)
    _draw_mouth(pen, p, i, cx, ink, white)
    return pen.img, mask.img


def _pose_matrix(p: dict, i: int, canvas: int, size: int) -> np.ndarray:
    """Rotate and scale about the canvas centre, shrink canvas -> size, then shift."""
    centre = canvas / 2.0
    m = cv2.getRotationMatrix2D((centre, centre), float(p["angle"][i]), float(p["scale"][i]) * size / canvas)
    m[:, 2] += size / 2.0 - centre + p["shift"][i]
    return m


def _render(p: dict, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw and pose every face of a parameter batch -> (float32 images [N,size,size], masks bool)."""
    n, canvas = len(p["label"]), 2 * size
    images = np.empty((n, size, size), dtype=np.float32)
    masks = np.empty((n, size, size), dtype=bool)
    for i in range(n):
        img, mask = _draw_canvas(p, i, canvas)
        m = _pose_matrix(p, i, canvas, size)
        images[i] = cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REPLICATE)
        masks[i] = cv2.warpAffine(mask, m, (size, size), flags=cv2.INTER_NEAREST) > 127
    return images, masks


def _light_and_corrupt(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Contrast, brightness, a linear light gradient, gaussian noise and an occluding patch, batched."""
    n, h, w = images.shape

    def per_image(lo: float, hi: float) -> np.ndarray:
        return rng.uniform(lo, hi, (n, 1, 1)).astype(np.float32)  # float32 halves the cost of float64

    contrast, brightness = per_image(0.7, 1.3), per_image(-30, 30)
    strength, direction = per_image(-40, 40), per_image(0, 2 * math.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = ((xx - w / 2) * np.cos(direction) + (yy - h / 2) * np.sin(direction)) / max(h, w)
    out = (images - 128.0) * contrast + (128.0 + brightness) + strength * ramp
    out += rng.standard_normal((n, h, w), dtype=np.float32) * per_image(2, 10)
    # Occluder (a hand, a phone, a sticker): a flat rectangle on 30% of the images.
    occluded = rng.random(n) < 0.3
    ph = (rng.uniform(0.15, 0.35, n) * h).astype(int)
    pw = (rng.uniform(0.15, 0.35, n) * w).astype(int)
    top = (rng.random(n) * (h - ph)).astype(int)[:, None, None]
    left = (rng.random(n) * (w - pw)).astype(int)[:, None, None]
    value = rng.uniform(0, 255, n).astype(np.float32)[:, None, None]
    in_rows = (yy[None, :, :1] >= top) & (yy[None, :, :1] < top + ph[:, None, None]) & occluded[:, None, None]
    in_cols = (xx[None, :1, :] >= left) & (xx[None, :1, :] < left + pw[:, None, None])
    out = np.where(in_rows & in_cols, value, out)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _check_size(size: int) -> None:
    if not isinstance(size, (int, np.integer)) or size < 16:
        raise ConfigError(f"synthetic image size must be an integer >= 16, got {size!r}")


def make_synthetic(n_per_class: int = 300, seed: int = 0, size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """Cartoon faces, n_per_class of each canonical class in shuffled order.

    Returns (x uint8 [7*n_per_class, size, size], y int64 [7*n_per_class]); the same seed always
    gives the same arrays.
    """
    if not isinstance(n_per_class, (int, np.integer)) or n_per_class < 1:
        raise ConfigError(f"synthetic images per class must be a positive integer, got {n_per_class!r}")
    _check_size(size)
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(len(CLASS_NAMES)), n_per_class))
    params = _sample_params(labels, rng, size)
    images, _ = _render(params, size)
    return _light_and_corrupt(images, rng), labels.astype(np.int64)


def draw_face(
    emotion_index: int, size: int = 48, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One posed cartoon face -> (image uint8 [size,size], face mask bool [size,size]).

    No lighting, noise or occluder: meant for compositing into a larger scene, which should
    apply those to the whole scene. The mask marks the face oval (hair and background excluded).
    """
    if not 0 <= int(emotion_index) < len(CLASS_NAMES):
        raise ConfigError(f"emotion index must be 0..{len(CLASS_NAMES) - 1}, got {emotion_index}")
    _check_size(size)
    rng = rng if rng is not None else np.random.default_rng()
    params = _sample_params(np.array([int(emotion_index)]), rng, size)
    images, masks = _render(params, size)
    return np.clip(np.rint(images[0]), 0, 255).astype(np.uint8), masks[0]


def synthetic_data(
    n_per_class: int = 300, seed: int = 0, size: int = 48, val_fraction: float = 0.15, test_fraction: float = 0.15
) -> FerData:
    """A synthetic FerData: one set of 7*n_per_class faces split stratified into train/val/test."""
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ConfigError(
            f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must be >= 0 and sum to less than 1"
        )
    x, y = make_synthetic(n_per_class, seed, size)
    pool = Split(x, y)
    carved: dict[str, Split] = {}
    if test_fraction > 0:
        keep, test_idx = stratified_split(pool.y, test_fraction, seed)
        carved["test"], pool = pool.subset(test_idx), pool.subset(keep)
    if val_fraction > 0:
        # val_fraction is of the whole set, so a larger share of what the test split left.
        keep, val_idx = stratified_split(pool.y, val_fraction / (1 - test_fraction), seed + 1)
        carved["val"], pool = pool.subset(val_idx), pool.subset(keep)
    splits = {"train": pool, **{name: carved[name] for name in ("val", "test") if name in carved}}
    meta = {
        "kind": "synthetic", "seed": seed, "n_per_class": n_per_class, "size": size,
        "counts": {name: len(s) for name, s in splits.items()},
    }
    return FerData(splits, CLASS_NAMES, "synthetic", meta)
