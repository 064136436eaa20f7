"""GAN augmentation: training checkpoints and resumes exactly, sampling is labelled and
deterministic, extra data joins the train split only, and the quality scores mean what they say."""

import json

import numpy as np
import pytest
import torch

from fercomp.cli import main
from fercomp.data.extra import load_extra
from fercomp.errors import ConfigError, DataError
from fercomp.gan.sample import load_generator, sample_images, sample_to_npz
from fercomp.gan.score import classifier_score, frechet_distance
from fercomp.gan.nets import Generator
from fercomp.gan.train import GanConfig, to_uint8, train_gan
from fercomp.train import TrainConfig, fit

TINY = dict(epochs=2, batch_size=16, width=8, z_dim=16, synthetic_per_class=12, grid_columns=3)


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
    return train_gan(GanConfig(out=str(tmp_path_factory.mktemp("gan") / "gan"), **TINY), progress=False)


def test_gan_run_has_generator_grids_and_history(gan_run):
    assert gan_run.manifest["status"] == "complete"
    assert sorted(p.name for p in (gan_run.path / "samples").iterdir()) == ["epoch_001.png", "epoch_002.png"]
    history = [json.loads(line) for line in (gan_run.path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [1, 2]
    assert all(np.isfinite(r["loss_d"]) and np.isfinite(r["loss_g"]) for r in history)
    assert not (gan_run.path / "last.pt").exists()  # dropped once the run is complete


def test_samples_cover_every_class_and_repeat_with_the_seed(gan_run):
    gen, spec = load_generator(gan_run.path)
    x, y = sample_images(gen, per_class=5, seed=3)
    assert x.shape == (35, 48, 48) and x.dtype == np.uint8
    assert y.tolist() == [c for c in range(7) for _ in range(5)]
    assert spec["class_names"][1] == "disgust"  # document 000 left disgust out; we do not
    again, _ = sample_images(gen, per_class=5, seed=3)
    other, _ = sample_images(gen, per_class=5, seed=4)
    assert np.array_equal(x, again)
    assert not np.array_equal(x, other)
    assert x.std() > 0  # not a constant image


def test_resumed_gan_ends_with_the_same_generator(tmp_path):
    straight = train_gan(GanConfig(out=str(tmp_path / "a"), **TINY), progress=False)

    def stop(epoch, record):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_gan(GanConfig(out=str(tmp_path / "b"), **TINY), progress=False, on_epoch_end=stop)
    stopped = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert stopped["status"] == "interrupted" and stopped["epochs_done"] == 1  # half-way, not at the end
    resumed = train_gan(GanConfig(), resume=tmp_path / "b", progress=False)
    a, _ = load_generator(straight.path)
    b, _ = load_generator(resumed.path)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name
    # the epoch the resumed run trained saw the same batches, noise and flips: same losses
    strip = lambda run: [{k: v for k, v in json.loads(r).items() if k != "epoch_s"}
                         for r in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert strip(straight) == strip(resumed)
    assert np.array_equal(sample_images(a, 2, seed=5)[0], sample_images(b, 2, seed=5)[0])


def test_generator_draws_48px_images_in_tanh_range_and_trained(gan_run):
    gen, spec = load_generator(gan_run.path)
    with torch.no_grad():
        out = gen(torch.randn(5, spec["z_dim"]) * 10, torch.arange(5))  # large noise: tanh still bounds it
    assert out.shape == (5, 1, 48, 48)
    assert out.min() >= -1 and out.max() <= 1
    ends = to_uint8(torch.tensor([-1.0, 0.0, 1.0]).view(3, 1, 1, 1))
    assert ends.ravel().tolist() == [0, 128, 255]  # tanh's range maps onto all of uint8
    # two epochs moved the generator off its seeded initial weights
    torch.manual_seed(0)
    initial = Generator(spec["num_classes"], spec["z_dim"], spec["width"]).state_dict()
    assert any(not torch.equal(initial[k], v) for k, v in gen.state_dict().items() if v.is_floating_point())


def test_the_label_conditions_the_image(gan_run):
    gen, _ = load_generator(gan_run.path)
    z = torch.randn(1, gen.z_dim, generator=torch.Generator().manual_seed(0)).repeat(7, 1)
    with torch.no_grad():
        faces = gen(z, torch.arange(7))  # one noise vector, every class
        again = gen(z, torch.arange(7))
    assert torch.equal(faces, again)
    distinct = {(i, j) for i in range(7) for j in range(i + 1, 7) if not torch.equal(faces[i], faces[j])}
    assert len(distinct) == 21  # every pair of classes draws a different face from the same noise


class LabelPainter(torch.nn.Module):
    """A stand-in generator whose image is one gray level per label: the label is readable in the pixels."""

    num_classes, z_dim = 7, 4

    def forward(self, z, labels):
        return (labels.float() * 40 / 127.5 - 1).view(-1, 1, 1, 1).expand(len(z), 1, 48, 48)  # gray 40 * label


def test_samples_carry_the_label_they_were_drawn_with():
    # batch 4 cuts across classes (3 images each): a slicing slip would mislabel images
    x, y = sample_images(LabelPainter(), per_class=3, seed=0, batch=4)
    assert y.tolist() == [c for c in range(7) for _ in range(3)]
    assert [int(img[0, 0]) for img in x] == [40 * c for c in y]  # gray = the label's level
    assert all((img == img[0, 0]).all() for img in x)


def test_extra_data_joins_train_only(gan_run, tmp_path):
    synth = tmp_path / "synth.npz"
    sample_to_npz(gan_run.path, synth, per_class=4)
    base = dict(epochs=1, synthetic_per_class=12, evaluate_test=False)
    with_gan = fit(TrainConfig(out=str(tmp_path / "with"), extra_data=str(synth), **base), progress=False)
    data = with_gan.manifest["data"]
    assert data["extra"]["images"] == 28 and data["extra"]["per_class"] == [4] * 7
    without = fit(TrainConfig(out=str(tmp_path / "without"), **base), progress=False)
    assert data["sizes"] == without.manifest["data"]["sizes"]  # val and test untouched


def test_extra_data_with_unknown_classes_is_refused(tmp_path):
    path = tmp_path / "odd.npz"
    np.savez(path, x=np.zeros((2, 48, 48), np.uint8), y=np.array([0, 1]), class_names=np.array(["angry", "bored"]))
    with pytest.raises(DataError, match="bored"):
        load_extra(path, ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"))


def test_sample_refuses_a_non_npz_output(gan_run, tmp_path):
    with pytest.raises(ConfigError, match="npz"):
        sample_to_npz(gan_run.path, tmp_path / "synth.csv", per_class=2)
    assert not (tmp_path / "synth.csv").exists()


def test_gan_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["gan", "train", "--epochs", "0", "--out", str(tmp_path / "g")]) == 2
    assert "--epochs" in capsys.readouterr().err
    assert not (tmp_path / "g").exists()
    assert main(["gan", "sample", str(tmp_path), "--out", str(tmp_path / "s.npz")]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_classifier_score_and_frechet_distance():
    confident_all_classes = np.eye(7)[np.arange(70) % 7]
    assert classifier_score(confident_all_classes) == pytest.approx(7.0, rel=1e-6)
    assert classifier_score(np.full((10, 7), 1 / 7)) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 4))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shifted = frechet_distance(a, a + 3.0)
    assert shifted == pytest.approx(4 * 9.0, rel=1e-6)  # |mean shift|^2 over 4 dims, same covariance


def test_extra_images_get_one_hot_soft_targets():
    from fercomp.data import Split
    from fercomp.data.extra import with_extra

    soft = np.full((2, 7), 1 / 7, np.float32)
    train = Split(np.zeros((2, 48, 48), np.uint8), np.array([0, 1]), soft)
    merged = with_extra(train, Split(np.ones((3, 48, 48), np.uint8), np.array([4, 5, 6])), 7)
    assert merged.y.tolist() == [0, 1, 4, 5, 6]
    assert np.array_equal(merged.soft[2:], np.eye(7, dtype=np.float32)[[4, 5, 6]])
    assert np.array_equal(merged.soft[:2], soft)
