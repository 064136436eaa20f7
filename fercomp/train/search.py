"""`fercomp search`: hyper-parameter search with Optuna, every trial a run folder.

Optuna supplies the sampler (grid: every combination, or a random subset with --trials; TPE
over the same values) and the median pruner; fercomp supplies the objective, which trains one
run and returns its best PublicTest (val) accuracy. PrivateTest accuracy is reported, never
used to select.

A search folder holds `search.json` (what was asked), `study.db` (Optuna's SQLite storage,
unless --storage names a shared one), one run folder per parameter combination (named after the
values), and the results table (`results.md`, `results.json`, `results.png`). Interrupt it and
run `--resume OUT`: finished trials are not trained again, an interrupted trial's run continues
from its last epoch.

Several workers: a grid search queues its combinations in the study once and workers claim them
(see search_queue.py), so `--workers N` processes here, and `--resume OUT` on other machines that
see OUT and the storage, share one study without training a combination twice.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import re
import shutil
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ..errors import ConfigError, RunError
from ..io import write_json, write_text
from ..runs import MANIFEST, RESUME_FILE, Run
from ..ui import console
from .config import TrainConfig
from .fit import fit
from .search_queue import STUDY_NAME, default_storage_url, drain, enqueue_once, fail_dead_local_claims, open_storage

SAMPLERS = ("grid", "tpe")
PRUNERS = ("none", "median")
SEARCH_FILE = "search.json"
SETUP_LOCK = ".search-setup.lock"
OUT_ATTR = "fercomp_out"  # study user attr: the search folder a shared study belongs to
MODEL_ARG_PREFIX = "model."
# Fields a search may vary; model kwargs go as model.<name>.
TUNABLE = {f.name for f in fields(TrainConfig)} - {
    "model", "model_kwargs", "data", "labels", "class_map", "ferplus_csv", "out", "threads",
    "evaluate_test", "init_from", "distill_from", "extra_data", "device", "amp", "sync_bn",  # where, not what
}


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """['lr=0.1,0.01', 'batch_size=32,64'] -> {'lr': [0.1, 0.01], 'batch_size': [32, 64]}."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key or not raw.strip():
            raise ConfigError(f"--grid expects NAME=V1,V2,... (got {item!r})")
        if key not in TUNABLE and not key.startswith(MODEL_ARG_PREFIX):
            raise ConfigError(f"--grid {key}: not a training setting; use one of {', '.join(sorted(TUNABLE))} "
                              f"or {MODEL_ARG_PREFIX}<model kwarg>")
        if key in grid:
            raise ConfigError(f"--grid {key} is given twice; list all its values in one --grid")
        values = [_value(v.strip()) for v in raw.split(",") if v.strip()]
        if len(set(map(repr, values))) != len(values):
            raise ConfigError(f"--grid {key}: repeated values in {raw!r}")
        grid[key] = values
    if not grid:
        raise ConfigError("give at least one --grid NAME=V1,V2,...")
    return grid


def _value(text: str) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    return value if isinstance(value, (int, float, str, bool)) or value is None else text


@dataclass
class SearchConfig:
    base: TrainConfig
    grid: dict[str, list[Any]]
    out: str
    sampler: str = "grid"
    trials: int | None = None  # grid: default every combination; tpe: required
    pruner: str = "none"
    seed: int = 0
    storage: str | None = None  # an Optuna storage URL several workers share; None = sqlite in `out`

    @property
    def combinations(self) -> int:
        return math.prod(len(values) for values in self.grid.values())

    def validate(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"--sampler must be one of {', '.join(SAMPLERS)} (got {self.sampler!r})")
        if self.pruner not in PRUNERS:
            raise ConfigError(f"--pruner must be one of {', '.join(PRUNERS)} (got {self.pruner!r})")
        if self.trials is not None and self.trials < 1:
            raise ConfigError(f"--trials must be >= 1 (got {self.trials})")
        if self.sampler == "tpe" and self.trials is None:
            raise ConfigError("--sampler tpe needs --trials N")
        if self.sampler == "grid" and self.trials is not None and self.trials > self.combinations:
            raise ConfigError(f"--trials {self.trials} exceeds the grid's {self.combinations} combinations")
        from ..device import resolve_placement

        resolve_placement(self.base.device, self.base.amp)  # every trial trains there: check it once, up front
        for combo in itertools.product(*self.grid.values()):  # every trial's settings are valid up front
            trial_config(self.base, dict(zip(self.grid, combo))).validate()

    @property
    def n_trials(self) -> int:
        return self.trials if self.trials is not None else self.combinations

    def to_dict(self) -> dict[str, Any]:
        return {"base": self.base.to_dict(), "grid": self.grid, "out": self.out, "sampler": self.sampler,
                "trials": self.trials, "pruner": self.pruner, "seed": self.seed, "storage": self.storage}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "SearchConfig":
        return cls(base=TrainConfig.from_dict(values["base"]), grid=values["grid"], out=values["out"],
                   sampler=values["sampler"], trials=values["trials"], pruner=values["pruner"], seed=values["seed"],
                   storage=values.get("storage"))

    def grid_trials(self) -> list[dict[str, Any]]:
        """The combinations a grid search trains: all of them, or --trials of them drawn with the seed."""
        combos = [dict(zip(self.grid, combo)) for combo in itertools.product(*self.grid.values())]
        if self.trials is not None and self.trials < len(combos):
            combos = random.Random(self.seed).sample(combos, self.trials)
        return combos


def trial_config(base: TrainConfig, params: dict[str, Any]) -> TrainConfig:
    values = asdict(base)
    values["model_kwargs"] = dict(values["model_kwargs"])
    for key, value in params.items():
        if key.startswith(MODEL_ARG_PREFIX):
            values["model_kwargs"][key.removeprefix(MODEL_ARG_PREFIX)] = value
        else:
            values[key] = value
    return TrainConfig(**values)


def trial_folder_name(params: dict[str, Any]) -> str:
    """A readable folder name per combination: lr=0.01_batch_size=64."""
    text = "_".join(f"{key.removeprefix(MODEL_ARG_PREFIX)}={value}" for key, value in sorted(params.items()))
    return re.sub(r"[^A-Za-z0-9=._-]+", "-", text)


def run_search(cfg: SearchConfig | None = None, *, resume: str | Path | None = None, progress: bool = True,
               workers: int = 1) -> dict:
    """Run (or continue, or join) a search; `workers` processes on this machine train its trials."""
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1 (got {workers})")
    if resume is not None:
        cfg = _load_search(Path(resume))
    cfg.validate()
    if workers > 1 and cfg.sampler != "grid":
        raise ConfigError("--workers: TPE learns from finished trials one after another and could hand two "
                          "workers the same combination; use --sampler grid with several workers")
    storage = open_storage(cfg.storage) if cfg.storage else None  # a bad URL fails before anything is written
    out = Path(cfg.out)
    if resume is None:
        if (out / SEARCH_FILE).exists():
            raise RunError(f"{out}: a search already exists here; pass --resume {out} or choose another --out")
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / SEARCH_FILE, cfg.to_dict())
    storage = storage or open_storage(default_storage_url(out))
    study = _prepare_study(cfg, storage)

    if cfg.sampler == "tpe":
        done = _settled(study)
        if cfg.n_trials - done > 0:
            study.optimize(_objective(cfg, progress), n_trials=cfg.n_trials - done, catch=())
    elif workers == 1:
        drain(study, _objective(cfg, progress))
    else:
        _run_workers(cfg, workers, progress)
    return write_results(cfg, study)


def _prepare_study(cfg: SearchConfig, storage):
    """Create or load the study, queue the grid once and re-queue interrupted trials, under a lock in
    the search folder so two workers starting together do not both do it."""
    import filelock

    out = str(Path(cfg.out).resolve())
    with filelock.FileLock(Path(cfg.out) / SETUP_LOCK, timeout=300):
        study = _open_study(cfg, storage)
        owner = study.user_attrs.get(OUT_ATTR)
        if owner is None:
            study.set_user_attr(OUT_ATTR, out)
        elif owner != out and cfg.storage is not None:
            raise ConfigError(f"--storage {cfg.storage}: its study {study.study_name} belongs to the search in {owner}; "
                              "use another --out name or another storage")
        if cfg.sampler == "grid":
            enqueue_once(study, cfg.grid_trials())
        fail_dead_local_claims(study)  # a worker killed outright left its trial RUNNING
        _requeue_interrupted(study, cfg)
    return study


def _open_study(cfg: SearchConfig, storage):
    """The search's study (created on first use). Trials of a grid search come from its queue, so
    the sampler is never asked for a grid point; TPE samples the grid's values."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=cfg.seed) if cfg.sampler == "tpe" else optuna.samplers.RandomSampler(cfg.seed)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1) if cfg.pruner == "median" else optuna.pruners.NopPruner()
    # One study per search folder: a shared storage may hold several searches.
    name = STUDY_NAME if cfg.storage is None else f"{STUDY_NAME}-{Path(cfg.out).resolve().name}"
    return optuna.create_study(study_name=name, storage=storage, direction="maximize", sampler=sampler,
                               pruner=pruner, load_if_exists=True)


def _objective(cfg: SearchConfig, progress: bool, bars: bool = True):
    def objective(trial) -> float:
        # A queued trial's values are fixed: suggest returns them (and records them as its params).
        params = {key: trial.suggest_categorical(key, values) for key, values in cfg.grid.items()}
        return _train_trial(cfg, params, trial, progress, bars)

    return objective


def _settled(study) -> int:
    from optuna.trial import TrialState

    return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)


def _run_workers(cfg: SearchConfig, workers: int, progress: bool) -> None:
    """N worker processes on this machine, each draining the study's queue; their threads share the CPUs."""
    import multiprocessing

    threads = cfg.base.threads or max(1, (os.cpu_count() or 1) // workers)
    if progress:
        console.print(f"{workers} workers x {threads} thread(s) on {cfg.storage or default_storage_url(cfg.out)}",
                      highlight=False)
    context = multiprocessing.get_context("spawn")  # a clean interpreter each: no forked torch thread pools
    procs = [context.Process(target=_worker_main, args=(cfg.out, threads, progress), daemon=False)
             for _ in range(workers)]
    for proc in procs:
        proc.start()
    try:
        for proc in procs:
            proc.join()
    except KeyboardInterrupt:
        for proc in procs:  # SIGTERM: each worker marks its trial failed (re-queued on resume) and exits
            if proc.is_alive():
                proc.terminate()
        for proc in procs:
            proc.join()
        raise
    failed = [proc.exitcode for proc in procs if proc.exitcode]
    if failed:
        if all(code in (130, 143, -2, -15) for code in failed):
            raise KeyboardInterrupt
        raise RunError(f"{len(failed)} of {workers} search workers failed (exit codes {failed}); "
                       f"see their messages above, then fercomp search --resume {cfg.out}")


def _worker_main(out: str, threads: int, progress: bool) -> None:
    """One worker process: open the study and train queued trials until none is left."""
    import sys

    import torch

    from ..errors import FercompError, interrupted_exit_code, terminate_as_interrupt

    terminate_as_interrupt()
    torch.set_num_threads(threads)
    try:
        cfg = _load_search(Path(out))
        storage = open_storage(cfg.storage or default_storage_url(out))
        study = _open_study(cfg, storage)
        drain(study, _objective(cfg, progress, bars=False))
    except KeyboardInterrupt as exc:
        sys.exit(interrupted_exit_code(exc))
    except FercompError as exc:
        console.print(f"error: {exc}", style="red", highlight=False, markup=False, soft_wrap=True)
        sys.exit(exc.exit_code)


def _requeue_interrupted(study, cfg: SearchConfig) -> None:
    """Queue again every combination whose trial an interruption failed.

    Optuna marks a trial that a Ctrl-C stopped as FAIL, and its grid sampler then counts that
    combination as visited. Optuna's RetryHeartbeatStaleTrialCallback (meant for crashed
    workers) re-queues such a trial with its parameters and grid position, so a resumed search
    trains it, continuing its run folder.
    """
    import warnings

    import optuna
    from optuna.trial import TrialState

    key = lambda params: json.dumps(params, sort_keys=True)  # noqa: E731
    settled = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    covered = {key(t.params) for t in settled}
    covered |= {key(t.params or t.system_attrs.get("fixed_params", {}))
                for t in study.trials if t.state in (TrialState.WAITING, TrialState.RUNNING)}
    retried = {n for t in study.trials for n in t.system_attrs.get("retry_history", [])}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=None)
        for trial in study.trials:
            if trial.state == TrialState.FAIL and trial.number not in retried and key(trial.params) not in covered:
                retry(study, trial)
                covered.add(key(trial.params))


def _load_search(path: Path) -> SearchConfig:
    file = path / SEARCH_FILE
    if not file.is_file():
        raise RunError(f"{path}: not a search folder (no {SEARCH_FILE})")
    return SearchConfig.from_dict(json.loads(file.read_text()))


def _train_trial(cfg: SearchConfig, params: dict[str, Any], trial, progress: bool, bars: bool = True) -> float:
    """Train (or finish, or reuse) the run of one combination; its best val accuracy is the objective."""
    import optuna

    path = Path(cfg.out) / trial_folder_name(params)
    if progress:
        console.print(f"trial {trial.number}: {', '.join(f'{k}={v}' for k, v in params.items())} -> {path}", highlight=False)
    if (path / MANIFEST).exists():
        manifest = Run.load(path).manifest
        if manifest.get("status") == "complete":
            return manifest["metrics"]["val_acc"]  # a resumed search does not train a finished run again
        if manifest.get("status") == "pruned":
            raise optuna.TrialPruned()
    resume = path if (path / RESUME_FILE).exists() else None
    if resume is None and path.exists():
        shutil.rmtree(path)  # stopped before its first epoch ended: nothing to keep

    def report(epoch: int, record: dict) -> None:
        trial.report(record["val_acc"], epoch)
        if trial.should_prune():
            raise optuna.TrialPruned()

    train_cfg = trial_config(cfg.base, params)
    train_cfg.out = str(path)
    try:
        run = fit(train_cfg, resume=resume, progress=progress and bars, on_epoch_end=report)
    except optuna.TrialPruned:
        Run.load(path).update(status="pruned")
        raise
    return run.manifest["metrics"]["val_acc"]


def write_results(cfg: SearchConfig, study) -> dict:
    """results.json / results.md / results.png from the study and the trials' run folders."""
    import optuna

    out = Path(cfg.out)
    rows = []
    for trial in study.trials:
        if trial.state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING):
            continue
        name = trial_folder_name(trial.params) if trial.params else None
        metrics = {}
        if name and (out / name / MANIFEST).exists():
            metrics = Run.load(out / name).manifest.get("metrics") or {}
        rows.append({
            "trial": trial.number, "params": trial.params, "state": trial.state.name.lower(), "run": name,
            "val_acc": trial.value if trial.value is not None else (max(trial.intermediate_values.values(), default=None)),
            "test_acc": metrics.get("test_acc"), "epochs": metrics.get("epochs_run") or len(trial.intermediate_values),
            "train_time_s": metrics.get("train_time_s"),
        })
    complete = [r for r in rows if r["state"] == "complete"]
    best = max(complete, key=lambda r: r["val_acc"]) if complete else None
    result = {"search": cfg.to_dict(), "selected_on": "val (PublicTest for FER2013)", "best": best, "trials": rows}
    write_json(out / "results.json", result)
    write_text(out / "results.md", results_markdown(cfg, rows, best))
    if rows:
        _plot_results(rows, out / "results.png", cfg)
    return result


def results_markdown(cfg: SearchConfig, rows: list[dict], best: dict | None) -> str:
    keys = list(cfg.grid)
    pct = lambda v: "—" if v is None else f"{100 * v:.2f}%"  # noqa: E731
    lines = [
        f"# Search: {cfg.base.model} on {cfg.base.data or 'synthetic'}",
        "",
        f"Sampler {cfg.sampler}, pruner {cfg.pruner}, {len(rows)} of {cfg.n_trials} trials finished "
        f"({cfg.combinations} combinations). Selected on val; test shown, never used to select.",
        "",
        "| trial | " + " | ".join(keys) + " | state | epochs | val acc | test acc | run |",
        "|---:|" + "---:|" * len(keys) + "---|---:|---:|---:|---|",
    ]
    for r in sorted(rows, key=lambda r: -(r["val_acc"] or 0)):
        mark = " **(best)**" if best is not None and r["trial"] == best["trial"] else ""
        lines.append(f"| {r['trial']} | " + " | ".join(str(r["params"].get(k, "")) for k in keys)
                     + f" | {r['state']} | {r['epochs']} | {pct(r['val_acc'])}{mark} | {pct(r['test_acc'])} | {r['run']} |")
    return "\n".join(lines) + "\n"


def _plot_results(rows: list[dict], path: Path, cfg: SearchConfig) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import save_figure

    ordered = sorted((r for r in rows if r["val_acc"] is not None), key=lambda r: r["val_acc"])
    labels = [", ".join(f"{k.removeprefix(MODEL_ARG_PREFIX)}={v}" for k, v in r["params"].items()) for r in ordered]
    colours = ["tab:blue" if r["state"] == "complete" else "tab:gray" for r in ordered]
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(ordered) + 1.2))
    ax.barh(range(len(ordered)), [100 * r["val_acc"] for r in ordered], color=colours)
    ax.set_yticks(range(len(ordered)), labels, fontsize=7)
    ax.set_xlabel("best val accuracy (%)  (grey: pruned)")
    ax.set_title(f"fercomp search: {cfg.base.model}, {cfg.sampler} sampler", fontsize=9)
    low = min(100 * r["val_acc"] for r in ordered)
    ax.set_xlim(max(0, low - 5), None)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    save_figure(path, fig)
    plt.close(fig)
