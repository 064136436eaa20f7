"""Widths and depths chosen for CPU latency rather than MACs (issue 12, "methods to try").

Builds each candidate shape from the registry (untrained: latency does not depend on the
weights), exports it to ONNX the way `fercomp export` does, and times ONNX Runtime at batch 1
with 1 and 2 threads on this CPU, after warm-up. Prints params, MACs, p50 latency and the cost
per million MACs, and writes benchmarks/results/shape_latency.{md,json}.

The question it answers: under the compact budget (<= 250K params), which shape buys the most
capacity per millisecond here? MACs alone mislead on a CPU at batch 1: squeeze-and-excitation,
full-resolution stems and many small layers cost time that a MAC count does not see.

    python benchmarks/shape_latency.py --iters 300
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from ort_int8_speed import time_model  # noqa: E402
from results_io import write_result_json, write_result_text  # noqa: E402
from fercomp.deploy.onnx_export import export_onnx  # noqa: E402
from fercomp.hostinfo import host_info  # noqa: E402
from fercomp.models import count_macs, count_params, create  # noqa: E402
from fercomp.runs import model_spec  # noqa: E402

CLASS_NAMES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

# (label, architecture, options): the shipped shapes, the one they replaced, and candidates.
CANDIDATES: list[tuple[str, str, dict]] = [
    ("zoo:tiny shape", "separable_cnn", {}),
    ("sep 32-64-96-128", "separable_cnn", {"channels": (32, 64, 96, 128)}),
    ("sep 48-96-192", "separable_cnn", {"channels": (48, 96, 192)}),
    ("sep 64-96-128-160", "separable_cnn", {"channels": (64, 96, 128, 160)}),
    ("sep 64-128-256", "separable_cnn", {"channels": (64, 128, 256)}),
    ("sep 64-128-256, stem 16-32", "separable_cnn", {"channels": (64, 128, 256), "stem_channels": (16, 32)}),
    ("sep 64-128-320 (zoo:compact)", "separable_cnn", {"channels": (64, 128, 320)}),
    ("sep 32-64-128-256", "separable_cnn", {"channels": (32, 64, 128, 256)}),
    ("previous zoo:compact (se w12 2-2-2-1)", "se_resnet", {"width": 12}),
    ("se w12 1-1-2-1", "se_resnet", {"width": 12, "depth": (1, 1, 2, 1)}),
    ("se w14 1-1-1-1", "se_resnet", {"width": 14, "depth": (1, 1, 1, 1)}),
    ("se w8 2-2-2-1", "se_resnet", {"width": 8}),
    ("tuned_cnn", "tuned_cnn", {}),
    ("baseline_cnn", "baseline_cnn", {}),
]


def export_candidate(arch: str, options: dict, path: Path) -> tuple[Path, int, int]:
    model = create(arch, num_classes=len(CLASS_NAMES), **options).eval()
    export_onnx(model, model_spec(arch, options, CLASS_NAMES, model), path)
    return path, count_params(model), count_macs(model)


def markdown(report: dict) -> str:
    lines = [
        "# Shapes chosen for CPU latency (ONNX Runtime FP32, batch 1, untrained weights)",
        "",
        f"Command: `{report['command']}`",
        f"Machine: {report['host'].get('cpu', '?')}, {report['host'].get('cores', '?')} cores; "
        f"{report['iters']} timed calls after warm-up, one process, candidates timed one after another.",
        "",
        *([report["note"], ""] if report.get("note") else []),
        "| shape | architecture | params | MACs | p50 1 thread | p50 2 threads | µs per M MACs (1 thread) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in report["rows"]:
        lines.append(
            f"| {row['label']} | {row['architecture']} | {row['params']:,} | {row['macs'] / 1e6:.1f} M | "
            f"{row['p50_ms_1t']:.3f} ms | {row['p50_ms_2t']:.3f} ms | {row['us_per_mmac_1t']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=300, help="timed calls per candidate and thread count")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--note", default="", help="how quiet the machine was, for the results file")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        exported = [(label, arch, options, *export_candidate(arch, options, Path(tmp) / f"{i}.onnx"))
                    for i, (label, arch, options) in enumerate(CANDIDATES)]
        for label, arch, options, path, params, macs in exported:
            one, two = (time_model(path, threads, 1, args.iters) for threads in (1, 2))
            row = {"label": label, "architecture": arch, "options": options, "params": params, "macs": macs,
                   "p50_ms_1t": one["p50_ms"], "p95_ms_1t": one["p95_ms"],
                   "p50_ms_2t": two["p50_ms"], "p95_ms_2t": two["p95_ms"],
                   "us_per_mmac_1t": 1000.0 * one["p50_ms"] / (macs / 1e6)}
            rows.append(row)
            print(f"{label:38s} {params:>9,} {macs / 1e6:6.1f} M  {one['p50_ms']:.3f} ms  {two['p50_ms']:.3f} ms")
    report = {"command": "python benchmarks/shape_latency.py " + " ".join(sys.argv[1:]), "iters": args.iters,
              "note": args.note, "host": host_info(), "rows": rows}
    write_result_json(args.out / "shape_latency.json", report)
    write_result_text(args.out / "shape_latency.md", markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
