"""ONNX Runtime INT8 vs FP32 on the same model (issue: compression, section 3).

Times `model_fp32.onnx` and `model.onnx` (INT8 QDQ) of a quantize run folder on this CPU with a
fixed thread count: p50/p95 latency at batch 1 and throughput at batch 64, after warm-up.
Prints a table and writes benchmarks/results/ort_int8_<run name>.json.

    python benchmarks/ort_int8_speed.py artifacts/bench/separable_cnn-p50-kd-int8 --threads 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from results_io import write_result_json, write_result_text  # noqa: E402
from fercomp.deploy.runtime import OnnxPredictor, preprocess  # noqa: E402
from fercomp.hostinfo import host_info  # noqa: E402
from fercomp.io import write_json  # noqa: E402
from fercomp.timing import measure  # noqa: E402


def time_model(path: Path, threads: int, batch: int, iters: int) -> dict:
    predictor = OnnxPredictor(path, threads=threads)
    images = np.random.default_rng(0).integers(0, 256, size=(batch, 48, 48), dtype=np.uint8)
    x = preprocess(images, predictor.spec)
    feed = {predictor.input_name: x}
    return measure(lambda: predictor.session.run(None, feed), warmup=max(5, iters // 10), iters=iters, batch_size=batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="quantize run folder (holds model_fp32.onnx and model.onnx)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=200)
    args = parser.parse_args()
    rows = {}
    for label, name in (("fp32", "model_fp32.onnx"), ("int8", "model.onnx")):
        rows[label] = {
            "batch1": time_model(args.run / name, args.threads, 1, args.iters),
            "batch64": time_model(args.run / name, args.threads, 64, max(20, args.iters // 4)),
        }
    speedup = rows["int8"]["batch64"]["images_per_s"] / rows["fp32"]["batch64"]["images_per_s"]
    result = {"run": str(args.run), "threads": args.threads, "backend": "onnxruntime CPUExecutionProvider",
              "results": rows, "int8_speedup_batch64": speedup,
              "int8_speedup_batch1_p50": rows["fp32"]["batch1"]["p50_ms"] / rows["int8"]["batch1"]["p50_ms"],
              "host": host_info(), "command": " ".join(sys.argv)}
    print(f"{'precision':<10}{'b1 p50 ms':>12}{'b1 p95 ms':>12}{'b64 img/s':>12}")
    for label, r in rows.items():
        print(f"{label:<10}{r['batch1']['p50_ms']:>12.3f}{r['batch1']['p95_ms']:>12.3f}{r['batch64']['images_per_s']:>12.0f}")
    print(f"INT8 / FP32 throughput at batch 64: {speedup:.2f}x ({args.threads} threads)")
    write_result_json(REPO / "benchmarks" / "results" / f"ort_int8_{args.run.name}.json", result)


if __name__ == "__main__":
    main()
