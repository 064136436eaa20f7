"""Distributed training on one CPU: 1 process x 2 threads against 2 processes x 1 thread (gloo).

Trains separable_cnn on FER2013 for the same epochs both ways (same global batch, same seed),
and writes the epoch times and the accuracy each reached to benchmarks/results/ddp_cpu.{md,json}.
On a 2-core machine this answers whether torchrun's data parallelism beats intra-op threads.

    python benchmarks/ddp_cpu.py --epochs 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from results_io import DEFAULT_DATA, write_result_json, write_result_text  # noqa: E402

from fercomp.hostinfo import host_info  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
SETUPS = {"1 process x 2 threads": (1, 2), "2 processes x 1 thread": (2, 1)}


def train(out: Path, nproc: int, threads: int, args) -> list[str]:
    command = [sys.executable, "-m", "fercomp.cli", "train", "--data", str(args.data), "--model", "separable_cnn",
               "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--threads", str(threads),
               "--out", str(out), "--no-progress", "--nproc", str(nproc)]
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run(command, check=True, cwd=REPO, env={"OMP_NUM_THREADS": str(threads), **_env()})
    return command


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / DEFAULT_DATA)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--root", type=Path, default=REPO / "artifacts" / "ddp_cpu")
    args = parser.parse_args()
    rows = []
    for name, (nproc, threads) in SETUPS.items():
        out = args.root / f"p{nproc}t{threads}"
        command = train(out, nproc, threads, args)
        manifest = json.loads((out / "manifest.json").read_text())
        history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        rows.append({"setup": name, "processes": nproc, "threads": threads,
                     "epoch_s": [round(h["epoch_s"], 1) for h in history],
                     "images_per_s": [round(h["images_per_s"]) for h in history],
                     "val_acc": manifest["metrics"]["val_acc"], "test_acc": manifest["metrics"]["test_acc"],
                     "command": " ".join(["fercomp", *command[3:]])})
    base = sum(rows[0]["epoch_s"]) / len(rows[0]["epoch_s"])
    lines = ["# Distributed training on the CPU (gloo)", "",
             f"separable_cnn on FER2013, {args.epochs} epochs, global batch {args.batch_size}, same seed; "
             f"{host_info()['cpu']}, {host_info()['cores']} cores. Command: `python benchmarks/ddp_cpu.py "
             f"--epochs {args.epochs}`.", "",
             "| setup | mean epoch | speed-up | images/s | val acc | test acc |", "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        mean = sum(r["epoch_s"]) / len(r["epoch_s"])
        lines.append(f"| {r['setup']} | {mean:.1f} s | {base / mean:.2f}x | {sum(r['images_per_s']) / len(r['images_per_s']):,.0f} "
                     f"| {r['val_acc']:.2%} | {r['test_acc']:.2%} |")
    lines += ["", "Accuracy differs between the setups because BatchNorm normalises each process's half batch "
              "with its own statistics (SyncBatchNorm is GPU-only in PyTorch).", ""]
    write_result_text(RESULTS / "ddp_cpu.md", "\n".join(lines))
    write_result_json(RESULTS / "ddp_cpu.json", {"rows": rows, "epochs": args.epochs, "batch_size": args.batch_size,
                                                 "host": host_info()})
    print("\n".join(lines))


if __name__ == "__main__":
    main()
