"""Test-time augmentation and soft-voting ensembles (seed document 001)."""

import numpy as np
import pytest
import torch
from torch import nn

from fercomp.cli import main
from fercomp.compress import PruneConfig, prune_run
from fercomp.deploy.export import ExportConfig, export_run
from fercomp.deploy.runtime import TorchPredictor, load
from fercomp.errors import ConfigError
from fercomp.runs import Run, load_checkpoint
from fercomp.train import TrainConfig, evaluate_run, fit
from fercomp.train.ensemble import EnsembleConfig, ensemble_runs
from fercomp.train.tta import TTAPredictor, tta_views

SPEC = {"name": "mirror", "class_names": [f"c{i}" for i in range(7)], "input_size": [48, 48],
        "normalization": {"mean": 0.5, "std": 0.25}}


class MirrorInvariant(nn.Module):
    """Logits from left-right symmetric features: a model whose prediction a mirror cannot change."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(48, 7)

    def forward(self, x):
        rows = x.mean(dim=3).squeeze(1)  # each row's mean is the same for the mirrored image
        return self.head(rows)


def faces(n=12, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 48, 48), dtype=np.uint8)


def test_tta_flip_of_a_mirror_invariant_model_equals_the_plain_prediction():
    torch.manual_seed(0)
    plain = TorchPredictor(MirrorInvariant(), SPEC)
    np.testing.assert_allclose(TTAPredictor(plain, "flip").predict_proba(faces()), plain.predict_proba(faces()),
                               atol=1e-6)
    # and a shift view really moves the pixels, so shift-TTA is not a no-op
    assert not np.allclose(TTAPredictor(plain, "shift").predict_proba(faces()), plain.predict_proba(faces()))


def test_tta_views_are_the_documented_transforms():
    x = faces(3)
    flip = tta_views(x, "flip")
    assert len(flip) == 2 and np.array_equal(flip[1], x[:, :, ::-1])
    shifted = tta_views(x, "shift")
    assert len(shifted) == 5 and np.array_equal(shifted[4][:, :, 2:], x[:, :, :-2])  # 2 px to the right
    assert len(tta_views(x, "flip-shift")) == 10
    with pytest.raises(ConfigError, match="--tta"):
        tta_views(x, "rotate")


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    root = tmp_path_factory.mktemp("ens")
    a = fit(TrainConfig(model="separable_cnn", synthetic_per_class=30, epochs=2, seed=0, out=str(root / "a")),
            progress=False)
    b = fit(TrainConfig(model="baseline_cnn", synthetic_per_class=30, epochs=2, seed=1, out=str(root / "b")),
            progress=False)
    c = prune_run(PruneConfig(parent=str(a.path), ratio=0.5, finetune_epochs=0, out=str(root / "a-p50")),
                  progress=False)
    return a, b, c


def test_ensemble_probabilities_are_the_weighted_mean(members, tmp_path):
    a, b, c = members
    run = ensemble_runs(EnsembleConfig(runs=[str(a.path), str(b.path), str(c.path)], weights=[2, 1, 1],
                                       out=str(tmp_path / "ens")), progress=False)
    x = faces()
    expected = (2 * load(a.path).predict_proba(x) + load(b.path).predict_proba(x) + load(c.path).predict_proba(x)) / 4
    np.testing.assert_allclose(load(run.path).predict_proba(x), expected, atol=1e-5)
    # one weights-only checkpoint holds every member, the pruned one at its own widths
    model, spec = load_checkpoint(run.path / "model.pt")
    assert spec["name"] == "ensemble" and len(model.members) == 3
    assert run.manifest["params"] == sum(r.manifest["params"] for r in (a, b, c))
    assert set(run.manifest["metrics"]["members"]) == {"a", "b", "a-p50"}
    assert evaluate_run(run.path, write=False)["accuracy"] == pytest.approx(run.manifest["metrics"]["test_acc"])


def test_ensemble_exports_as_one_onnx(members, tmp_path):
    a, b, _ = members
    run = ensemble_runs(EnsembleConfig(runs=[str(a.path), str(b.path)], out=str(tmp_path / "ens")), progress=False)
    report = export_run(ExportConfig(run=str(run.path)), progress=False)
    assert report["parity"]["top1_agreement"] >= 0.999
    x = faces()
    np.testing.assert_allclose(load(run.path, backend="onnxruntime").predict_proba(x), load(run.path).predict_proba(x),
                               atol=1e-5)


def test_ensemble_and_tta_cli(members, tmp_path, capsys):
    a, b, _ = members
    assert main(["ensemble", str(a.path), str(b.path), "--out", str(tmp_path / "e"), "--weights", "1,3"]) == 0
    assert Run.load(tmp_path / "e").manifest["weights"] == [1.0, 3.0]
    assert main(["evaluate", str(a.path), "--tta", "flip", "--json"]) == 0
    assert (a.path / "eval_test_tta-flip.json").is_file()
    capsys.readouterr()
    for argv, expected in ((["ensemble", str(a.path), "--out", str(tmp_path / "x")], "at least two"),
                           (["ensemble", str(a.path), str(b.path), "--out", str(tmp_path / "x"), "--weights", "1"],
                            "one weight per run"),
                           (["evaluate", str(a.path), "--tta", "spin"], "--tta")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert expected in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
