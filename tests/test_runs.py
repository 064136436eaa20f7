import json

import pytest
import torch
from torch import nn

from fercomp.errors import RunError
from fercomp.io import atomic_path, write_json
from fercomp.runs import Run, load_checkpoint, model_spec, save_checkpoint


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "m.json"
    write_json(target, {"a": 1})
    write_json(target, {"b": 2})
    assert json.loads(target.read_text()) == {"b": 2}


def test_checkpoint_round_trip_weights_only(tmp_path):
    from fercomp.models import create

    model = create("baseline_cnn").eval()
    spec = model_spec("baseline_cnn", {}, ["a"] * 7, model)
    save_checkpoint(tmp_path / "model.pt", model, spec)
    raw = torch.load(tmp_path / "model.pt", weights_only=True)  # must not need pickled code
    assert raw["spec"]["name"] == "baseline_cnn"
    loaded, spec2 = load_checkpoint(tmp_path / "model.pt")
    x = torch.randn(3, 1, 48, 48)
    assert torch.equal(model(x), loaded(x))
    assert spec2 == spec


def test_build_only_kwargs_are_not_in_spec():
    model = nn.Linear(2, 2)
    spec = model_spec("mobilenet_v2", {"pretrained": True, "weights": "w.pt", "resize": 64}, ["a", "b"], model)
    assert spec["kwargs"] == {"resize": 64}


def test_run_lineage_and_errors(tmp_path):
    root = Run.create(tmp_path / "base", stage="train")
    child = Run.create(tmp_path / "p50", stage="prune", parent=root)
    grandchild = Run.create(tmp_path / "p50-int8", stage="quantize", parent=Run.load(child.path))
    assert [r.name for r in Run.load(grandchild.path).lineage()] == ["base", "p50", "p50-int8"]
    with pytest.raises(RunError, match="already exists"):
        Run.create(tmp_path / "base", stage="train")
    with pytest.raises(RunError, match="no such run folder"):
        Run.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match="not a run folder"):
        Run.load(tmp_path / "empty")
    with pytest.raises(RunError, match="holds no model"):
        root.load_model()


def test_corrupt_checkpoint_names_the_file(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(RunError, match="model.pt"):
        load_checkpoint(bad)
