import json

import numpy as np
import pytest
import torch

from fercomp.errors import ConfigError, RunError
from fercomp.runs import RESUME_FILE, Run
from fercomp.train import TrainConfig, evaluate_run, fit


def tiny(tmp_path, name="run", **kw):
    base = dict(model="baseline_cnn", synthetic_per_class=40, epochs=3, batch_size=32, lr=0.02,
                augment="geometric", out=str(tmp_path / name), evaluate_test=True)
    base.update(kw)
    return TrainConfig(**base)


def test_short_training_on_synthetic_learns_well_above_chance(tmp_path):
    cfg = TrainConfig(model="separable_cnn", synthetic_per_class=150, epochs=6, out=str(tmp_path / "sep"))
    run = fit(cfg, progress=False)
    m = run.manifest
    assert m["status"] == "complete"
    # 7 classes: chance is 14%; the synthetic classes differ clearly in brows, eyes and mouth.
    assert m["metrics"]["test_acc"] > 0.5, m["metrics"]
    history = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == list(range(1, 7))
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert m["metrics"]["val_acc"] == max(r["val_acc"] for r in history)
    assert (run.path / RESUME_FILE).exists()  # kept: `--resume RUN --epochs N` trains it longer
    for name in ("model.pt", "curves.png", "eval_test.json", "confusion_test.png"):
        assert (run.path / name).stat().st_size > 0
    # the saved best weights reproduce the recorded test accuracy through the predictor
    report = evaluate_run(run.path, split="test", write=False)
    assert report["accuracy"] == pytest.approx(m["metrics"]["test_acc"])


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path):
    straight = fit(tiny(tmp_path, "straight"), progress=False)

    def kill_after_epoch_2(epoch, record):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(tiny(tmp_path, "killed"), progress=False, on_epoch_end=kill_after_epoch_2)
    killed = Run.load(tmp_path / "killed")
    assert killed.manifest["status"] == "interrupted"
    assert (killed.path / RESUME_FILE).exists()

    resumed = fit(TrainConfig(), resume=killed.path, progress=False)
    a = torch.load(straight.path / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(resumed.path / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    ha = (straight.path / "metrics.jsonl").read_text().splitlines()
    hb = (resumed.path / "metrics.jsonl").read_text().splitlines()
    strip = lambda rows: [{k: v for k, v in json.loads(r).items() if not k.endswith("_s")} for r in rows]
    assert strip(ha) == strip(hb)
    assert resumed.manifest["metrics"]["test_acc"] == straight.manifest["metrics"]["test_acc"]


def test_resume_refuses_finished_and_foreign_runs(tmp_path):
    run = fit(tiny(tmp_path, epochs=1), progress=False)
    with pytest.raises(RunError, match="already finished"):
        fit(TrainConfig(), resume=run.path, progress=False)
    with pytest.raises(RunError, match="no such run folder"):
        fit(TrainConfig(), resume=tmp_path / "nope", progress=False)


def test_early_stop_and_class_weights(tmp_path):
    # lr so small nothing improves after the first epoch: early stop must end the run early
    cfg = tiny(tmp_path, epochs=8, lr=1e-9, early_stop=2, class_weights=True, schedule="constant")
    run = fit(cfg, progress=False)
    assert run.manifest["metrics"]["epochs_run"] < 8


@pytest.mark.parametrize(
    "field, value, flag",
    [("epochs", 0, "--epochs"), ("lr", -1.0, "--lr"), ("optimizer", "lion", "--optimizer"),
     ("augment", "wild", "--augment"), ("label_smoothing", 1.5, "--label-smoothing"),
     ("batch_size", 0, "--batch-size"), ("schedule", "linear", "--schedule")],
)
def test_bad_config_names_the_flag_and_writes_nothing(tmp_path, field, value, flag):
    cfg = tiny(tmp_path, **{field: value})
    with pytest.raises(ConfigError, match=flag):
        fit(cfg, progress=False)
    assert not (tmp_path / "run").exists()


def test_real_fer2013_smoke(tmp_path, fer2013_npz):
    """One epoch on the real data: the whole path runs on FER2013 and beats the majority class."""
    from fercomp.data import load_data

    data = load_data(fer2013_npz)
    assert data.class_names == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    cfg = TrainConfig(model="separable_cnn", data=str(fer2013_npz), epochs=1, optimizer="adamw", lr=3e-3,
                      weight_decay=1e-4, warmup_epochs=0, augment="flip", out=str(tmp_path / "fer"), threads=2)
    run = fit(cfg, progress=False)
    metrics = run.manifest["metrics"]
    assert run.manifest["data"]["sizes"] == {"train": 28709, "val": 3589, "test": 3589}
    # majority class (happy) is 24.5% of PrivateTest; one epoch must already beat it
    assert metrics["test_acc"] > 0.30, metrics


def test_resume_refuses_data_that_changed(tmp_path):
    from fercomp.data.synthetic import make_synthetic

    x, y = make_synthetic(n_per_class=20, seed=0)
    data = tmp_path / "faces.npz"
    np.savez(data, x=x, y=y)

    def stop(epoch, record):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(tiny(tmp_path, "r", data=str(data), epochs=2), progress=False, on_epoch_end=stop)
    np.savez(data, x=x[::-1].copy(), y=y[::-1].copy())  # same shapes, other file
    with pytest.raises(RunError, match="changed since the run started"):
        fit(TrainConfig(), resume=tmp_path / "r", progress=False)
    np.savez(data, x=x, y=y)  # restored: the resume goes through
    assert fit(TrainConfig(), resume=tmp_path / "r", progress=False).manifest["status"] == "complete"
