"""Two-phase transfer learning: phase 1 trains only the head, phase 2 unfreezes the last N stages."""

import json

import pytest
import torch

from fercomp.errors import ConfigError
from fercomp.train import TrainConfig, fit
from fercomp.train.fit import learning_rate

CFG = dict(model="mobilenet_v2", model_kwargs={"resize": 32}, epochs=2, head_epochs=1, unfreeze=2,
           synthetic_per_class=12, batch_size=16, lr=0.01, evaluate_test=False)


def _stage_tensors(model, index):
    return {n: p.detach().clone() for m in model.stage_modules(index) for n, p in m.named_parameters()}


def test_head_phase_then_last_stages(tmp_path, monkeypatch):
    snapshots = {}
    model_ref = {}

    def keep(epoch, record):
        model = model_ref["model"]
        snapshots[epoch] = (
            [_stage_tensors(model, i) for i in range(model.num_stages)],
            model.get_classifier().weight.detach().clone(),
        )

    from fercomp.models import transfer

    original_init = transfer.GrayscaleTransferNet.__init__

    def capture(self, *args, **kwargs):  # keep a handle on the live model fit builds
        original_init(self, *args, **kwargs)
        model_ref["model"] = self

    monkeypatch.setattr(transfer.GrayscaleTransferNet, "__init__", capture)
    run = fit(TrainConfig(out=str(tmp_path / "run"), **CFG), progress=False, on_epoch_end=keep)
    monkeypatch.undo()
    model = model_ref["model"]
    torch.manual_seed(0)  # fit seeds with cfg.seed = 0 before building: the same initial weights
    start = transfer.mobilenet_v2(num_classes=7, resize=32)
    initial = [_stage_tensors(start, i) for i in range(start.num_stages)]

    stages_after_1, head_after_1 = snapshots[1]
    stages_after_2, head_after_2 = snapshots[2]
    for index in range(model.num_stages):  # phase 1: no backbone weight moved
        for name, tensor in initial[index].items():
            assert torch.equal(stages_after_1[index][name], tensor), (index, name)
    assert not torch.equal(head_after_1, start.get_classifier().weight)
    for index in range(model.num_stages):  # phase 2: only the last two stages moved
        moved = any(not torch.equal(stages_after_2[index][n], t) for n, t in initial[index].items())
        assert moved == (index >= model.num_stages - 2), index
    history = run.manifest["metrics"]
    assert history["epochs_run"] == 2
    lines = (run.path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["frozen_stages"] for line in lines] == [6, 4]


def test_finetune_phase_has_its_own_schedule():
    cfg = TrainConfig(model="mobilenet_v2", epochs=4, head_epochs=2, lr=0.1, finetune_lr=0.01,
                      schedule="cosine", warmup_epochs=0).resolved({})
    spe = 10
    assert learning_rate(cfg, 0, 40, spe, 1.0) == pytest.approx(0.1)  # head phase starts at lr
    assert learning_rate(cfg, 20, 40, spe, 1.0) == pytest.approx(0.01)  # phase 2 restarts at finetune_lr
    assert learning_rate(cfg, 39, 40, spe, 1.0) < 0.001


def test_two_phase_needs_a_transfer_model(tmp_path):
    with pytest.raises(ConfigError, match="--head-epochs"):
        fit(TrainConfig(model="separable_cnn", epochs=2, head_epochs=1, synthetic_per_class=12,
                        out=str(tmp_path / "x")), progress=False)
    assert not (tmp_path / "x").exists()
    with pytest.raises(ConfigError, match="--head-epochs"):
        TrainConfig(unfreeze=2).validate()


def test_resume_across_the_phase_boundary_matches_an_uninterrupted_run(tmp_path):
    # stopped right after the head phase: the resumed run must unfreeze the last stages itself
    from fercomp.runs import Run

    straight = fit(TrainConfig(out=str(tmp_path / "straight"), **CFG), progress=False)

    def stop_after_head_phase(epoch, record):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(TrainConfig(out=str(tmp_path / "cut"), **CFG), progress=False, on_epoch_end=stop_after_head_phase)
    assert Run.load(tmp_path / "cut").manifest["epochs_done"] == 1
    resumed = fit(TrainConfig(), resume=tmp_path / "cut", progress=False)

    a = torch.load(straight.path / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(resumed.path / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    rows = lambda run: [{k: v for k, v in json.loads(line).items() if not k.endswith("_s")}
                        for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert rows(resumed) == rows(straight)
    assert [r["frozen_stages"] for r in rows(resumed)] == [6, 4]
