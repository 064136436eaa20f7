"""PyTorch eager vs ONNX Runtime FP32 vs ONNX Runtime INT8 on this CPU (issue: export/deploy, section 5).

For each run folder (a baseline and its compressed descendants): p50/p95 latency at batch 1 and
throughput at batch 64 per backend, fixed thread count, PrivateTest accuracy through the same
predictor, and the export parity figures (ONNX vs PyTorch). Float runs are exported first if
they have no verified ONNX. Prints a table and writes benchmarks/results/backends_cpu_<name>.{md,json}.

    python benchmarks/backends_cpu.py --name se_resnet artifacts/bench/se_resnet artifacts/bench/se_resnet-p50-kd \
        artifacts/bench/se_resnet-p50-kd-int8 --threads 2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fercomp.bench import BenchConfig, bench_models  # noqa: E402
from fercomp.hostinfo import host_info  # noqa: E402
from fercomp.io import write_json, write_text  # noqa: E402
from fercomp.runs import Run  # noqa: E402


def parity_of(run_path: str) -> dict | None:
    report = Path(run_path) / "export.json"
    return json.loads(report.read_text())["parity"] if report.is_file() else None


def markdown(rows: list[dict], parities: dict, threads: int, command: str, host: dict) -> str:
    lines = ["| run | backend | precision | params | MACs | file | test acc | b1 p50 ms | b1 p95 ms | b64 img/s |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    by_key: dict = {}
    for r in rows:
        by_key.setdefault((r["run"], r["backend"]), {})[r["batch"]] = r
    for (run, backend), per_batch in by_key.items():
        first = next(iter(per_batch.values()))
        if first["status"] != "ok":
            lines.append(f"| {run} | {backend} | {first['precision']} | | | | | unavailable: {first['reason']} | | |")
            continue
        b1, b64 = per_batch.get(1, {}), per_batch.get(64, {})
        lines.append(
            f"| {run} | {backend} | {first['precision']} | {first['params']:,} | {first['macs'] / 1e6:.1f} M | "
            f"{first['file_bytes'] / 1e6:.2f} MB | {first['accuracy']:.2%} | {b1.get('p50_ms', float('nan')):.3f} | "
            f"{b1.get('p95_ms', float('nan')):.3f} | {b64.get('images_per_s', float('nan')):,.0f} |")
    lines += ["", "Export parity (ONNX Runtime vs the run's PyTorch model, its whole test split):", "",
              "| run | compared with | images | top-1 agreement | max abs prob diff |", "|---|---|---:|---:|---:|"]
    for run, p in parities.items():
        if p:
            lines.append(f"| {run} | {p['against']} | {p['images']} | {p['top1_agreement']:.3%} | {p['max_abs_prob_diff']:.2e} |")
    lines += ["", f"Command: `{command}`", "",
              f"Host: {host['cpu']}, {host['cores']} cores, {threads} threads, torch {host['torch']}, "
              f"onnxruntime {host.get('onnxruntime')}. Latency: forward pass on a preprocessed batch, "
              "after warm-up; one process, nothing else running."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--name", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=200)
    args = ap.parse_args()
    cfg = BenchConfig(models=args.runs, backends=("torch", "onnxruntime"), batch_sizes=(1, 64),
                      threads=args.threads, iters=args.iters, warmup=20)
    host = host_info()
    rows = bench_models(cfg, device=host["cpu"])
    parities = {Run.load(p).name: parity_of(p) for p in args.runs}
    command = "python " + " ".join(sys.argv)
    md = f"# Backends on this CPU: {args.name}\n\n" + markdown(rows, parities, args.threads, command, host)
    print(md)
    out = REPO / "benchmarks" / "results" / f"backends_cpu_{args.name}"
    write_json(out.with_suffix(".json"), {"rows": rows, "parity": parities, "host": host, "command": command})
    write_text(out.with_suffix(".md"), md)


if __name__ == "__main__":
    main()
