"""Synthetic cartoon faces: deterministic, balanced, in range, and separable by class."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fercomp.data import CLASS_NAMES, load_data, make_synthetic, synthetic_data
from fercomp.data.synthetic import draw_face
from fercomp.errors import ConfigError


@pytest.fixture(scope="module")
def faces():
    return make_synthetic(150, seed=0)


def test_same_seed_same_arrays_different_seed_different(faces):
    x, y = faces
    x2, y2 = make_synthetic(150, seed=0)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    x3, _ = make_synthetic(150, seed=1)
    assert np.mean(x3 != x) > 0.5


def test_balanced_shuffled_and_in_range(faces):
    x, y = faces
    assert x.shape == (7 * 150, 48, 48) and x.dtype == np.uint8 and y.dtype == np.int64
    assert np.bincount(y).tolist() == [150] * 7
    assert not np.all(np.diff(y) >= 0)  # shuffled, not grouped by class
    # Lighting varies: dark and bright images, and each image has contrast (not blank).
    means = x.reshape(len(x), -1).mean(axis=1)
    assert means.min() < 80 and means.max() > 170
    assert x.reshape(len(x), -1).std(axis=1).min() > 5
    # All images distinct.
    assert len({img.tobytes() for img in x}) == len(x)


def test_classes_are_linearly_separable_well_above_chance(faces):
    """A ridge-regression probe on 12x12 standardised images, trained on seed 0 and tested on
    seed 1, beats chance (1/7) by far: the classes differ in a way a model can learn."""

    def features(x):
        small = np.stack([cv2.resize(img, (12, 12), interpolation=cv2.INTER_AREA) for img in x])
        f = small.reshape(len(x), -1).astype(np.float64)
        f = (f - f.mean(1, keepdims=True)) / (f.std(1, keepdims=True) + 1e-3)
        return np.c_[f, np.ones(len(f))]

    x, y = faces
    test_x, test_y = make_synthetic(40, seed=1)
    a = features(x)
    w = np.linalg.solve(a.T @ a + 10 * np.eye(a.shape[1]), a.T @ np.eye(7)[y])
    accuracy = np.mean((features(test_x) @ w).argmax(1) == test_y)
    assert accuracy > 0.3


def test_classes_differ_with_everything_else_held_fixed():
    """The same random stream draws the same pose, tones and jitter for any emotion, so these
    seven faces differ only in their expression: every pair must differ visibly."""
    faces = np.stack([draw_face(c, 48, np.random.default_rng(5))[0] for c in range(7)]).astype(int)
    np.testing.assert_array_equal(faces[3], draw_face(3, 48, np.random.default_rng(5))[0])
    changed = [(np.abs(faces[a] - faces[b]) > 40).sum() for a in range(7) for b in range(a + 1, 7)]
    assert min(changed) >= 20  # pixels (of 2304) that change by more than 40 grey levels


def test_synthetic_data_splits():
    data = synthetic_data(20, seed=3, val_fraction=0.15, test_fraction=0.15)
    assert data.source == "synthetic" and data.class_names == CLASS_NAMES
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 98, "val": 21, "test": 21}
    assert data.meta["seed"] == 3 and data.meta["counts"] == {"train": 98, "val": 21, "test": 21}
    for name in ("val", "test"):
        assert np.bincount(data.split(name).y).tolist() == [3] * 7
    keys = [{img.tobytes() for img in s.x} for s in data.splits.values()]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])


def test_load_data_defaults_to_synthetic():
    data = load_data(None, synthetic_per_class=10, seed=2)
    assert data.meta["kind"] == "synthetic" and data.meta["labels"] == "fer2013"
    assert sum(len(s) for s in data.splits.values()) == 70
    again = load_data("synthetic", synthetic_per_class=10, seed=2)
    np.testing.assert_array_equal(data.split("train").x, again.split("train").x)


def test_draw_face_for_compositing():
    rng = np.random.default_rng(0)
    img, mask = draw_face(3, 96, rng)
    assert img.shape == mask.shape == (96, 96) and img.dtype == np.uint8 and mask.dtype == bool
    assert 0.2 < mask.mean() < 0.8  # the face oval, not the whole frame
    assert abs(img[mask].mean() - img[~mask].mean()) > 20  # face stands out from the background
    with pytest.raises(ConfigError, match="emotion index must be 0..6"):
        draw_face(7, 48, rng)


def test_bad_arguments():
    with pytest.raises(ConfigError, match="per class"):
        make_synthetic(0)
    with pytest.raises(ConfigError, match="size"):
        make_synthetic(1, size=8)
