"""`fercomp search`: grid / TPE hyper-parameter search over training settings (thin wrapper)."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from .cli_options import DATA_HELP, Amp, Device, parse_model_args
from .ui import console

def search_cmd(
    grid: list[str] = typer.Option([], "--grid", help="NAME=V1,V2,... (repeatable), e.g. lr=0.1,0.01; model kwargs as model.width=16,32"),
    model: str = typer.Option("separable_cnn", help="registry name (see `fercomp models`)"),
    data: Optional[str] = typer.Option(None, help=DATA_HELP),
    labels: str = typer.Option("fer2013", help="fer2013 | ferplus | ferplus-soft | ferplus8 | ferplus8-soft"),
    epochs: Optional[int] = typer.Option(None, help="epochs per trial (default: the model's recommended)"),
    early_stop: Optional[int] = typer.Option(None, help="stop a trial after N epochs without val improvement"),
    sampler: str = typer.Option("grid", help="grid (every combination, or --trials of them at random) | tpe"),
    trials: Optional[int] = typer.Option(None, help="number of trials (grid: default all combinations)"),
    pruner: str = typer.Option("none", help="none | median (stop trials below the median of earlier ones)"),
    model_arg: list[str] = typer.Option([], "--model-arg", help="fixed model kwarg KEY=VALUE (repeatable)"),
    seed: int = typer.Option(0, help="training seed of every trial, and the sampler's"),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads"),
    device: Device = None,
    amp: Amp = None,
    synthetic_per_class: int = typer.Option(300, help="synthetic faces per class"),
    out: Optional[str] = typer.Option(None, help="search folder (default artifacts/search-<model>[-N])"),
    storage: Optional[str] = typer.Option(None, help="Optuna storage several workers share: sqlite:///FILE, "
                                          "postgresql://..., mysql://..., or journal:PATH on a shared filesystem "
                                          "(default: sqlite in the search folder)"),
    workers: int = typer.Option(1, help="worker processes on this machine pulling trials from the study (grid)"),
    resume: Optional[str] = typer.Option(None, help="continue an interrupted search folder with its saved settings; "
                                         "on another machine: join the search"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Hyper-parameter search: each trial a run folder, selected on val, results table + plot, resumable."""
    from .train import TrainConfig
    from .train.fit import default_run_path
    from .train.search import SearchConfig, parse_grid, run_search

    cfg = None
    if resume is None:
        base = TrainConfig(model=model, data=data, labels=labels, epochs=epochs, early_stop=early_stop, seed=seed,
                           threads=threads, synthetic_per_class=synthetic_per_class, device=device, amp=amp,
                           model_kwargs=parse_model_args(model_arg))
        cfg = SearchConfig(base=base, grid=parse_grid(grid), out=out or str(default_run_path(f"search-{model}")),
                           sampler=sampler, trials=trials, pruner=pruner, seed=seed, storage=storage)
    elif grid or storage:
        console.print("note: --resume uses the search's saved settings (its grid and storage); the other options "
                      "but --workers are ignored")
    try:
        result = run_search(cfg, resume=resume, progress=progress, workers=workers)
    except KeyboardInterrupt:
        console.print(f"interrupted; continue with: fercomp search --resume {resume or cfg.out}")
        raise typer.Exit(130)
    search = result["search"]
    keys = list(search["grid"])
    table = Table(title=f"fercomp search — {search['out']} (selected on val)")
    for col in ("trial", *keys, "state", "epochs", "val acc", "test acc"):
        table.add_column(col, justify="right")
    best = result["best"]
    pct = lambda v: "—" if v is None else f"{100 * v:.2f}%"  # noqa: E731
    for row in sorted(result["trials"], key=lambda r: -(r["val_acc"] or 0)):
        style = "bold green" if best and row["trial"] == best["trial"] else None
        table.add_row(str(row["trial"]), *(str(row["params"].get(k, "")) for k in keys), row["state"],
                      str(row["epochs"]), pct(row["val_acc"]), pct(row["test_acc"]), style=style)
    console.print(table)
    if best:
        console.print(f"best: {best['run']} ({', '.join(f'{k}={v}' for k, v in best['params'].items())}); "
                      f"table in {search['out']}/results.md", highlight=False)
