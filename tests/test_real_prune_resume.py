"""Prune runs that stop and go on: an interrupted fine-tuning or multi-step prune, resumed with
`fercomp train --resume`, ends with the weights of an uninterrupted one; `--distill` really
fine-tunes against the teacher."""

import importlib
import json
from pathlib import Path

import pytest
import torch

from fercomp.cli import main
from fercomp.compress import PruneConfig, prune_run
from fercomp.compress import prune as prune_module
from fercomp.errors import RunError
from fercomp.runs import RESUME_FILE, Run
from fercomp.train import TrainConfig, fit

fit_module = importlib.import_module("fercomp.train.fit")  # the module (fercomp.train.fit is also the function's name)


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    """A small trained baseline_cnn: cheap to prune and fine-tune many times (a pruned separable_cnn
    fine-tunes several times slower on this CPU)."""
    out = tmp_path_factory.mktemp("parent") / "base"
    return fit(TrainConfig(model="baseline_cnn", synthetic_per_class=30, epochs=1, batch_size=32, lr=0.02,
                           out=str(out)), progress=False)


def prune_cfg(parent, out, **kw):
    return PruneConfig(parent=str(parent.path), out=str(out), **{"ratio": 0.5, "finetune_epochs": 2, **kw})


@pytest.fixture(scope="module")
def straight_p50(parent, tmp_path_factory):
    return prune_run(prune_cfg(parent, tmp_path_factory.mktemp("p50") / "p50"), progress=False)


def stop_finetuning(monkeypatch, stops: dict[str, int]) -> None:
    """Ctrl-C after epoch `stops[name]` of the prune fine-tuning whose run folder is `name` (once each)."""
    real_fit = prune_module.fit

    def fit_with_stop(cfg, **kwargs):
        folder = Path(kwargs["resume"]) if kwargs.get("resume") else kwargs["run"].path
        stop_at = stops.pop(folder.name, None)

        def stop(epoch, record):
            if epoch == stop_at:
                raise KeyboardInterrupt

        return real_fit(cfg, on_epoch_end=stop, **kwargs)

    monkeypatch.setattr(prune_module, "fit", fit_with_stop)


def assert_same_weights(a: Path, b: Path) -> None:
    wa = torch.load(a / "model.pt", weights_only=True)["state_dict"]
    wb = torch.load(b / "model.pt", weights_only=True)["state_dict"]
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), (a, key)


def history(path: Path) -> list[dict]:
    """metrics.jsonl without the timings, which differ between any two runs."""
    rows = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.endswith("_s")} for r in rows]


def test_interrupted_prune_finetuning_resumes_to_the_same_weights(parent, straight_p50, tmp_path, monkeypatch):
    stop_finetuning(monkeypatch, {"cut": 1})
    with pytest.raises(KeyboardInterrupt):
        prune_run(prune_cfg(parent, tmp_path / "cut"), progress=False)
    cut = Run.load(tmp_path / "cut")
    assert cut.manifest["status"] == "interrupted" and cut.manifest["epochs_done"] == 1
    assert (cut.path / RESUME_FILE).exists()  # kept, not removed as a failed stage would be

    assert main(["train", "--resume", str(cut.path), "--no-progress"]) == 0  # dispatches to resume_prune
    resumed = Run.load(cut.path)
    assert resumed.manifest["status"] == "complete"
    assert_same_weights(straight_p50.path, resumed.path)
    assert history(resumed.path) == history(straight_p50.path)
    assert resumed.manifest["prune"]["after_finetune"] == straight_p50.manifest["prune"]["after_finetune"]


def test_interrupted_multi_step_prune_resumes_round_by_round(parent, tmp_path, monkeypatch):
    # --finetune-epochs 2 in 2 rounds: round 1 (step-1) fine-tunes 1 epoch, round 2 (the run itself) 2.
    argv = lambda out: ["prune", str(parent.path), "--ratio", "0.5", "--steps", "2", "--finetune-epochs", "2",
                        "--out", str(out), "--no-progress"]
    assert main(argv(tmp_path / "straight")) == 0
    straight = Run.load(tmp_path / "straight")

    cut = tmp_path / "cut"
    stop_finetuning(monkeypatch, {"step-1": 1, "cut": 1})
    assert main(argv(cut)) == 130  # Ctrl-C in round 1, after its epoch, before its final evaluation
    assert Run.load(cut).manifest["status"] == "interrupted"
    assert Run.load(cut / "step-1").manifest["status"] == "interrupted"
    with pytest.raises(RunError, match="--resume"):  # re-running would mix two prunes' rounds
        prune_run(PruneConfig(parent=str(parent.path), ratio=0.5, steps=2, finetune_epochs=2, out=str(cut)),
                  progress=False)

    assert main(["train", "--resume", str(cut), "--no-progress"]) == 130  # Ctrl-C again: round 2, epoch 1 of 2
    assert Run.load(cut / "step-1").manifest["status"] == "complete"
    assert Run.load(cut).manifest["status"] == "interrupted" and Run.load(cut).manifest["epochs_done"] == 1

    assert main(["train", "--resume", str(cut), "--no-progress"]) == 0
    resumed = Run.load(cut)
    assert resumed.manifest["status"] == "complete"
    assert [r.name for r in resumed.lineage()] == ["base", "step-1", "cut"]
    for a, b in ((straight.path / "step-1", cut / "step-1"), (straight.path, cut)):
        assert_same_weights(a, b)
        assert history(a) == history(b)
        pa, pb = Run.load(a).manifest["prune"], Run.load(b).manifest["prune"]
        for key in ("before", "after_prune", "after_finetune"):
            assert pa[key] == pb[key], (b, key)
    assert len(history(cut)) == 2 and len(history(cut / "step-1")) == 1
    # a finished multi-step prune is not resumed again
    assert main(["train", "--resume", str(cut), "--no-progress"]) == 2


def test_multi_step_prune_failing_before_any_round_leaves_nothing(parent, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RunError("broken on purpose")

    monkeypatch.setattr(prune_module, "prune_channels", broken)
    with pytest.raises(RunError, match="on purpose"):
        prune_run(prune_cfg(parent, tmp_path / "x", steps=2), progress=False)
    assert not (tmp_path / "x").exists()


def test_distill_fine_tunes_against_the_teacher(parent, straight_p50, tmp_path, monkeypatch):
    teachers, calls = [], []
    real_load, real_loss = fit_module.load_model_from, fit_module.distillation_loss

    def keep_teacher(path):
        teachers.append(real_load(path))
        return teachers[-1]

    def spy(student_logits, teacher_logits, hard_loss, temperature, alpha):
        calls.append((temperature, alpha))
        return real_loss(student_logits, teacher_logits, hard_loss, temperature, alpha)

    monkeypatch.setattr(fit_module, "load_model_from", keep_teacher)
    monkeypatch.setattr(fit_module, "distillation_loss", spy)
    distilled = prune_run(prune_cfg(parent, tmp_path / "kd", distill=True, temperature=3.0, alpha=0.9),
                          progress=False)
    # the teacher fit loaded is the parent, unpruned
    (teacher, _), = [t for t in teachers if sum(p.numel() for p in t[0].parameters()) == parent.manifest["params"]]
    parent_weights = torch.load(parent.path / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(v, parent_weights[k]) for k, v in teacher.state_dict().items())
    # its soft targets enter every fine-tuning step, at the requested temperature and weight
    steps = distilled.manifest["data"]["sizes"]["train"] // distilled.manifest["config"]["batch_size"]
    assert calls == [(3.0, 0.9)] * (2 * steps)
    # same pruned start and batches as the plain run: only the teacher term can change the fine-tuning
    start_a = torch.load(distilled.path / "pruned.pt", weights_only=True)["state_dict"]
    start_b = torch.load(straight_p50.path / "pruned.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(start_a[k], start_b[k]) for k in start_a)
    ha, hb = history(distilled.path), history(straight_p50.path)
    assert [r["train_loss"] for r in ha] != [r["train_loss"] for r in hb]
    with pytest.raises(AssertionError):
        assert_same_weights(distilled.path, straight_p50.path)
