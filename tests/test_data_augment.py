"""Batched augmentation invariants, and class balancing (weights and sampler)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fercomp.data import AUGMENT_PRESETS, Augmenter, balanced_sampler_indices, class_weights, make_synthetic
from fercomp.data.augment import random_erase, random_flip
from fercomp.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    x, _ = make_synthetic(10, seed=0)
    return torch.from_numpy(x).float().unsqueeze(1) / 255.0  # [70,1,48,48] real-looking faces


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("preset", AUGMENT_PRESETS)
def test_shape_dtype_kept_and_same_state_same_output(batch, preset):
    out = Augmenter(preset)(batch, gen(1))
    assert out.shape == batch.shape and out.dtype == batch.dtype
    torch.testing.assert_close(out, Augmenter(preset)(batch, gen(1)), rtol=0, atol=0)
    # A generator resumed from a saved state replays the same augmentation.
    g = gen(2)
    Augmenter(preset)(batch, g)
    state = g.get_state()
    after = Augmenter(preset)(batch, g)
    g.set_state(state)
    torch.testing.assert_close(Augmenter(preset)(batch, g), after, rtol=0, atol=0)


def test_none_is_identity(batch):
    assert torch.equal(Augmenter("none")(batch, gen()), batch)


def test_flip_twice_with_same_draws_is_identity(batch):
    once = random_flip(batch, gen(3))
    flipped = (once != batch).flatten(1).any(1)
    assert 0.2 < flipped.float().mean() < 0.8  # about half the images mirrored
    assert torch.equal(random_flip(once, gen(3)), batch)
    assert torch.equal(once[flipped], batch[flipped].flip(-1))


def test_geometric_moves_pixels_but_keeps_mean(batch):
    out = Augmenter("geometric")(batch, gen(4))
    assert (out - batch).abs().mean() > 0.02  # images really moved
    mean_shift = (out.mean(dim=(1, 2, 3)) - batch.mean(dim=(1, 2, 3))).abs()
    assert mean_shift.mean() < 0.03 and mean_shift.max() < 0.1
    assert out.min() >= batch.min() - 1e-6 and out.max() <= batch.max() + 1e-6  # bilinear + border


def test_random_erase_fills_one_rectangle_in_about_half(batch):
    x = batch.repeat(4, 1, 1, 1)
    out = random_erase(x, gen(5))
    changed = (out != x)[:, 0]
    erased = changed.flatten(1).any(1)
    assert 0.35 < erased.float().mean() < 0.65
    area = changed.flatten(1).sum(1)[erased].float() / (48 * 48)
    assert area.max() <= 0.2 * 1.15  # rounding of the rectangle sides
    # Changed pixels lie inside their bounding box, which is at least mostly filled.
    for img in changed[erased]:
        rows, cols = img.any(1).nonzero(), img.any(0).nonzero()
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert img.sum() >= 0.5 * box


def test_strong_erases_and_jitters(batch):
    geometric = Augmenter("geometric")(batch, gen(6))
    strong = Augmenter("strong")(batch, gen(6))
    # Same draws for the geometric part; strong then changes brightness/contrast everywhere.
    assert not torch.allclose(strong, geometric)

    def largest_constant_run(x):
        return torch.tensor([torch.unique(row, return_counts=True)[1].max() for row in x.flatten(1)])

    # On noise images only a mean-filled patch makes >= 2% of the pixels share one value
    # (about a quarter of the images: erase p=0.5 times mean fill p=0.5).
    noise = torch.rand(64, 1, 48, 48, generator=gen(0))
    min_patch = 0.02 * 48 * 48
    assert (largest_constant_run(Augmenter("geometric")(noise, gen(6))) >= min_patch).sum() == 0
    assert 6 <= (largest_constant_run(Augmenter("strong")(noise, gen(6))) >= min_patch).sum() <= 28


def test_erase_is_geometric_plus_erasing_without_jitter(batch):
    geometric = Augmenter("geometric")(batch, gen(7))
    erase = Augmenter("erase")(batch, gen(7))
    # Same draws for the geometric part, then the same rectangles random_erase would cut:
    # no brightness/contrast change anywhere else.
    torch.testing.assert_close(erase, random_erase(geometric, _after_geometric(batch, 7)), rtol=0, atol=0)
    untouched = (erase == geometric).flatten(1).all(1)
    assert 0.25 < untouched.float().mean() < 0.75  # about half the images get no rectangle


def _after_geometric(batch: torch.Tensor, seed: int) -> torch.Generator:
    """A generator in the state the geometric preset leaves it in."""
    g = gen(seed)
    Augmenter("geometric")(batch, g)
    return g


def test_unknown_preset_and_bad_input():
    with pytest.raises(ConfigError, match="none, flip, geometric, erase, strong"):
        Augmenter("heavy")
    with pytest.raises(ConfigError, match="float images"):
        Augmenter("flip")(torch.zeros(2, 1, 48, 48, dtype=torch.uint8), gen())


def test_class_weights_hand_example():
    y = np.array([0, 0, 0, 0, 1, 1, 3, 3, 3, 3, 3, 3])  # counts 4, 2, 0, 6; N = 12, K = 3 present
    w = class_weights(y, 4)
    assert w.dtype == torch.float32
    torch.testing.assert_close(w, torch.tensor([12 / 12, 12 / 6, 0.0, 12 / 18]))
    counts = torch.tensor([4.0, 2.0, 0.0, 6.0])
    assert torch.isclose((w * counts).sum(), torch.tensor(12.0))
    with pytest.raises(DataError, match="label 3 is out of range for 3 classes"):
        class_weights(y, 3)


def test_balanced_sampler_is_roughly_uniform_over_classes():
    y = torch.tensor([0] * 900 + [1] * 90 + [2] * 10)
    idx = balanced_sampler_indices(y, 30000, gen(7))
    assert idx.dtype == torch.int64 and idx.min() >= 0 and idx.max() < len(y)
    share = torch.bincount(y[idx], minlength=3).float() / len(idx)
    torch.testing.assert_close(share, torch.full((3,), 1 / 3), atol=0.02, rtol=0)
    assert torch.equal(idx, balanced_sampler_indices(y, 30000, gen(7)))
    # Every sample of the rare class gets drawn.
    assert set(idx[y[idx] == 2].tolist()) == set(range(990, 1000))
