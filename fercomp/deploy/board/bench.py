"""Benchmark a fercomp TensorRT engine on this device (a Jetson, or any host with TensorRT).

Latency percentiles at batch 1, throughput at larger batches, accuracy and macro-F1 on the
bundle's test images, the board and its power mode; prints a table and writes JSON in
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", default="model.engine")
    ap.add_argument("--meta", default="model.json")
    ap.add_argument("--data", default="test_images.npz", help="npz with x (uint8 N,H,W) and y; skipped if absent")
    ap.add_argument("--batch-sizes", default="1,64")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--out", default=None, help="report JSON (default: bench_<hostname>.json)")
    args = ap.parse_args(argv)

    meta = load_metadata(args.meta)
    model = TrtModel(args.engine)
    host = device_info()
    device = (host.get("jetson") or {}).get("board") or host["cpu"]
    acc = f1 = n = None
    if Path(args.data).is_file():
        acc, f1, n = accuracy(model, meta, Path(args.data))
    rows = []
    c = meta.get("in_chans", 1)
    h, w = meta["input_size"]
    rng = np.random.default_rng(0)
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        x = rng.standard_normal((batch, c, h, w)).astype(np.float32)  # already preprocessed: time the engine
        stats = measure(lambda: model.infer(x), warmup=args.warmup, iters=args.iters, batch_size=batch)
        rows.append(make_row(
            model=meta.get("model"), run=meta.get("run"), parent=meta.get("parent"), backend="tensorrt",
            precision=meta.get("precision"),
            device=device, batch=batch, params=meta.get("params"), macs=meta.get("macs"),
            file_bytes=Path(args.engine).stat().st_size, sparsity=meta.get("sparsity"), accuracy=acc,
            macro_f1=f1, split=f"bundled test images (n={n})" if n else None,
            p50_ms=stats["p50_ms"], p95_ms=stats["p95_ms"], p99_ms=stats["p99_ms"], mean_ms=stats["mean_ms"],
            images_per_s=stats["images_per_s"], iters=stats["iters"], peak_rss_mb=peak_rss_mb()))
    out = Path(args.out or f"bench_{host['hostname'] or 'board'}.json")
    out.write_text(json.dumps(make_report(host, rows), indent=2) + "\n")
    print(f"{'batch':>5} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'img/s':>10}  accuracy")
    for r in rows:
        shown = "—" if r["accuracy"] is None else f"{r['accuracy']:.2%}"
        print(f"{r['batch']:>5} {r['p50_ms']:>8.3f} {r['p95_ms']:>8.3f} {r['p99_ms']:>8.3f} {r['images_per_s']:>10.0f}  {shown}")
    print(f"device: {device}; report: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
