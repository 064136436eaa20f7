"""fercomp search: the grid visits every combination once, selects on val, and resumes."""

import itertools
import json

import pytest

from fercomp.cli import main
from fercomp.errors import ConfigError
from fercomp.train import TrainConfig
from fercomp.train import search as search_mod
from fercomp.train.search import SearchConfig, parse_grid, run_search

BASE = dict(epochs=2, synthetic_per_class=12, batch_size=16, evaluate_test=False)
GRID = {"lr": [0.05, 0.01], "label_smoothing": [0.0, 0.1]}


def _config(tmp_path, **kw):
    return SearchConfig(base=TrainConfig(**BASE), grid=GRID, out=str(tmp_path / "search"), **kw)


def _combos(result):
    return sorted(json.dumps(r["params"], sort_keys=True) for r in result["trials"] if r["state"] == "complete")


EVERY = sorted(json.dumps(dict(zip(GRID, c)), sort_keys=True) for c in itertools.product(*GRID.values()))


def test_interrupted_grid_search_resumes_and_visits_every_combination(tmp_path, monkeypatch):
    real_fit = search_mod.fit
    calls = []

    def fit_stopping_third_trial(cfg, resume=None, progress=True, on_epoch_end=None):
        calls.append((cfg.out, resume))

        def stop_after_first_epoch(epoch, record):
            on_epoch_end(epoch, record)
            raise KeyboardInterrupt

        third = len(calls) == 3
        return real_fit(cfg, resume=resume, progress=progress, on_epoch_end=stop_after_first_epoch if third else on_epoch_end)

    monkeypatch.setattr(search_mod, "fit", fit_stopping_third_trial)
    with pytest.raises(KeyboardInterrupt):
        run_search(_config(tmp_path), progress=False)
    interrupted = calls[2][0]
    calls.clear()
    monkeypatch.setattr(search_mod, "fit", lambda *a, **k: (calls.append((a[0].out, k.get("resume"))), real_fit(*a, **k))[1])

    result = run_search(resume=tmp_path / "search", progress=False)
    assert _combos(result) == EVERY  # every combination once, none skipped
    assert len(calls) == 2  # the two finished trials were not trained again
    assert (interrupted, interrupted) in [(out, str(r) if r else None) for out, r in calls]  # continued, not restarted
    best = result["best"]
    assert best["val_acc"] == max(r["val_acc"] for r in result["trials"] if r["state"] == "complete")
    table = (tmp_path / "search" / "results.md").read_text()
    assert table.count("| complete |") == 4 and "(best)" in table


def test_trials_subset_and_tpe(tmp_path):
    one_epoch = TrainConfig(**{**BASE, "epochs": 1})
    result = run_search(SearchConfig(base=one_epoch, grid=GRID, out=str(tmp_path / "grid"), trials=2), progress=False)
    assert len(_combos(result)) == 2 and set(_combos(result)) <= set(EVERY)
    tpe = run_search(SearchConfig(base=one_epoch, grid=GRID, out=str(tmp_path / "tpe"), sampler="tpe", trials=2),
                     progress=False)
    assert len([r for r in tpe["trials"] if r["state"] == "complete"]) == 2


def test_grid_parsing_and_validation(tmp_path, capsys):
    assert parse_grid(["lr=0.1,0.01", "optimizer=sgd,adamw", "model.width=16,32"]) == {
        "lr": [0.1, 0.01], "optimizer": ["sgd", "adamw"], "model.width": [16, 32]}
    with pytest.raises(ConfigError, match="not a training setting"):
        parse_grid(["data=a.npz,b.npz"])
    with pytest.raises(ConfigError, match="--lr"):  # a bad value fails before any trial trains
        SearchConfig(base=TrainConfig(**BASE), grid={"lr": [0.1, -1]}, out=str(tmp_path / "x")).validate()
    assert main(["search", "--grid", "lr=0.1", "--sampler", "tpe", "--out", str(tmp_path / "y")]) == 2
    assert "--trials" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()


def test_two_workers_on_one_storage_train_every_combination_once(tmp_path):
    cfg = _config(tmp_path, storage=f"sqlite:///{tmp_path / 'shared.db'}")
    result = run_search(cfg, progress=False, workers=2)
    assert _combos(result) == EVERY
    assert len(result["trials"]) == len(EVERY)  # no trial beyond the queued ones, none failed or repeated
    import optuna

    from fercomp.train.search_queue import WORKER_ATTR, open_storage

    study = optuna.load_study(study_name="fercomp-search-search", storage=open_storage(cfg.storage))
    assert all(WORKER_ATTR in t.user_attrs for t in study.trials)  # claimed by a worker, none made up
    for row in result["trials"]:  # each run trained its epochs once: no restart, no second writer
        lines = (tmp_path / "search" / row["run"] / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    assert not (tmp_path / "search" / "study.db").exists()  # the named storage, not the default


CLAIMER = r"""
import sys, time, os
import optuna
from fercomp.train.search_queue import drain, open_storage
storage = open_storage(sys.argv[1])
study = optuna.load_study(study_name="queue", storage=storage)
def objective(trial):
    x = trial.suggest_categorical("x", list(range(16)))
    time.sleep(0.05)
    return float(x)
drain(study, objective)
"""


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("journal", marks=pytest.mark.slow)])
def test_concurrent_claims_take_each_queued_trial_once(tmp_path, kind):
    """Four processes drain one queue at once: every queued trial runs exactly once, none is added."""
    import subprocess
    import sys

    import optuna

    from fercomp.train.search_queue import WORKER_ATTR, enqueue_once, open_storage

    url = f"sqlite:///{tmp_path / 'q.db'}" if kind == "sqlite" else f"journal:{tmp_path / 'q.log'}"
    study = optuna.create_study(study_name="queue", storage=open_storage(url), direction="maximize")
    enqueue_once(study, [{"x": x} for x in range(16)])
    enqueue_once(study, [{"x": x} for x in range(16)])  # a second setup does not queue them again
    procs = [subprocess.Popen([sys.executable, "-c", CLAIMER, url]) for _ in range(4)]
    assert [p.wait(timeout=240) for p in procs] == [0, 0, 0, 0]
    trials = optuna.load_study(study_name="queue", storage=open_storage(url)).trials
    assert sorted(t.params["x"] for t in trials) == list(range(16))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs[WORKER_ATTR] for t in trials}) > 1  # they did run concurrently


def test_storage_flag_is_checked_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["search", "--grid", "lr=0.1", "--storage", "no-such-scheme", "--out", str(out)]) == 2
    assert "--storage" in capsys.readouterr().err and not out.exists()
    assert main(["search", "--grid", "lr=0.1,0.01", "--sampler", "tpe", "--trials", "2", "--workers", "2",
                 "--out", str(out)]) == 2
    assert "--workers" in capsys.readouterr().err and not out.exists()


KILLED_WORKER = r"""
import os, sys
from fercomp.train import search as s
real = s._train_trial
calls = []
def dies_on_second(cfg, params, trial, progress, bars=True):
    calls.append(1)
    if len(calls) == 2:
        os._exit(9)  # like SIGKILL: no clean-up, the trial stays RUNNING in the study
    return real(cfg, params, trial, progress, bars)
s._train_trial = dies_on_second
from fercomp.train import TrainConfig
s.run_search(s.SearchConfig(base=TrainConfig(epochs=1, synthetic_per_class=12, batch_size=16, evaluate_test=False),
             grid={"lr": [0.05, 0.01], "label_smoothing": [0.0, 0.1]}, out=sys.argv[1]), progress=False)
"""


def test_a_worker_killed_outright_has_its_trial_queued_again_on_resume(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "search"
    done = subprocess.run([sys.executable, "-c", KILLED_WORKER, str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 9, done.stderr[-2000:]
    result = run_search(resume=out, progress=False)
    assert _combos(result) == EVERY  # the killed worker's combination trained on resume, none twice
    states = sorted(r["state"] for r in result["trials"])
    assert states == ["complete"] * 4 + ["fail"]  # the dead claim is on record as failed, then re-queued
