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
