"""`fercomp pipeline`: every stage that exists, end to end, on one data source.

Today: train, then evaluate the best weights on the test split. Later stages (prune, quantize,
export, bench) append their runs to the same summary.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .train import TrainConfig, evaluate_run, fit

# Short enough for `make demo` on a 2-core CPU, long enough to learn the synthetic faces.
SYNTHETIC_EPOCHS = 8


@dataclass
class PipelineConfig:
    model: str = "separable_cnn"
    data: str | None = None
    epochs: int | None = None
    out: str = "artifacts/pipeline"
    threads: int | None = None
    seed: int = 0


def _row(stage: str, run, report: dict, seconds: float) -> dict[str, Any]:
    m = run.manifest
    return {
        "stage": stage,
        "run": str(run.path),
        "params": m["params"],
        "macs": m["macs"],
        "val_acc": m.get("metrics", {}).get("val_acc"),
        "test_acc": report["accuracy"],
        "test_macro_f1": report["macro_f1"],
        "time_s": seconds,
    }


def run_pipeline(cfg: PipelineConfig, progress: bool = True) -> dict[str, Any]:
    synthetic = cfg.data in (None, "synthetic")
    epochs = cfg.epochs or (SYNTHETIC_EPOCHS if synthetic else None)
    out = Path(cfg.out)
    from .train.fit import default_run_path

    t0 = time.perf_counter()
    run = fit(
        TrainConfig(model=cfg.model, data=cfg.data, epochs=epochs, threads=cfg.threads, seed=cfg.seed,
                    out=str(default_run_path(f"{cfg.model}-train", out))),
        progress=progress,
    )
    report = evaluate_run(run.path, split="test")
    stages = [_row("train", run, report, time.perf_counter() - t0)]
    return {"data": cfg.data or "synthetic", "stages": stages}
