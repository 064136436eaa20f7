"""Regressions found in review: data provenance, QAT observers, failed stages, unfinished parents."""

import numpy as np
import pytest
import torch

from fercomp.cli import main
from fercomp.compress.quantize import QuantizeConfig, quantize_run
from fercomp.data import make_synthetic
from fercomp.errors import ConfigError, RunError
from fercomp.runs import Run
from fercomp.train import TrainConfig, evaluate_run, fit


@pytest.fixture(scope="module")
def npz_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("npz")
    x, y = make_synthetic(40, seed=7)
    np.savez(root / "faces.npz", x=x, y=y)
    return fit(TrainConfig(model="baseline_cnn", data=str(root / "faces.npz"), epochs=1, batch_size=32,
                           out=str(root / "base")), progress=False)


def test_stage_without_config_evaluates_on_its_ancestors_data(npz_run, tmp_path):
    int8 = quantize_run(QuantizeConfig(parent=str(npz_run.path), calib=32, out=str(tmp_path / "int8")), progress=False)
    assert "config" not in int8.manifest
    report = evaluate_run(int8.path, split="test", write=False)
    assert report["source"].endswith("faces.npz")  # not the synthetic default
    assert int8.parent.path.resolve() == npz_run.path.resolve()  # recorded relative, with the absolute path as fallback
    assert int8.manifest["parent_abs"] == str(npz_run.path.resolve())


def test_model_file_without_data_needs_the_flag(npz_run, tmp_path):
    with pytest.raises(ConfigError, match="--data"):
        evaluate_run(npz_run.path / "model.pt", split="test", write=False)


def test_evaluating_on_other_data_keeps_the_runs_own_report(npz_run, tmp_path):
    own = (npz_run.path / "eval_test.json").read_text()
    evaluate_run(npz_run.path, data="synthetic", split="test")
    assert (npz_run.path / "eval_test.json").read_text() == own
    assert (npz_run.path / "eval_test_synthetic.json").exists()


def test_qat_observers_do_not_learn_from_evaluation():
    pytest.importorskip("torchao")
    from fercomp.compress.qat import QatRecipe
    from fercomp.models import create

    recipe = QatRecipe(freeze_bn_epoch=5, freeze_observer_epoch=5, source_run="")
    model = recipe.prepare(create("baseline_cnn"), (48, 48))
    model.train()
    model(torch.randn(8, 1, 48, 48))  # observers see training data
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with recipe.evaluating(model):
        model.eval()
        with torch.no_grad():
            model(torch.randn(64, 1, 48, 48) * 5)  # very different statistics
    after = model.state_dict()
    # the exported graph bumps BN's num_batches_tracked even in eval (unused with a fixed momentum);
    # everything else — quantizer ranges, observer flags, BN running statistics — must not move
    moved = [k for k in before if not torch.equal(before[k], after[k]) and not k.endswith("num_batches_tracked")]
    assert moved == []
    assert any(k.endswith("observer_enabled") and int(v.flatten()[0]) == 1 for k, v in after.items())


def test_failed_stage_leaves_no_folder(npz_run, tmp_path, monkeypatch):
    from fercomp.compress import quantize as q

    def broken(*args, **kwargs):
        raise RuntimeError("calibration blew up")

    monkeypatch.setattr(q, "quantize_onnx_static", broken)
    with pytest.raises(RuntimeError):
        quantize_run(QuantizeConfig(parent=str(npz_run.path), calib=8, out=str(tmp_path / "x")), progress=False)
    assert not (tmp_path / "x").exists()


def test_unfinished_parent_is_refused(npz_run, tmp_path):
    run = Run.load(npz_run.path)
    run.update(status="interrupted")
    try:
        with pytest.raises(RunError, match="interrupted"):
            quantize_run(QuantizeConfig(parent=str(run.path), out=str(tmp_path / "y")), progress=False)
        assert not (tmp_path / "y").exists()
    finally:
        run.update(status="complete")


@pytest.mark.parametrize("argv", [
    ["evaluate", "RUN", "--threads", "0"],
    ["prune", "RUN", "--alpha", "2", "--out", "OUT"],
    ["prune", "RUN", "--lr", "-1", "--out", "OUT"],
    ["quantize", "RUN", "--threads", "-1", "--out", "OUT"],
])
def test_more_flags_exit_2(capsys, npz_run, tmp_path, argv):
    argv = [a.replace("RUN", str(npz_run.path)).replace("OUT", str(tmp_path / "o")) for a in argv]
    code = main([*argv, *(["--no-progress"] if argv[0] != "evaluate" else [])])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()
