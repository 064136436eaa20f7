"""Benchmark a fercomp TensorRT engine on this device (a Jetson, or any host with TensorRT).

Latency percentiles at batch 1 (with host-device copies, and of the engine alone), throughput at
larger batches, accuracy and macro-F1 on the bundle's test images, the board and its power mode;
prints a table and writes JSON in
`fercomp bench`'s report format, so `fercomp bench --merge` puts the board beside the CPU.

    python3 -m fercomp_board.bench --engine model.engine --meta model.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from .board_info import device_info
from .report_format import make_report, make_row
from .timing import measure, peak_rss_mb
from .trt_runtime import TrtModel, load_metadata, preprocess, softmax


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, classes: int) -> float:
    """Mean F1 over the classes that occur in the labels or the predictions (as fercomp computes it)."""
    scores = []
    for c in range(classes):
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0


def accuracy(model: TrtModel, meta: dict, data: Path) -> tuple[float, float, int]:
    """Top-1 accuracy and macro-F1 on an npz with uint8 `x` [N,H,W] and int `y` [N]."""
    with np.load(data) as npz:
        x, y = npz["x"], npz["y"].astype(np.int64)
    pred = softmax(model.infer(preprocess(x, meta))).argmax(1)
    return float((pred == y).mean()), macro_f1(y, pred, len(meta["class_names"])), int(len(y))


def time_engine(model: TrtModel, x: np.ndarray, warmup: int, iters: int) -> tuple[dict, dict]:
    """Latency with host-device copies (what an application sees) and of the engine alone
    (the batch already on the GPU; only for a batch the engine takes in one call)."""
    stats = measure(lambda: model.infer(x), warmup=warmup, iters=iters, batch_size=len(x))
    if len(x) > model.max_batch:
        return stats, {}
    model.stage(x)
    compute = measure(model.execute, warmup=warmup, iters=iters, batch_size=len(x))
    return stats, {"compute_p50_ms": compute["p50_ms"], "compute_p95_ms": compute["p95_ms"]}


def measure_rows(model: TrtModel, meta: dict, args, device: str) -> list[dict]:
    acc = f1 = n = None
    if Path(args.data).is_file():
        acc, f1, n = accuracy(model, meta, Path(args.data))
    rows = []
    c = meta.get("in_chans", 1)
    h, w = meta["input_size"]
    rng = np.random.default_rng(0)
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        x = rng.standard_normal((batch, c, h, w)).astype(np.float32)  # already preprocessed: time the engine
        stats, compute = time_engine(model, x, args.warmup, args.iters)
        rows.append(make_row(
            model=meta.get("model"), run=meta.get("run"), parent=meta.get("parent"), backend="tensorrt",
            precision=meta.get("precision"),
            device=device, batch=batch, params=meta.get("params"), macs=meta.get("macs"),
            file_bytes=Path(args.engine).stat().st_size, sparsity=meta.get("sparsity"), accuracy=acc,
            macro_f1=f1, split=f"bundled test images (n={n})" if n else None,
            p50_ms=stats["p50_ms"], p95_ms=stats["p95_ms"], p99_ms=stats["p99_ms"], mean_ms=stats["mean_ms"],
            images_per_s=stats["images_per_s"], iters=stats["iters"], peak_rss_mb=peak_rss_mb(), **compute))
    return rows


def accuracy_problem(measured: float | None, meta: dict, max_drop: float) -> str | None:
    """Why the engine is wrong, if it is: its accuracy on the bundled images against ONNX Runtime's
    on the same images (measured by fercomp when it wrote the bundle, in model.json)."""
    reference = (meta.get("reference_accuracy") or {}).get("accuracy")
    if measured is None or reference is None or measured >= reference - max_drop:
        return None
    return (f"the engine's accuracy on the bundled test images is {measured:.2%}, ONNX Runtime's was "
            f"{reference:.2%} (allowed drop {max_drop:.0%}): rebuild it, or check the TensorRT version; no report written")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", default="model.engine")
    ap.add_argument("--meta", default="model.json")
    ap.add_argument("--data", default="test_images.npz", help="npz with x (uint8 N,H,W) and y; skipped if absent")
    ap.add_argument("--batch-sizes", default="1,64")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--out", default=None, help="report JSON (default: bench_<hostname>.json)")
    ap.add_argument("--max-accuracy-drop", type=float, default=0.02,
                    help="refuse the engine if its accuracy on the bundled images is lower than ONNX Runtime's by more")
    args = ap.parse_args(argv)

    meta = load_metadata(args.meta)
    host = device_info()
    device = (host.get("jetson") or {}).get("board") or host["cpu"]
    with TrtModel(args.engine) as model:  # frees the CUDA stream and buffers however this ends
        rows = measure_rows(model, meta, args, device)
    problem = accuracy_problem(rows[0]["accuracy"] if rows else None, meta, args.max_accuracy_drop)
    if problem:  # a wrong engine (bad build, fp16 overflow): no report to merge, say why
        print(f"error: {problem}")
        return 3
    out = Path(args.out or f"bench_{host['hostname'] or 'board'}.json")
    out.write_text(json.dumps(make_report(host, rows), indent=2) + "\n")
    print(f"{'batch':>5} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'img/s':>10} {'gpu p50':>8}  accuracy")
    for r in rows:
        shown = "—" if r["accuracy"] is None else f"{r['accuracy']:.2%}"
        gpu = "—" if r["compute_p50_ms"] is None else f"{r['compute_p50_ms']:.3f}"
        print(f"{r['batch']:>5} {r['p50_ms']:>8.3f} {r['p95_ms']:>8.3f} {r['p99_ms']:>8.3f} {r['images_per_s']:>10.0f} "
              f"{gpu:>8}  {shown}")
    print("p50/p95/p99 include host<->device copies; gpu p50: the engine alone, input already on the GPU")
    print(f"device: {device}; report: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
