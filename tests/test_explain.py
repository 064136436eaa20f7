"""Explanations: heat maps land on the face, every method runs through the CLI on a pruned run,
guided backprop sees the same network, and mistakes are one-line errors with nothing written."""

import csv

import cv2
import numpy as np
import pytest
import torch

from fercomp.cli import main
from fercomp.compress.prune import PruneConfig, prune_run
from fercomp.data.synthetic import draw_face
from fercomp.deploy.runtime import preprocess
from fercomp.explain.cam import _guidable_copy, explain_batch, heat_mass_inside, target_layer
from fercomp.models import create


@pytest.fixture(scope="module")
def faces_and_masks():
    rng = np.random.default_rng(1)
    faces, masks = zip(*[draw_face(k % 7, 48, rng) for k in range(28)])
    return np.stack(faces), np.stack(masks)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "guided-backprop"])
def test_saliency_falls_on_the_face(trained_synthetic, faces_and_masks, method):
    """Per pixel, a trained model's heat is denser inside the face oval than on the background."""
    model, spec = trained_synthetic.load_model()
    faces, masks = faces_and_masks
    x = torch.from_numpy(preprocess(faces, spec))
    _, layer = target_layer(model, x[:1])
    result = explain_batch(model, x, method, layer)
    maps = np.abs(result.guided) if result.heatmaps is None else result.heatmaps
    inside = heat_mass_inside(maps, masks)
    area = masks.reshape(len(masks), -1).mean(1)
    density_ratio = (inside / area) / ((1 - inside) / (1 - area))
    assert density_ratio.mean() > 1.3, density_ratio.mean()
    assert inside.mean() > area.mean()


def test_target_layer_is_the_last_feature_map():
    model = create("se_resnet").eval()
    name, _ = target_layer(model, torch.zeros(1, 1, 48, 48))
    assert name == "stages"  # after the last residual add, not a shortcut conv or an SE squeeze


def test_guided_copy_computes_the_same_function():
    model = create("mobilenet_v2", resize=32).eval()
    x = torch.randn(2, 1, 48, 48)
    copy = _guidable_copy(model)
    assert not any(isinstance(m, torch.nn.ReLU6) for m in copy.modules())
    with torch.no_grad():
        assert torch.allclose(model(x), copy(x), atol=1e-5)


@pytest.fixture(scope="module")
def pruned(trained_synthetic, tmp_path_factory):
    return prune_run(PruneConfig(parent=str(trained_synthetic.path), ratio=0.5, finetune_epochs=1,
                                 out=str(tmp_path_factory.mktemp("x") / "pruned")), progress=False)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory, faces_and_masks):
    folder = tmp_path_factory.mktemp("faces")
    for i, face in enumerate(faces_and_masks[0][:5]):
        cv2.imwrite(str(folder / f"face{i}.png"), face)
    (folder / "broken.png").write_bytes(b"not an image")
    return folder


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "guided-backprop", "guided-gradcam"])
def test_explain_cli_on_a_pruned_run(pruned, image_folder, tmp_path, method, capsys):
    out = tmp_path / "out"
    code = main(["explain", str(pruned.path), str(image_folder), "--method", method, "--batch", "2",
                 "--class", "happy", "--out", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.glob("grid_*.png")) == ["grid_000.png", "grid_001.png", "grid_002.png"]
    assert len(list((out / "overlays").glob("*.png"))) == 5
    rows = list(csv.DictReader(open(out / "explanations.csv")))
    assert [r["explained"] for r in rows if not r["error"]] == ["happy"] * 5
    assert [r["file"].endswith("broken.png") for r in rows if r["error"]] == [True]
    maps = np.load(out / "maps.npz")
    assert maps["heatmaps"].shape == maps["guided"].shape == (5, 48, 48)
    if method in ("gradcam", "gradcam++"):
        assert maps["heatmaps"].max() <= 1.0 and maps["heatmaps"].max() > 0
    else:
        assert np.abs(maps["guided"]).max() > 0


@pytest.mark.parametrize("flag, value, expected", [
    ("--method", "lime", "--method"),
    ("--class", "bored", "--class"),
    ("--layer", "no.such.layer", "--layer"),
])
def test_explain_mistakes_write_nothing(trained_synthetic, image_folder, tmp_path, capsys, flag, value, expected):
    out = tmp_path / "out"
    assert main(["explain", str(trained_synthetic.path), str(image_folder), flag, value, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and expected in err and len(err.splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".out.*"))
