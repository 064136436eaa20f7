"""Measure models on backends: one row per model x backend x batch size, each saying how it was measured.

Latency is the backend's forward pass on an already preprocessed float32 batch (warm-up first,
then `iters` timed calls, percentiles), with the thread count fixed; accuracy and macro-F1 come
from the same predictor on the named split. A backend that cannot run a model here is a row with
status "unavailable" and the reason, never a silently missing line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..deploy.board.report_format import make_row
from ..deploy.formats import EDGE
from ..deploy.runtime import ENGINE_FILE, load, preprocess
from ..errors import ConfigError, FercompError
from ..runs import MODEL_FILE, ONNX_FILE, Run, recorded_sparsity
from ..timing import measure, peak_rss_mb

BACKENDS = ("torch", "onnxruntime", "tensorrt")  # the default; EDGE backends are measured when named


class BackendUnavailable(Exception):
    """This backend cannot run this model on this host; the message says why."""


@dataclass
class BenchConfig:
    models: list[str]
    backends: tuple[str, ...] = BACKENDS
    batch_sizes: tuple[int, ...] = (1, 64)
    threads: int = 2
    data: str | None = None
    split: str = "test"
    warmup: int = 10
    iters: int = 100
    accuracy: bool = True
    ov_precision: str = "auto"  # OpenVINO inference precision: auto | f32
    export_missing: bool = True  # run_bench exports a float run's ONNX (with its parity check) when it has none
    device: str | None = None  # the torch backend's --device (auto: CUDA, then MPS, else CPU); CUDA: fp32 + fp16 rows

    def validate(self) -> None:
        from ..device import resolve_device

        if "torch" in self.backends:  # --device places the torch backend (TensorRT is always on the GPU)
            resolve_device(self.device)  # --device cuda on a host without CUDA: one line, nothing measured
        if not self.models:
            raise ConfigError("name at least one run folder to benchmark")
        unknown = [b for b in self.backends if b not in (*BACKENDS, *EDGE)]
        if unknown:
            raise ConfigError(f"--backends: unknown {', '.join(unknown)} (choose from {', '.join((*BACKENDS, *EDGE))})")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ConfigError(f"--batch-sizes must be positive integers (got {self.batch_sizes})")
        if self.threads < 1:
            raise ConfigError(f"--threads must be >= 1 (got {self.threads})")
        if self.warmup < 0 or self.iters < 1:
            raise ConfigError(f"--warmup must be >= 0 and --iters >= 1 (got {self.warmup}, {self.iters})")
        if self.split not in ("train", "val", "test"):
            raise ConfigError(f"--split must be train, val or test (got {self.split!r})")


def model_file(run: Run, backend: str) -> Path:
    if backend in EDGE:
        return run.path / edge_weights_file(run, backend)
    return run.path / {"torch": MODEL_FILE, "onnxruntime": ONNX_FILE, "tensorrt": ENGINE_FILE}[backend]


def precision_of(run: Run, backend: str) -> str:
    if backend == "tensorrt":
        export = (run.manifest.get("export") or {}).get("tensorrt") or {}
        return (export.get("spec") or {}).get("precision")
    if backend in EDGE:
        return ((run.manifest.get("export") or {}).get(backend) or {}).get("precision")
    return "int8" if run.stage == "quantize" else "fp32"


def torch_device(cfg: BenchConfig) -> torch.device:
    from ..device import resolve_device

    return resolve_device(cfg.device)


def precisions(run: Run, backend: str, cfg: BenchConfig) -> tuple[str, ...]:
    """The torch backend on a GPU gets an fp32 and an fp16 row; every other backend its one precision."""
    if backend == "torch" and run.stage != "quantize" and torch_device(cfg).type == "cuda":
        return ("fp32", "fp16")
    return (precision_of(run, backend),)


def open_backend(run: Run, backend: str, cfg: BenchConfig, precision: str | None = None):
    """The run's predictor on `backend`, or BackendUnavailable with the reason."""
    if backend == "torch" and run.stage == "quantize":
        raise BackendUnavailable("INT8 lives only in the QDQ ONNX; PyTorch eager has no INT8 CPU kernels for it")
    if backend == "tensorrt":
        from ..deploy.tensorrt import tensorrt_available

        available, reason = tensorrt_available()
        if not available:
            raise BackendUnavailable(reason)
        if not torch.cuda.is_available():
            raise BackendUnavailable("no CUDA GPU on this host")
        if not (run.path / ENGINE_FILE).is_file():
            raise BackendUnavailable(f"no {ENGINE_FILE}: run `fercomp export {run.path} --trt` first")
    if backend == "onnxruntime" and not (run.path / ONNX_FILE).is_file():
        raise BackendUnavailable(f"no {ONNX_FILE}: run `fercomp export {run.path}` first")
    if backend in EDGE:
        edge_available(run, backend)
    try:
        if backend == "torch":
            predictor = load(run.path, backend=backend, threads=cfg.threads, device=cfg.device)
            return predictor.half() if precision == "fp16" else predictor
        return load(run.path, backend=backend, threads=cfg.threads, ov_precision=cfg.ov_precision)
    except FercompError as exc:
        if backend != "tensorrt":
            raise
        raise BackendUnavailable(str(exc)) from None  # e.g. an engine this TensorRT or GPU cannot load


def edge_weights_file(run: Run, backend: str) -> str:
    """The file that holds an edge format's weights (OpenVINO's .bin, not its .xml)."""
    from ..deploy.formats import weights_file

    return weights_file(backend)


def edge_available(run: Run, backend: str) -> None:
    """BackendUnavailable unless the runtime is installed and the run holds a verified export for it."""
    from ..deploy.extras import available
    from ..deploy.formats import entry_file, kept, runtime_module

    ok, reason = available(runtime_module(backend))
    if not ok:
        raise BackendUnavailable(reason)
    if not kept(run, backend) or not (run.path / entry_file(backend)).is_file():
        raise BackendUnavailable(f"no verified {entry_file(backend)}: run `fercomp export {run.path} "
                                 f"--format {backend}` first")


def measured_precision(predictor, precision: str | None) -> str | None:
    """What the backend computed in: an FP32 model that OpenVINO ran in bf16 is a bf16 row."""
    used = getattr(predictor, "inference_precision", None)
    if used is None or precision == "int8":
        return precision
    return {"f32": "fp32", "f16": "fp16"}.get(used, used)


def device_for(backend: str, device: str, cfg: BenchConfig | None = None) -> str:
    """Rows that ran on a GPU (TensorRT, torch on CUDA) are labelled with its name, never the CPU's."""
    if backend == "torch" and cfg is not None and (place := torch_device(cfg)).type != "cpu":
        return torch.cuda.get_device_name(place) if place.type == "cuda" else place.type
    if backend != "tensorrt":
        return device
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "gpu"


def bench_run(path: str | Path, cfg: BenchConfig, device: str, images: np.ndarray | None = None,
              labels: np.ndarray | None = None, split_name: str | None = None) -> list[dict[str, Any]]:
    """Rows for one run folder: every backend x batch size.

    Timing comes first and `peak_rss_mb` is read right after it: the high-water mark of loading
    the model and running the timed batches (host memory only; a GPU's memory is not in it).
    The accuracy pass runs afterwards on the same predictor, which is closed when done."""
    run = Run.load(path).require_complete()
    parent = run.parent
    common = dict(model=run.manifest.get("model", {}).get("name"), run=run.name,
                  parent=parent.name if parent else None, device=device, threads=cfg.threads,
                  params=run.manifest.get("params"), macs=run.manifest.get("macs"), sparsity=recorded_sparsity(run))
    rows = []
    for backend in cfg.backends:
        for precision in precisions(run, backend, cfg):
            base = dict(common, backend=backend, precision=precision, device=device_for(backend, device, cfg))
            try:
                predictor = open_backend(run, backend, cfg, precision)
            except BackendUnavailable as exc:
                rows.append(make_row(**base, status="unavailable", reason=str(exc)))
                continue
            base["precision"] = measured_precision(predictor, base["precision"])
            try:
                rows.extend(_measure_backend(run, backend, predictor, base, cfg, images, labels, split_name))
            finally:
                close = getattr(predictor, "close", None)  # TensorRT holds a CUDA stream and device buffers
                if close:
                    close()
    return rows


def _measure_backend(run: Run, backend: str, predictor, base: dict[str, Any], cfg: BenchConfig,
                     images: np.ndarray | None, labels: np.ndarray | None, split_name: str | None) -> list[dict[str, Any]]:
    from ..train.metrics import evaluate_probabilities

    base = dict(base, file_bytes=model_file(run, backend).stat().st_size)
    pool = preprocess(images[: max(cfg.batch_sizes)] if images is not None else
                      np.full((max(cfg.batch_sizes), *predictor.spec["input_size"]), 128, np.uint8), predictor.spec)
    timed = []
    for batch in cfg.batch_sizes:
        x = np.ascontiguousarray(np.resize(pool, (batch, *pool.shape[1:])))  # repeats images if too few
        stats = measure(lambda: predictor.forward(x), warmup=cfg.warmup, iters=cfg.iters, batch_size=batch)
        timed.append((batch, stats, compute_only(predictor, x, cfg)))
    rss = peak_rss_mb()
    if images is not None and labels is not None:
        report = evaluate_probabilities(predictor.predict_proba(images), labels, predictor.class_names)
        base.update(accuracy=report["accuracy"], macro_f1=report["macro_f1"], split=split_name)
    return [make_row(**base, batch=batch, p50_ms=stats["p50_ms"], p95_ms=stats["p95_ms"], p99_ms=stats["p99_ms"],
                     mean_ms=stats["mean_ms"], images_per_s=stats["images_per_s"], iters=stats["iters"],
                     peak_rss_mb=rss, **compute)
            for batch, stats, compute in timed]


def compute_only(predictor, x: np.ndarray, cfg: BenchConfig) -> dict[str, float]:
    """A GPU backend's latency without host-device copies (the batch staged on the GPU once): TensorRT,
    and the torch backend on CUDA (timed with CUDA events); {} elsewhere."""
    timer = getattr(predictor, "forward_timer", None)
    call = timer(x) if timer else None
    if call is None:
        return {}
    if getattr(predictor, "backend", None) == "torch":  # asynchronous CUDA launches: time them with CUDA events
        from .cuda_timing import measure_cuda

        stats = measure_cuda(call, warmup=cfg.warmup, iters=cfg.iters, batch_size=len(x))
    else:  # TensorRT's call synchronises its stream itself
        stats = measure(call, warmup=cfg.warmup, iters=cfg.iters, batch_size=len(x))
    return {"compute_p50_ms": stats["p50_ms"], "compute_p95_ms": stats["p95_ms"]}


def evaluation_split(run: Run, cfg: BenchConfig) -> tuple[np.ndarray | None, np.ndarray | None, str | None]:
    """The images and labels accuracy is measured on: the run's own data (or --data), split --split."""
    from ..train.evaluate import data_for_run

    if not cfg.accuracy:
        return None, None, None
    data = data_for_run(run, cfg.data)  # a bad --data is the user's to fix: say so, do not drop accuracy
    if cfg.split not in data.splits or not len(data.splits[cfg.split]):
        raise ConfigError(f"{data.source} has no {cfg.split!r} split to measure accuracy on; pass --split")
    part = data.split(cfg.split)
    return part.x, part.y, f"{data.source} {cfg.split} (n={len(part.y)})"


def bench_models(cfg: BenchConfig, device: str, isolate: bool = False) -> list[dict[str, Any]]:
    """Rows for every run in `cfg.models` on every backend.

    With `isolate`, each run x backend is measured in a fresh process (`fercomp.bench.worker`), so
    its peak memory is its own and no backend's threads or caches touch another's timing.
    """
    cfg.validate()
    torch.set_num_threads(cfg.threads)
    rows = []
    for path in cfg.models:
        for backend in cfg.backends:
            one = replace(cfg, models=[str(path)], backends=(backend,))
            rows.extend(run_isolated(one, device) if isolate else _bench_in_process(one, device))
    return rows


def _bench_in_process(cfg: BenchConfig, device: str) -> list[dict[str, Any]]:
    run = Run.load(cfg.models[0])
    return bench_run(run.path, cfg, device, *evaluation_split(run, cfg))


def run_isolated(cfg: BenchConfig, device: str) -> list[dict[str, Any]]:
    package_root = str(Path(__file__).resolve().parents[2])  # the worker imports this same fercomp
    env = dict(os.environ, OMP_NUM_THREADS=str(cfg.threads), MKL_NUM_THREADS=str(cfg.threads),
               PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
    request = json.dumps({"config": asdict(cfg), "device": device})
    done = subprocess.run([sys.executable, "-m", "fercomp.bench.worker"], input=request, capture_output=True,
                          text=True, env=env)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise FercompError(f"benchmarking {cfg.models[0]} on {cfg.backends[0]} failed: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def worker_main() -> int:
    """`python -m fercomp.bench.worker`: a JSON request on stdin, JSON rows on the last stdout line."""
    request = json.loads(sys.stdin.read())
    raw = request["config"]
    cfg = BenchConfig(**{**raw, "backends": tuple(raw["backends"]), "batch_sizes": tuple(raw["batch_sizes"])})
    torch.set_num_threads(cfg.threads)
    rows = _bench_in_process(cfg, request["device"])
    sys.stdout.write(json.dumps(rows) + "\n")
    return 0
