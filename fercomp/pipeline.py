"""`fercomp pipeline`: every stage that exists, end to end, on one data source.

train -> prune (structured, ratio 0.5, fine-tuned with distillation from the trained model)
-> quantize (INT8 PTQ, measured in ONNX Runtime) -> export (the pruned model's ONNX, checked
against PyTorch) -> bench (every stage on PyTorch and ONNX Runtime: latency, throughput, ratios)
-> deploy (the pruned model as a Jetson bundle with an FP16 engine build). Each stage writes its own run folder under `out`,
chained by their manifests; the summary compares every stage with the first.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .bench import BenchConfig
from .bench.run import run_bench
from .compress import PruneConfig, prune_run
from .compress.quantize import QuantizeConfig, quantize_run
from .deploy.bundle import DeployConfig, deploy_run
from .errors import ConfigError
from .deploy.export import ExportConfig, export_run
from .runs import Run
from .train import TrainConfig, fit
from .train.fit import default_run_path

# Short enough for `make demo` on a 2-core CPU, long enough to learn the synthetic faces.
SYNTHETIC_EPOCHS = 8
SYNTHETIC_FINETUNE_EPOCHS = 3


@dataclass
class PipelineConfig:
    model: str = "separable_cnn"
    data: str | None = None
    epochs: int | None = None
    prune_ratio: float = 0.5
    finetune_epochs: int | None = None
    out: str = "artifacts/pipeline"
    threads: int | None = None
    seed: int = 0
    bench_iters: int = 50


def _row(stage: str, run: Run, seconds: float, backend: str) -> dict[str, Any]:
    m = run.manifest
    metrics = m.get("metrics", {})
    return {
        "stage": stage,
        "run": str(run.path),
        "params": m["params"],
        "macs": m["macs"],
        "backend": backend,
        "val_acc": metrics.get("val_acc"),
        "test_acc": metrics.get("test_acc"),
        "test_macro_f1": metrics.get("test_macro_f1"),
        "time_s": seconds,
    }


def run_pipeline(cfg: PipelineConfig, progress: bool = True) -> dict[str, Any]:
    synthetic = cfg.data in (None, "synthetic")
    out = Path(cfg.out)
    stages = []
    finetune = cfg.finetune_epochs if cfg.finetune_epochs is not None else (SYNTHETIC_FINETUNE_EPOCHS if synthetic else 10)
    if not 0 < cfg.prune_ratio < 1:  # checked before an hour of training, not after it
        raise ConfigError(f"--prune-ratio must be in (0, 1), the fraction of channels removed (got {cfg.prune_ratio})")
    if finetune < 0:
        raise ConfigError(f"--finetune-epochs must be >= 0 (got {finetune})")

    t0 = time.perf_counter()
    trained = fit(
        TrainConfig(model=cfg.model, data=cfg.data, epochs=cfg.epochs or (SYNTHETIC_EPOCHS if synthetic else None),
                    threads=cfg.threads, seed=cfg.seed, out=str(default_run_path(f"{cfg.model}-train", out))),
        progress=progress,
    )
    stages.append(_row("train", trained, time.perf_counter() - t0, "torch"))

    t0 = time.perf_counter()
    pruned = prune_run(PruneConfig(parent=str(trained.path), ratio=cfg.prune_ratio, finetune_epochs=finetune,
                                   distill=finetune > 0, threads=cfg.threads), progress=progress)
    stages.append(_row(f"prune {cfg.prune_ratio:g}", pruned, time.perf_counter() - t0, "torch"))

    t0 = time.perf_counter()
    quantized = quantize_run(QuantizeConfig(parent=str(pruned.path), threads=cfg.threads), progress=progress)
    stages.append(_row("quantize int8", quantized, time.perf_counter() - t0, "onnxruntime"))

    export_run(ExportConfig(run=str(pruned.path), threads=cfg.threads), progress=progress)
    report = run_bench(BenchConfig(models=[str(r.path) for r in (trained, pruned, quantized)], batch_sizes=(1, 64),
                                   threads=cfg.threads or 2, iters=cfg.bench_iters, warmup=5),
                       out / "bench", progress=progress)
    # The ORT-fast INT8 model has uint8 activations, which TensorRT does not take: the board gets
    # the pruned model as an FP16 engine (an s8-sym quantize run would give it INT8).
    bundle = deploy_run(DeployConfig(run=str(pruned.path)), progress=progress)
    return {"data": cfg.data or "synthetic", "stages": stages, "bench": report, "bundle": bundle["bundle"]}
