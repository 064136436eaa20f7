"""Distillation from teachers whose outputs are computed once on fixed augmented views."""

from pathlib import Path

import numpy as np
import pytest
import torch

from fercomp.cli import main
from fercomp.data import Augmenter
from fercomp import zoo
from fercomp.errors import ConfigError, RunError
from fercomp.runs import Run
from fercomp.train import TrainConfig, fit
from fercomp.train.fit import load_teacher
from fercomp.train.teacher_cache import (augmented_view, cache_path, ensemble_logits, require_same_teachers,
                                         teacher_identity, teacher_targets)

from test_recipes import cfg, saved


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FERCOMP_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    root = tmp_path_factory.mktemp("teachers")
    a = fit(cfg(root, "a", epochs=2), progress=False)
    b = fit(cfg(root, "b", epochs=2, seed=1), progress=False)
    return a, b


def images(n=40, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, 1, 48, 48), dtype=np.uint8))


def test_a_view_is_rebuilt_identically_and_views_differ():
    x, augment = images(), Augmenter("strong")
    first = augmented_view(x, augment, seed=0, view=1)
    assert torch.equal(first, augmented_view(x, augment, seed=0, view=1))
    assert not torch.equal(first, augmented_view(x, augment, seed=0, view=2))
    assert not torch.equal(first, augmented_view(x, augment, seed=1, view=1))


def test_teacher_logits_are_mirror_symmetric_and_an_ensemble_is_the_mean(teachers):
    a, b = (load_teacher(str(r.path), Run.load(r.path).manifest["model"]["class_names"]) for r in teachers)
    x = images(8).float() / 255
    torch.testing.assert_close(a.logits(x), a.logits(x.flip(-1)))  # flip TTA: a face and its mirror agree
    plain = a.model((x - 0.5) / 0.25)
    assert not torch.allclose(a.logits(x), plain)  # ...which the network alone does not do
    torch.testing.assert_close(ensemble_logits([a, b], x), (a.logits(x) + b.logits(x)) / 2)


def test_each_epoch_gets_a_view_and_the_teachers_logits_on_that_same_view(teachers):
    a, b = (load_teacher(str(r.path), Run.load(r.path).manifest["model"]["class_names"]) for r in teachers)
    x = images(30)
    targets = teacher_targets([a, b], x, "strong", seed=3, views=2, progress=False)
    assert targets.logits.shape == (2, 30, 7) and not targets.record["reused_cache"]
    for epoch in (1, 2, 3):
        view, logits = targets.view_for_epoch(x, epoch)
        torch.testing.assert_close(logits, ensemble_logits([a, b], view))
    assert torch.equal(targets.view_for_epoch(x, 1)[0], targets.view_for_epoch(x, 3)[0])  # 2 views, cycled
    again = teacher_targets([a, b], x, "strong", seed=3, views=2, progress=False)
    assert again.record["reused_cache"] and torch.equal(again.logits, targets.logits)
    other = teacher_targets([a], x, "strong", seed=3, views=2, progress=False)  # other teachers, other key
    assert not other.record["reused_cache"]


def test_an_interrupted_teacher_pass_continues_from_its_last_finished_view(teachers, monkeypatch):
    from fercomp.train import teacher_cache

    a = load_teacher(str(teachers[0].path), Run.load(teachers[0].path).manifest["model"]["class_names"])
    x, real, calls = images(30), teacher_cache.ensemble_logits, []

    def scored(models, view):
        calls.append(1)
        if len(calls) == 3:  # killed while scoring the third view
            raise KeyboardInterrupt
        return real(models, view)

    monkeypatch.setattr(teacher_cache, "ensemble_logits", scored)
    with pytest.raises(KeyboardInterrupt):
        teacher_targets([a], x, "strong", seed=5, views=4, progress=False)
    calls.clear()
    monkeypatch.setattr(teacher_cache, "ensemble_logits", lambda models, view: calls.append(1) or real(models, view))
    targets = teacher_targets([a], x, "strong", seed=5, views=4, progress=False)
    assert len(calls) == 2 and not targets.record["reused_cache"]  # views 3 and 4 only
    for epoch in (1, 2, 3, 4):
        view, logits = targets.view_for_epoch(x, epoch)
        torch.testing.assert_close(logits, real([a], view))
    assert not list(Path(targets.record["cache"]).parent.glob("*.partial.pt"))


def test_a_resumed_run_keeps_the_outputs_it_started_with_when_a_teacher_changes(teachers):
    a, b = (load_teacher(str(r.path), Run.load(r.path).manifest["model"]["class_names"]) for r in teachers)
    x = images(30)
    first = teacher_targets([a], x, "strong", seed=3, views=2, progress=False)
    started = first.record
    assert started["weights_sha256"] == teacher_identity([a])["weights_sha256"]
    # the name now points at other weights (b): the run still learns from what a taught it
    resumed = teacher_targets([b], x, "strong", seed=3, views=2, progress=False, started=started)
    assert torch.equal(resumed.logits, first.logits)
    assert resumed.record["reused_cache"] and resumed.record["cache_key"] == started["cache_key"]
    view, logits = resumed.view_for_epoch(x, 2)
    torch.testing.assert_close(logits, ensemble_logits([a], view))
    cache_path(started["cache_key"]).unlink()
    with pytest.raises(RunError, match="other weights"):  # gone, and b cannot rebuild them
        teacher_targets([b], x, "strong", seed=3, views=2, progress=False, started=started)
    rebuilt = teacher_targets([a], x, "strong", seed=3, views=2, progress=False, started=started)
    assert not rebuilt.record["reused_cache"] and rebuilt.record["cache_key"] == started["cache_key"]


def test_live_teachers_must_be_those_the_run_started_with(teachers):
    a, b = (load_teacher(str(r.path), Run.load(r.path).manifest["model"]["class_names"]) for r in teachers)
    started = teacher_identity([a, b])
    require_same_teachers(started, [a, b])
    require_same_teachers({}, [b])  # a run from before digests were recorded: nothing to compare
    with pytest.raises(RunError, match="other weights"):
        require_same_teachers(started, [b, a])


def test_a_zoo_teacher_is_recorded_with_its_card_as_it_taught():
    teacher = load_teacher("tiny", zoo.card("tiny")["class_names"])  # the bare name, recorded as zoo:tiny
    assert teacher.ref == "zoo:tiny"
    recorded = teacher_identity([teacher])
    assert recorded["teacher_cards"]["zoo:tiny"] == {"test_acc": zoo.card("tiny")["test"]["accuracy"],
                                                      "recipe": zoo.card("tiny")["recipe"]}
    assert len(recorded["weights_sha256"][0]) == 64


def test_a_run_folder_teacher_is_recorded_with_its_accuracy_and_recipe(teachers, tmp_path):
    """The student may ship after the teacher's folder is gone: what it was is in the student's manifest."""
    run = Run.load(teachers[0].path)
    teacher = load_teacher(str(run.path), run.manifest["model"]["class_names"])
    card = teacher_identity([teacher])["teacher_cards"][str(run.path)]
    assert card == {"test_acc": run.manifest["metrics"]["test_acc"], "recipe": [run.manifest["command"]]}
    checkpoint = tmp_path / "teacher.pt"
    checkpoint.write_bytes((run.path / "model.pt").read_bytes())
    bare = teacher_identity([load_teacher(str(checkpoint), run.manifest["model"]["class_names"])])
    assert "teacher_cards" not in bare and len(bare["weights_sha256"]) == 1  # a bare file: its digest only


def test_a_teacher_after_a_comma_may_start_with_a_tilde(teachers, monkeypatch):
    """The shell expands only the first `~` of `--teacher ~/a,~/b`: fercomp expands the others."""
    home = Path(teachers[0].path).parent
    monkeypatch.setenv("HOME", str(home))
    names = Run.load(teachers[0].path).manifest["model"]["class_names"]
    loaded = [load_teacher(f"~/{Path(t.path).name}", names) for t in teachers]
    assert [t.spec for t in loaded] == [Run.load(t.path).load_model()[1] for t in teachers]


def test_resume_after_a_teacher_changed_and_its_cache_is_gone_is_one_line(teachers, tmp_path, capsys):
    import shutil
    teacher = tmp_path / "teacher.pt"
    shutil.copy(Path(teachers[0].path) / "model.pt", teacher)

    def stop(epoch, _):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(cfg(tmp_path, "killed", distill_from=str(teacher), teacher_views=2), progress=False, on_epoch_end=stop)
    run = Run.load(tmp_path / "killed")
    shutil.copy(Path(teachers[1].path) / "model.pt", teacher)  # same file name, other weights
    Path(run.manifest["distillation"]["cache"]).unlink()
    before = (run.path / "last.pt").read_bytes()
    code = main(["train", "--resume", str(run.path), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and str(run.path) in err and "other weights" in err
    assert (run.path / "last.pt").read_bytes() == before and Run.load(run.path).manifest["epochs_done"] == 1
    shutil.copy(Path(teachers[0].path) / "model.pt", teacher)  # the teacher it started with: it resumes
    assert Run.load(fit(TrainConfig(), resume=run.path, progress=False).path).manifest["status"] == "complete"


@pytest.mark.slow  # four trainings
def test_cached_distillation_trains_reuses_the_cache_and_resumes_bit_identically(teachers, tmp_path):
    ref = ",".join(str(r.path) for r in teachers)
    student = fit(cfg(tmp_path, "student", distill_from=ref, teacher_views=2, distill_alpha=0.9), progress=False)
    record = Run.load(student.path).manifest["distillation"]
    assert record["views"] == 2 and len(record["teachers"]) == 2 and not record["reused_cache"]
    assert 0 <= record["teacher_val_acc"] <= 1 and Path(record["cache"]).is_file()
    online = fit(cfg(tmp_path, "online", distill_from=ref, distill_alpha=0.9), progress=False)
    a, b = saved(student), saved(online)
    assert any(not torch.equal(a[k], b[k]) for k in a)  # fixed views train differently from fresh draws

    def stop(epoch, _):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(cfg(tmp_path, "killed", distill_from=ref, teacher_views=2, distill_alpha=0.9), progress=False,
            on_epoch_end=stop)
    assert Run.load(tmp_path / "killed").manifest["distillation"]["reused_cache"]
    resumed = fit(TrainConfig(), resume=tmp_path / "killed", progress=False)
    c = saved(resumed)
    assert all(torch.equal(a[k], c[k]) for k in a)


def test_teacher_views_without_a_teacher_is_one_line(tmp_path, capsys):
    code = main(["train", "--teacher-views", "4", "--epochs", "1", "--out", str(tmp_path / "r"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "--teacher-views" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()
    with pytest.raises(ConfigError, match="--teacher-views"):
        TrainConfig(distill_from="x", teacher_views=-1).validate()


def test_a_later_stage_leaves_the_parents_teachers_and_mixing_behind():
    parent = TrainConfig(distill_from="zoo:standard,zoo:compact", teacher_views=8)
    plain = parent.for_later_stage(None, epochs=2)
    assert (plain.distill_from, plain.teacher_views, plain.epochs) == (None, 0, 2)
    plain.validate()  # --teacher-views without --teacher would be refused
    mixed = TrainConfig(mix="cutmix").for_later_stage("artifacts/parent")
    assert (mixed.distill_from, mixed.mix) == ("artifacts/parent", "none")
    mixed.validate()
    assert TrainConfig(mix="cutmix").for_later_stage(None).mix == "cutmix"
