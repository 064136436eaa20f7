"""Benchmark the bundle's classifier on this CPU board (Raspberry Pi, x86 mini-PC).

Latency percentiles at batch 1, throughput at larger batches, accuracy and macro-F1 on the bundle's
test images, the host; prints a table and writes JSON in `fercomp bench`'s report format, so
`fercomp bench --merge` puts the board beside the PC. A model whose accuracy on the bundled images
falls more than --max-accuracy-drop below what fercomp measured for the same file is refused (exit 3).

    python3 -m fercomp_board.edge_bench [--threads 4] [--batch-sizes 1,32]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from .bench import accuracy_problem, macro_f1
from .board_info import device_info
from .edge_runtime import EdgeModel
from .report_format import make_report, make_row
from .timing import measure, peak_rss_mb
from .trt_runtime import load_metadata, preprocess, softmax


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--meta", default="model.json")
    ap.add_argument("--model", default=None, help="classifier file (default: the one model.json names)")
    ap.add_argument("--data", default="test_images.npz", help="npz with x (uint8 N,H,W) and y; skipped if absent")
    ap.add_argument("--batch-sizes", default="1,32")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--out", default=None, help="report JSON (default: bench_<hostname>.json)")
    ap.add_argument("--max-accuracy-drop", type=float, default=0.02)
    args = ap.parse_args(argv)

    meta = load_metadata(args.meta)
    path = Path(args.model or meta["file"])
    model = EdgeModel(path, meta, threads=args.threads)
    acc = f1 = n = None
    if Path(args.data).is_file():
        with np.load(args.data) as npz:
            x, y = npz["x"], npz["y"].astype(np.int64)
        pred = softmax(model.infer(preprocess(x, meta))).argmax(1)
        acc, f1, n = float((pred == y).mean()), macro_f1(y, pred, len(meta["class_names"])), int(len(y))
    problem = accuracy_problem(acc, meta, args.max_accuracy_drop)
    if problem:
        print(f"error: {problem.replace('the engine', 'the model').replace('ONNX Runtime', 'fercomp')}")
        return 3
    host = device_info()
    rng = np.random.default_rng(0)
    c, (h, w) = meta.get("in_chans", 1), meta["input_size"]
    rows = []
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        xb = rng.standard_normal((batch, c, h, w)).astype(np.float32)  # already preprocessed: time the model
        stats = measure(lambda: model.infer(xb), warmup=args.warmup, iters=args.iters, batch_size=batch)
        weights = path.with_name(meta["weights"]) if meta.get("weights") else path
        rows.append(make_row(
            model=meta.get("model"), run=meta.get("run"), parent=meta.get("parent"), backend=model.format,
            precision=meta.get("precision"), device=host["cpu"], batch=batch, params=meta.get("params"),
            macs=meta.get("macs"), file_bytes=weights.stat().st_size, sparsity=meta.get("sparsity"), accuracy=acc,
            macro_f1=f1, split=f"bundled test images (n={n})" if n else None, threads=args.threads,
            p50_ms=stats["p50_ms"], p95_ms=stats["p95_ms"], p99_ms=stats["p99_ms"], mean_ms=stats["mean_ms"],
            images_per_s=stats["images_per_s"], iters=stats["iters"], peak_rss_mb=peak_rss_mb()))
    out = Path(args.out or f"bench_{host['hostname'] or 'board'}.json")
    out.write_text(json.dumps(make_report(host, rows), indent=2) + "\n")
    print(f"{'batch':>5} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'img/s':>10}  accuracy")
    for r in rows:
        shown = "—" if r["accuracy"] is None else f"{r['accuracy']:.2%}"
        print(f"{r['batch']:>5} {r['p50_ms']:>8.3f} {r['p95_ms']:>8.3f} {r['p99_ms']:>8.3f} {r['images_per_s']:>10.0f}  {shown}")
    print(f"{model.format} ({meta.get('precision')}) on {host['cpu']}; report: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
