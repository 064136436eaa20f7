"""Mixup and CutMix: images and targets mixed in the same proportion, replayable from the generator."""

import pytest
import torch

from fercomp.cli import main
from fercomp.data.mixing import mix_batch
from fercomp.errors import ConfigError
from fercomp.train import TrainConfig, fit

from test_recipes import cfg, saved


def constant_batch(n=6, side=12):
    """Image i is filled with the value i, and its label is i: a pixel says which image it came from."""
    return torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, side, side).clone(), torch.arange(n)


@pytest.mark.parametrize("seed", range(5))
def test_mixup_blends_images_and_targets_by_the_same_weight(seed):
    x, y = constant_batch()
    mixed, target = mix_batch(x, y, 6, "mixup", 0.4, torch.Generator().manual_seed(seed))
    assert torch.allclose(target.sum(1), torch.ones(6))
    for i in range(6):
        own = float(target[i, i])
        partner = int(torch.argmax(target[i] - own * (torch.arange(6) == i).float())) if own < 1 else i
        expected = own * i + (1 - own) * partner
        assert torch.allclose(mixed[i], torch.full_like(mixed[i], expected), atol=1e-5)


@pytest.mark.parametrize("seed", range(5))
def test_cutmix_target_weight_is_the_share_of_pixels_each_image_gave(seed):
    x, y = constant_batch()
    mixed, target = mix_batch(x, y, 6, "cutmix", 1.0, torch.Generator().manual_seed(seed))
    for i in range(6):
        shares = torch.bincount(mixed[i].flatten().long(), minlength=6).float() / mixed[i].numel()
        assert torch.allclose(target[i], shares, atol=1e-6)


def test_mixing_replays_from_the_generator_and_keeps_soft_targets():
    x, y = constant_batch()
    soft = torch.softmax(torch.randn(6, 6), 1)
    a = mix_batch(x, soft, 6, "mixup", 0.2, torch.Generator().manual_seed(3))
    b = mix_batch(x, soft, 6, "mixup", 0.2, torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.allclose(a[1].sum(1), torch.ones(6))
    none = mix_batch(x, y, 6, "none", 0.2, torch.Generator())
    assert torch.equal(none[0], x) and torch.equal(none[1], torch.eye(6))


def test_training_with_cutmix_differs_from_plain_and_flags_are_checked(tmp_path, capsys):
    plain, cut = (saved(fit(cfg(tmp_path, name, epochs=1, mix=mix), progress=False))
                  for name, mix in (("plain", "none"), ("cut", "cutmix")))
    assert any(not torch.equal(plain[k], cut[k]) for k in plain)
    code = main(["train", "--mix", "blend", "--epochs", "1", "--out", str(tmp_path / "r"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "--mix" in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "r").exists()
    with pytest.raises(ConfigError, match="--mix with --teacher"):
        TrainConfig(mix="mixup", distill_from="zoo:tiny").validate()
