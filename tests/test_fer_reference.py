"""benchmarks/fer_reference.py: the fer INT8 reference row of benchmarks/runtimes.py, measured with LiteRT.

No TensorFlow here: the TFLite files are tiny linear classifiers (FULLY_CONNECTED over fer's 64x64 input)
written with the flatbuffer schema that ai-edge-litert ships, one FP32 and one full-integer with float
input/output like fer's converted file. Accuracy is checked against the interpreter's own outputs on
preprocessing written out here, and the label mapping against a permuted label list.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert", reason="the litert extra is in requirements.lock; make install provides it")
cv2 = pytest.importorskip("cv2")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import fer_reference as ref  # noqa: E402
from ai_edge_litert import schema_py_generated as tfl  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402
from fercomp.data import CLASS_NAMES  # noqa: E402

HW = (64, 64)  # fer's model input


# ------------------------------------------------------------------------------------ tiny models

def _tensor(shape, dtype, buffer, name, quant=None):
    t = tfl.TensorT()
    t.shape, t.type, t.buffer, t.name = list(shape), dtype, buffer, name
    if quant is not None:
        t.quantization = tfl.QuantizationParametersT()
        t.quantization.scale, t.quantization.zeroPoint = [float(quant[0])], [int(quant[1])]
    return t


def _buffer(array=None):
    b = tfl.BufferT()
    b.data = None if array is None else np.frombuffer(np.ascontiguousarray(array).tobytes(), np.uint8)
    return b


def _op(opcode, inputs, outputs, fully_connected=False):
    op = tfl.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = opcode, inputs, outputs
    if fully_connected:
        op.builtinOptionsType = tfl.BuiltinOptions.FullyConnectedOptions
        op.builtinOptions = tfl.FullyConnectedOptionsT()
    return op


def _code(builtin):
    c = tfl.OperatorCodeT()
    c.builtinCode, c.deprecatedBuiltinCode, c.version = builtin, min(builtin, 127), 1
    return c


def linear_tflite(w: np.ndarray, b: np.ndarray, int8: bool) -> bytes:
    """float32 [1,64,64,1] -> logits float32 [1,classes] = w @ x + b; int8: QUANTIZE, int8
    FULLY_CONNECTED, DEQUANTIZE inside (full-integer with float I/O, like fer's converted file)."""
    import flatbuffers

    classes = len(w)
    graph, model = tfl.SubGraphT(), tfl.ModelT()
    io = [_tensor([1, *HW, 1], tfl.TensorType.FLOAT32, 1, "input")]
    if not int8:
        model.buffers = [_buffer(), _buffer(), _buffer(w.astype(np.float32)), _buffer(b.astype(np.float32)), _buffer()]
        graph.tensors = io + [_tensor(w.shape, tfl.TensorType.FLOAT32, 2, "w"),
                              _tensor([classes], tfl.TensorType.FLOAT32, 3, "b"),
                              _tensor([1, classes], tfl.TensorType.FLOAT32, 4, "logits")]
        model.operatorCodes = [_code(tfl.BuiltinOperator.FULLY_CONNECTED)]
        graph.operators = [_op(0, [0, 1, 2], [3], fully_connected=True)]
    else:
        in_scale, w_scale = 1 / 127.0, float(np.abs(w).max()) / 127.0
        out_scale = float(np.abs(w).sum(1).max() + np.abs(b).max()) / 127.0 / 4  # logits use 1/4 of the range
        model.buffers = [_buffer(), _buffer(), _buffer(), _buffer(np.round(w / w_scale).astype(np.int8)),
                         _buffer(np.round(b / (in_scale * w_scale)).astype(np.int32)), _buffer(), _buffer()]
        graph.tensors = io + [_tensor([1, *HW, 1], tfl.TensorType.INT8, 2, "input_q", (in_scale, 0)),
                              _tensor(w.shape, tfl.TensorType.INT8, 3, "w", (w_scale, 0)),
                              _tensor([classes], tfl.TensorType.INT32, 4, "b", (in_scale * w_scale, 0)),
                              _tensor([1, classes], tfl.TensorType.INT8, 5, "logits_q", (out_scale, 0)),
                              _tensor([1, classes], tfl.TensorType.FLOAT32, 6, "logits")]
        model.operatorCodes = [_code(tfl.BuiltinOperator.QUANTIZE), _code(tfl.BuiltinOperator.FULLY_CONNECTED),
                               _code(tfl.BuiltinOperator.DEQUANTIZE)]
        graph.operators = [_op(0, [0], [1]), _op(1, [1, 2, 3], [4], fully_connected=True), _op(2, [4], [5])]
    graph.inputs, graph.outputs = [0], [len(graph.tensors) - 1]
    model.version, model.subgraphs = 3, [graph]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("fer_ref")
    rng = np.random.default_rng(0)
    w, b = rng.normal(0, 0.05, (7, HW[0] * HW[1])), rng.normal(0, 0.1, 7)
    out = {}
    for kind in ("fp32", "int8"):
        out[kind] = root / f"linear_{kind}.tflite"
        out[kind].write_bytes(linear_tflite(w, b, int8=kind == "int8"))
    return out


@pytest.fixture(scope="module")
def faces():
    """Smooth random 48x48 faces (so the bilinear resize matters) and their labels."""
    rng = np.random.default_rng(1)
    coarse = rng.integers(0, 256, (40, 6, 6), dtype=np.uint8)
    return np.stack([cv2.resize(c, (48, 48), interpolation=cv2.INTER_CUBIC) for c in coarse])


def interpreter_predictions(path: Path, faces: np.ndarray) -> np.ndarray:
    """fer's steps written out (cv2.resize 48->64 bilinear, x/255, (x-0.5)*2, NHWC), one invoke per face:
    the arg-max in fer's output order, independent of fer_reference."""
    interp = Interpreter(model_path=str(path), num_threads=1)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    pred = []
    for face in faces:
        x = (cv2.resize(face, HW, interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0 - 0.5) * 2.0
        interp.set_tensor(inp["index"], x[None, :, :, None])
        interp.invoke()
        pred.append(int(interp.get_tensor(out["index"])[0].argmax()))
    return np.array(pred)


def measure(path, faces, labels, **kw):
    return ref.measure_reference(path, faces, labels, CLASS_NAMES, threads=1, warmup=1, iters=3,
                                 batch_sizes=(1, 4), **kw)


# ---------------------------------------------------------------------------------------- tests

@pytest.mark.parametrize("kind", ["fp32", "int8"])
def test_row_accuracy_is_the_interpreters(files, faces, kind):
    pred = interpreter_predictions(files[kind], faces)
    assert len(set(pred.tolist())) >= 3  # a classifier whose outputs differ, so accuracy can be wrong
    labels = np.where(np.arange(len(pred)) % 4 == 0, (pred + 1) % 7, pred)  # 3 in 4 right
    expected = float((pred == labels).mean())  # fer's order is the canonical one: no remapping here
    rows = measure(files[kind], faces, labels, split="test (n=40)")
    assert [r["batch"] for r in rows] == [1, 4] and all(r["status"] == "ok" for r in rows)
    for r in rows:
        assert r["accuracy"] == pytest.approx(expected) and r["run"] == ref.RUN and r["backend"] == "litert"
        assert r["precision"] == kind  # full-integer with float I/O reads as int8, float as fp32
        assert r["file_bytes"] == files[kind].stat().st_size and r["p50_ms"] > 0 and r["iters"] == 3
    assert rows[1]["images_per_s"] == pytest.approx(4 * 1000 / rows[1]["p50_ms"])  # batch 4 = 4 calls, one p50


def test_labels_are_mapped_by_name(files, faces):
    pred = interpreter_predictions(files["fp32"], faces)
    labels = pred.copy()  # all right in fer's (canonical) order
    assert np.isin(pred, [3, 4]).any()  # the swap below touches some predictions
    swapped = list(ref.FER_LABELS)
    swapped[3], swapped[4] = swapped[4], swapped[3]  # a fer whose output 3 is "sad" and 4 "happy"
    to_canonical = np.array([CLASS_NAMES.index(name) for name in swapped])
    expected = float((to_canonical[pred] == labels).mean())
    assert expected < 1.0
    identity = measure(files["fp32"], faces, labels)[0]["accuracy"]
    permuted = measure(files["fp32"], faces, labels, fer_labels=swapped)[0]["accuracy"]
    assert identity == 1.0 and permuted == pytest.approx(expected)
    assert ref.label_map(ref.FER_LABELS, CLASS_NAMES).tolist() == list(range(7))  # fer's order is fercomp's
    with pytest.raises(ValueError, match="contempt"):
        ref.label_map([*ref.FER_LABELS[:6], "contempt"], CLASS_NAMES)


def test_preprocessing_is_fers(faces):
    x = ref.fer_preprocess(faces[:3])
    assert x.shape == (3, 64, 64, 1) and x.dtype == np.float32
    manual = (cv2.resize(faces[1], (64, 64)).astype(np.float32) / 255 - 0.5) * 2
    np.testing.assert_allclose(x[1, :, :, 0], manual, atol=1e-6)
    assert -1.0 <= x.min() and x.max() <= 1.0


def test_missing_file_is_a_not_measured_record(tmp_path, faces):
    missing = tmp_path / "nope.tflite"

    def must_not_start(*a, **k):
        raise AssertionError("no worker for a missing file")

    for rows in (measure(missing, faces, np.zeros(len(faces), int)),
                 ref.measure_isolated(missing, data="unused", threads=2, warmup=1, iters=2, run=must_not_start)):
        assert len(rows) == 2 and all(r["status"] == "unavailable" and r["p50_ms"] is None and r["accuracy"] is None
                            for r in rows)
        assert all("not measured" in r["reason"] and str(missing) in r["reason"] and "run_peers.py" in r["reason"]
                   for r in rows)


def test_a_failed_worker_is_an_error_record(files):
    def failing(*args, **kwargs):
        return subprocess.CompletedProcess(args[0], 1, stdout="", stderr="Traceback ...\nRuntimeError: boom\n")

    rows = ref.measure_isolated(files["fp32"], data="unused", threads=2, warmup=1, iters=2, run=failing)
    assert [r["status"] for r in rows] == ["error", "error"] and "RuntimeError: boom" in rows[0]["reason"]


def test_isolated_worker_measures_the_data_split(files, faces, tmp_path):
    """The worker process loads the split through fercomp's loader and returns the in-process figures."""
    pred = interpreter_predictions(files["int8"], faces)
    labels = np.where(np.arange(len(pred)) % 3 == 0, (pred + 2) % 7, pred)
    data = tmp_path / "tiny.npz"
    np.savez(data, train_x=faces, train_y=labels, val_x=faces, val_y=labels, test_x=faces, test_y=labels,
             class_names=np.array(CLASS_NAMES))
    rows = ref.measure_isolated(files["int8"], data=str(data), threads=1, warmup=1, iters=2, batch_sizes=(1, 2))
    assert [(r["batch"], r["status"]) for r in rows] == [(1, "ok"), (2, "ok")], rows
    assert rows[0]["accuracy"] == pytest.approx(float((pred == labels).mean()))
    assert rows[0]["split"].endswith(f"test (n={len(faces)})") and rows[0]["peak_rss_mb"] > 0


def _row(run, batch, p50, acc, status="ok"):
    return {"run": run, "backend": "litert", "precision": "int8", "batch": batch, "p50_ms": p50, "accuracy": acc,
            "status": status, "images_per_s": batch * 1000 / p50, "reason": None, "file_bytes": 100}


def test_compare_and_markdown_use_the_measured_reference():
    import runtimes

    fer = [_row(ref.RUN, 1, 0.2, 0.65), _row(ref.RUN, 64, 12.8, 0.65)]
    ours = [_row("tiny", 1, 0.1, 0.66), _row("tiny", 1, 0.3, 0.66), _row("tiny", 64, 9.0, 0.66),
            _row("big", 1, 0.5, 0.64)]
    vs = ref.compare(ours, fer)
    assert vs["tiny"]["latency_ratio"] == pytest.approx(0.1 / 0.2) and vs["tiny"]["beats_latency"]
    assert vs["tiny"]["accuracy_delta_pt"] == pytest.approx(1.0) and vs["tiny"]["beats_accuracy"]
    assert vs["big"]["latency_ratio"] == pytest.approx(0.5 / 0.2) and not vs["big"]["beats_latency"]
    assert vs["big"]["accuracy_delta_pt"] == pytest.approx(-1.0) and not vs["big"]["beats_accuracy"]

    result = {"threads": 2, "note": "", "host": {"cpu": "cpu"}, "rows": ours, "best": runtimes.best_per_model(ours),
              "vs_reference": vs, "reference": {"what": "fer int8", "path": "x.tflite", "sha256": "ab" * 32,
                                                "rows": fer, "label_map": list(range(7)), "label_map_is_identity": True}}
    md = runtimes.markdown(result)
    assert "measured in this run" in md and "0.200 ms" in md and f"| {ref.RUN} | litert | int8 | 64 |" in md
    assert "beats on latency: yes (0.50x" in md and "beats on latency: no (2.50x" in md
    assert "on accuracy: yes (+1.00 pt)" in md and "on accuracy: no (-1.00 pt)" in md
    assert f"{runtimes.ISSUE_QUOTE['p50_ms']} ms" in md  # the figure survives only as a note

    missing = ref.not_measured("x.tflite", "x.tflite does not exist; make it", 2)
    result.update(vs_reference=ref.compare(ours, missing), reference={**result["reference"], "rows": missing})
    md = runtimes.markdown(result)
    assert "Reference: fer int8: not measured: x.tflite does not exist" in md
    assert "- tiny: not compared (reference not measured)" in md and "measured in this run" not in md
