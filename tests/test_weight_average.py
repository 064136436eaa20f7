"""`fercomp train --swa-epochs N`: the mean of the last N epochs' weights, BatchNorm recomputed, kept when better."""

import json
from pathlib import Path

import pytest
import torch

from fercomp.cli import main
from fercomp.errors import ConfigError
from fercomp.runs import Run
from fercomp.train import TrainConfig, fit
from fercomp.train.averaging import LastEpochsAverage
from interrupted_runs import killed_then_resumed


def cfg(tmp_path, name, **kw):
    base = dict(model="baseline_cnn", synthetic_per_class=40, epochs=3, batch_size=32, lr=0.02,
                augment="geometric", out=str(tmp_path / name), threads=1, swa_epochs=2)
    base.update(kw)
    return TrainConfig(**base)


def state_of(path: Path, key: str = "model") -> dict:
    return torch.load(path, weights_only=True)[key]


def test_average_is_the_mean_of_the_last_epochs_and_is_kept_only_when_better_on_val(tmp_path):
    epoch_weights = {}

    def snapshot(epoch, record):
        epoch_weights[epoch] = state_of(tmp_path / "swa" / "last.pt")

    run = fit(cfg(tmp_path, "swa"), progress=False, on_epoch_end=snapshot)
    average = state_of(run.path / "last.pt", "swa")
    assert average["first"] == 2
    params = {n for n, p in run.load_model()[0].named_parameters()}
    for name in params:
        expected = (epoch_weights[2][name] + epoch_weights[3][name]) / 2
        torch.testing.assert_close(average["average"][f"module.{name}"], expected)
        assert not torch.equal(epoch_weights[2][name], epoch_weights[3][name])  # two different epochs averaged

    metrics = Run.load(run.path).manifest["metrics"]
    record = metrics["weight_average"]
    assert record["epochs"] == [2, 3]
    history = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    best_single = max(r["val_acc"] for r in history)
    assert record["kept"] == (record["val_acc"] > best_single)
    shipped = torch.load(run.path / "model.pt", weights_only=True)["state_dict"]
    if record["kept"]:
        assert metrics["val_acc"] == record["val_acc"]
        for name in params:
            torch.testing.assert_close(shipped[name], average["average"][f"module.{name}"])
    else:
        assert metrics["val_acc"] == best_single
        best = max(history, key=lambda r: r["val_acc"])["epoch"]
        for name in params:
            torch.testing.assert_close(shipped[name], epoch_weights[best][name])


def test_batchnorm_statistics_are_recomputed_on_the_clean_images():
    model = torch.nn.Sequential(torch.nn.BatchNorm2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 3))
    average = LastEpochsAverage(model, epochs=4, count=2)
    average.after_epoch(model, 2)  # before the window: not averaged
    assert average.epochs_averaged == 0
    average.after_epoch(model, 3)
    average.after_epoch(model, 4)
    assert average.epochs_averaged == 2
    images = torch.randint(0, 256, (600, 1, 4, 4), dtype=torch.uint8)
    norm = {"mean": 0.5, "std": 0.25}
    averaged = average.finalize(images, norm)
    # update_bn: the equal-weight mean over batches (256, 256, 88 images) of each batch's statistics
    batches = ((images.float() / 255 - 0.5) / 0.25).split(256)
    bn = averaged[0]
    torch.testing.assert_close(bn.running_mean, torch.stack([b.mean() for b in batches]).mean().reshape(1))
    torch.testing.assert_close(bn.running_var, torch.stack([b.var() for b in batches]).mean().reshape(1))
    assert not averaged.training


def test_interrupted_run_resumes_to_the_same_average(tmp_path):
    straight = fit(cfg(tmp_path, "straight"), progress=False)
    resumed = killed_then_resumed(cfg(tmp_path, "killed"))
    a, b = state_of(straight.path / "last.pt", "swa"), state_of(resumed.path / "last.pt", "swa")
    assert all(torch.equal(a["average"][k], b["average"][k]) for k in a["average"])
    assert Run.load(straight.path).manifest["metrics"]["weight_average"] == \
        Run.load(resumed.path).manifest["metrics"]["weight_average"]


def test_training_longer_moves_the_window_to_the_new_last_epochs(tmp_path):
    fit(cfg(tmp_path, "short"), progress=False)
    longer = fit(TrainConfig(), resume=tmp_path / "short", extend_to=5, progress=False)
    assert Run.load(longer.path).manifest["metrics"]["weight_average"]["epochs"] == [4, 5]


@pytest.mark.parametrize("argv, flag", [(["--swa-epochs", "4", "--epochs", "3"], "--swa-epochs"),
                                        (["--swa-epochs", "-1"], "--swa-epochs"),
                                        (["--swa-epochs", "2", "--ema", "0.99"], "--swa-epochs and --ema")])
def test_bad_swa_flags_are_one_line_and_write_nothing(tmp_path, capsys, argv, flag):
    code = main(["train", *argv, "--out", str(tmp_path / "r"), "--no-progress"])
    assert code == 2 and flag in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_later_stages_do_not_inherit_the_average():
    parent = TrainConfig(epochs=30, swa_epochs=10)
    assert parent.for_later_stage(None, epochs=2).swa_epochs == 0
    with pytest.raises(ConfigError, match="--swa-epochs"):
        TrainConfig(epochs=3, swa_epochs=4).validate()


def test_cli_summary_says_which_weights_were_kept(tmp_path, capsys):
    code = main(["train", "--model", "baseline_cnn", "--synthetic-per-class", "40", "--epochs", "3", "--batch-size", "32",
                 "--swa-epochs", "2", "--threads", "1", "--out", str(tmp_path / "r"), "--no-progress"])
    out = capsys.readouterr().err  # the summary table goes to stderr with the logs
    assert code == 0
    average = Run.load(tmp_path / "r").manifest["metrics"]["weight_average"]
    assert ("average of epochs 2-3" if average["kept"] else "(the average of 2-3") in out
