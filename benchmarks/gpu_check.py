"""One prepared check for a GPU machine: FER2013 training speed and accuracy on CUDA, and bench's CUDA rows.

What it measures (all on --device, default cuda), into $OUT/gpu_check.json (or --out):
  1. se_resnet training images/s with AMP bf16 and in fp32 (--speed-epochs each; the last epoch
     counts, the first warms cuDNN up), and the data path's share of each epoch;
  2. a short bf16 training (--epochs) whose val (PublicTest) accuracy is set beside the CPU run's
     committed in benchmarks/results/train_se_resnet.json;
  3. `bench`'s torch backend on the GPU: fp32 and fp16 rows, timed end to end and with CUDA events
     on a device-resident batch, labelled with the GPU's name.

The working tree that reaches the GPU machine carries no ../shared: pack FER2013's train and val
splits once (xz, about 57 MB) into the ignored artifacts/ folder and carry that path:

    python benchmarks/gpu_check.py --pack artifacts/fer2013-trainval.npz.xz
    python benchmarks/gpu_check.py --data artifacts/fer2013-trainval.npz.xz          # on the GPU machine
    python benchmarks/gpu_check.py --device cpu --epochs 1 --speed-epochs 1 --limit 512   # dry run here
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from results_io import DEFAULT_DATA  # noqa: E402

MODEL = "se_resnet"
CPU_REFERENCE = REPO / "benchmarks" / "results" / "train_se_resnet.json"
SPLITS = ("train", "val")


def pack(source: Path, target: Path) -> None:
    """train + val arrays (images and labels, class names) of an npz, xz-compressed."""
    import numpy as np

    data = np.load(source)
    keep = {k: data[k] for k in ("class_names", *(f"{s}_{f}" for s in SPLITS for f in ("x", "y")))}
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(suffix=".npz") as tmp:
        np.savez(tmp.name, **keep)
        with open(tmp.name, "rb") as raw, lzma.open(target, "wb", preset=6) as packed:
            shutil.copyfileobj(raw, packed)
    print(f"{target}: {target.stat().st_size / 1e6:.1f} MB")


def prepared_data(path: Path, limit: int | None, workdir: Path) -> Path:
    """An npz fercomp reads: unpacked from .xz, and cut to the first `limit` images per split."""
    import numpy as np

    if path.suffix == ".xz":
        plain = workdir / path.with_suffix("").name
        with lzma.open(path, "rb") as packed, open(plain, "wb") as raw:
            shutil.copyfileobj(packed, raw)
        path = plain
    if limit is None:
        return path
    data = np.load(path)
    cut = {k: (data[k][:limit] if k.split("_")[0] in ("train", "val", "test") else data[k]) for k in data.files}
    limited = workdir / f"limit{limit}.npz"
    np.savez(limited, **cut)
    return limited


def train(data: Path, out: Path, device: str, amp: str, epochs: int, threads: int | None) -> dict:
    from fercomp.train import TrainConfig, fit

    started = time.perf_counter()
    run = fit(TrainConfig(model=MODEL, data=str(data), epochs=epochs, device=device, amp=amp, threads=threads,
                          evaluate_test=False, out=str(out)), progress=False)
    history = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    last = history[-1]
    return {"amp": run.manifest["placement"]["amp"], "device": run.manifest["placement"]["device"], "epochs": epochs,
            "images_per_s_last_epoch": round(last["images_per_s"], 1),
            "images_per_s_per_epoch": [round(h["images_per_s"], 1) for h in history],
            "data_share_last_epoch": round(last["data_s"] / last["epoch_s"], 4),
            "val_acc": run.manifest["metrics"]["val_acc"], "wall_s": round(time.perf_counter() - started, 1),
            "run": str(run.path)}


def bench(run: Path, device: str, threads: int, iters: int) -> list[dict]:
    from fercomp.bench.measure import BenchConfig, bench_models
    from fercomp.hostinfo import host_info

    cfg = BenchConfig(models=[str(run)], backends=("torch",), batch_sizes=(1, 64, 256), threads=threads,
                      warmup=10, iters=iters, split="val", device=device)
    keys = ("backend", "precision", "device", "batch", "status", "p50_ms", "p95_ms", "compute_p50_ms",
            "compute_p95_ms", "images_per_s", "accuracy", "reason")
    return [{k: r.get(k) for k in keys} for r in bench_models(cfg, host_info().get("cpu") or "cpu")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="FER2013 npz or packed .npz.xz (default: artifacts/fer2013-trainval.npz.xz, else ../shared)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--epochs", type=int, default=5, help="the accuracy run (bf16)")
    parser.add_argument("--speed-epochs", type=int, default=2, help="each images/s run (bf16, fp32)")
    parser.add_argument("--limit", type=int, default=None, help="first N images per split (dry runs)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--iters", type=int, default=100, help="bench timed calls per batch size")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", REPO / "artifacts" / "gpu_check")))
    parser.add_argument("--pack", type=Path, default=None, help="write the train+val .npz.xz to carry, then stop")
    args = parser.parse_args()

    if args.pack:
        pack(REPO / DEFAULT_DATA, args.pack)
        return 0
    import torch

    from fercomp.device import resolve_placement
    from fercomp.errors import FercompError
    from fercomp.hostinfo import host_info

    try:
        device, _ = resolve_placement(args.device, "off")
    except FercompError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    source = args.data or next((p for p in (REPO / "artifacts" / "fer2013-trainval.npz.xz", REPO / DEFAULT_DATA)
                                if p.exists()), None)
    if source is None or not source.exists():
        print("error: --data: no FER2013 here; pack it with --pack and carry it (see the docstring)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu_check-"))
    result: dict = {"device": str(device), "torch": torch.__version__, "host": host_info(),
                    "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                    "data": source.name, "limit": args.limit, "model": MODEL}
    try:
        data = prepared_data(source, args.limit, work)
        amp_bf16 = "bf16" if device.type != "mps" else "off"
        result["speed"] = {amp: train(data, work / f"speed-{amp}", args.device, amp, args.speed_epochs, args.threads)
                           for amp in (amp_bf16, "off")}
        accuracy = train(data, work / "accuracy", args.device, amp_bf16, args.epochs, args.threads)
        result["accuracy_run"] = accuracy
        if CPU_REFERENCE.exists():
            cpu = json.loads(CPU_REFERENCE.read_text())  # the committed CPU training of the same model and data
            result["cpu_reference"] = {"file": str(CPU_REFERENCE.relative_to(REPO)), "epochs": cpu["config"].get("epochs"),
                                       "val_acc_best": cpu["metrics"].get("val_acc"),
                                       "mean_epoch_s": cpu["metrics"].get("mean_epoch_s")}
        result["bench"] = bench(Path(accuracy["run"]), args.device, args.threads or 2, args.iters)
    finally:
        (args.out / "gpu_check.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({k: result[k] for k in ("device", "gpu", "speed", "bench") if k in result}, indent=1, default=str)[:4000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
