import importlib
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


def scripted_val_accuracy(monkeypatch, accs: list[float]) -> None:
    """fit's validation reports these accuracies, epoch by epoch: the stopping and lr rules see a known curve."""
    fit_module = importlib.import_module("fercomp.train.fit")
    real, script = fit_module.evaluate_model, iter(accs)

    def evaluate(*args, **kwargs):
        report, loss = real(*args, **kwargs)
        return {**report, "accuracy": next(script)}, loss

    monkeypatch.setattr(fit_module, "evaluate_model", evaluate)


def history_of(run) -> list[dict]:
    return [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]


def quick(tmp_path, **kw):
    """A few steps per epoch, no test evaluation: the epoch-level rules are what these tests check."""
    return tiny(tmp_path, model="separable_cnn", synthetic_per_class=12, batch_size=16, augment="none",
                evaluate_test=False, **kw)


def test_early_stop_ends_patience_epochs_after_the_best(tmp_path, monkeypatch):
    # best at epoch 2; epoch 3 ties (no strict improvement), epoch 4 is worse: patience 2 ends after epoch 4
    scripted_val_accuracy(monkeypatch, [0.5, 0.6, 0.6, 0.55, 0.9, 0.9, 0.9, 0.9])
    run = fit(quick(tmp_path, epochs=8, early_stop=2), progress=False)
    metrics = run.manifest["metrics"]
    assert (metrics["epochs_run"], metrics["best_epoch"], metrics["val_acc"]) == (4, 2, 0.6)
    assert [r["epoch"] for r in history_of(run)] == [1, 2, 3, 4]


def imbalanced_npz(tmp_path) -> tuple[str, np.ndarray]:
    """Synthetic faces whose train split holds 40 angry, 4 disgust and 12 of each other class."""
    from fercomp.data.synthetic import make_synthetic

    x, y = make_synthetic(n_per_class=40, seed=0)
    counts = [40, 4, 12, 12, 12, 12, 12]
    keep = np.concatenate([np.flatnonzero(y == c)[:n] for c, n in enumerate(counts)])
    vx, vy = make_synthetic(n_per_class=4, seed=1)
    path = tmp_path / "imbalanced.npz"
    np.savez(path, train_x=x[keep], train_y=y[keep], val_x=vx, val_y=vy, test_x=vx, test_y=vy)
    return str(path), y[keep]


def test_class_weights_are_inverse_frequency():
    from fercomp.data import class_weights

    y = np.array([0] * 6 + [1] * 3 + [2] * 1)  # class 3 absent
    w = class_weights(y, 4)
    # w_c = N / (K * n_c) over the K = 3 present classes; an absent class weighs nothing
    assert w.tolist() == pytest.approx([10 / 18, 10 / 9, 10 / 3, 0.0])
    assert float((w[torch.from_numpy(y)]).sum()) == pytest.approx(len(y))  # keeps the unweighted loss's scale


class CrossEntropySpy:
    """torch.nn.functional with cross_entropy's inputs recorded (stands in for fit's `F`)."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return getattr(torch.nn.functional, name)

    def cross_entropy(self, logits, target, weight=None, **kwargs):
        loss = torch.nn.functional.cross_entropy(logits, target, weight=weight, **kwargs)
        self.calls.append((logits.detach().float(), target, weight, loss.detach()))
        return loss


@pytest.mark.parametrize("weighted", [True, False])
def test_class_weights_weight_the_training_loss(tmp_path, monkeypatch, weighted):
    from fercomp.data import class_weights

    fit_module = importlib.import_module("fercomp.train.fit")
    spy = CrossEntropySpy()
    monkeypatch.setattr(fit_module, "F", spy)
    data, train_y = imbalanced_npz(tmp_path)
    fit(tiny(tmp_path, data=data, epochs=1, class_weights=weighted, label_smoothing=0.0), progress=False)
    assert spy.calls  # one per training step
    expected = class_weights(train_y, 7)
    assert expected[1] == pytest.approx(10 * expected[0])  # disgust is 10x rarer than angry
    for logits, target, weight, loss in spy.calls:
        per_image = torch.nn.functional.cross_entropy(logits, target, reduction="none")
        if weighted:  # every step weighs each image by its class: a rare class's errors count more
            assert torch.equal(weight.cpu(), expected)
            w = expected[target.cpu()]
            assert loss.item() == pytest.approx(float((w * per_image.cpu()).sum() / w.sum()), rel=1e-5)
        else:
            assert weight is None
            assert loss.item() == pytest.approx(per_image.mean().item(), rel=1e-5)
    if weighted:  # on these batches the weighted loss is not the plain mean (the weights change training)
        assert any(abs(loss.item() - torch.nn.functional.cross_entropy(logits, target).item()) > 1e-4
                   for logits, target, _, loss in spy.calls)


def test_step_schedule_divides_by_ten_at_half_and_three_quarters():
    from fercomp.train.fit import learning_rate

    cfg = TrainConfig(model="baseline_cnn", epochs=5, lr=0.1, schedule="step", warmup_epochs=1).resolved({})
    lrs = [learning_rate(cfg, step, 50, 10, 1.0) for step in range(50)]
    assert lrs[:10] == pytest.approx([0.1 * (s + 1) / 10 for s in range(10)])  # warm-up ramps to the peak
    # after warm-up, 40 steps: /10 from half-way (step 10 + 20) and again from three quarters (10 + 30)
    assert lrs[10:30] == pytest.approx([0.1] * 20)
    assert lrs[30:40] == pytest.approx([0.01] * 10)
    assert lrs[40:] == pytest.approx([0.001] * 10)


def test_plateau_schedule_follows_the_scale_and_ignores_the_step():
    from fercomp.train.fit import learning_rate

    cfg = TrainConfig(model="baseline_cnn", epochs=5, lr=0.1, schedule="plateau", warmup_epochs=0).resolved({})
    assert {learning_rate(cfg, step, 50, 10, 1.0) for step in range(50)} == {0.1}
    assert learning_rate(cfg, 7, 50, 10, 0.25) == pytest.approx(0.025)


def test_plateau_halves_the_lr_after_three_epochs_without_improvement(tmp_path, monkeypatch):
    # epoch 3 improves, so the count of bad epochs restarts there: 4, 5 and 6 make three, halving for epoch 7
    # (counting on through epoch 3 would halve one epoch early)
    scripted_val_accuracy(monkeypatch, [0.5, 0.4, 0.6, 0.5, 0.6, 0.55, 0.5])
    run = fit(quick(tmp_path, epochs=7, lr=0.01, schedule="plateau", warmup_epochs=0), progress=False)
    lrs = [r["lr"] for r in history_of(run)]
    assert lrs == pytest.approx([0.01] * 6 + [0.005])


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


@pytest.mark.slow  # runs in CI (FERCOMP_ALL_TESTS=1); left out of the quick `make test`
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
