"""The classifier and the face detector on a CPU board (Raspberry Pi, x86 mini-PC) without fercomp.

`EdgeModel` runs the bundle's classifier in its runtime, chosen by the file: LiteRT (`.tflite`,
the `ai-edge-litert` package, XNNPACK; a full-integer INT8 model is fed its quantized input), NCNN
(`.ncnn.param` + `.ncnn.bin`, the `ncnn` package, one image per call) or OpenVINO (`.xml` + `.bin`,
CPU plugin). `OnnxDetector` runs BlazeFace's `detector.onnx` with ONNX Runtime, or with OpenVINO
where ONNX Runtime is not installed (OpenVINO reads ONNX directly). Preprocessing is
`trt_runtime.preprocess`, the function every fercomp backend uses (only its numpy part is used here).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FORMATS = {".tflite": "litert", ".param": "ncnn", ".xml": "openvino"}


def format_of(path: str | Path) -> str:
    suffix = Path(path).suffix
    if suffix not in FORMATS:
        raise ValueError(f"{path}: not a .tflite, .ncnn.param or .xml model")
    return FORMATS[suffix]


def run_litert(interpreter, input_detail: dict, output_detail: dict, x: np.ndarray) -> np.ndarray:
    """One LiteRT invocation on float32 x: a full-integer model gets x quantized as it was
    calibrated, and its output dequantized. fercomp's LiteRT predictor calls this too."""
    if input_detail["dtype"] != np.float32:
        scale, zero = input_detail["quantization"]
        info = np.iinfo(input_detail["dtype"])
        x = np.clip(np.round(x / scale) + zero, info.min, info.max).astype(input_detail["dtype"])
    interpreter.set_tensor(input_detail["index"], x)
    interpreter.invoke()
    y = interpreter.get_tensor(output_detail["index"])
    if output_detail["dtype"] != np.float32:
        scale, zero = output_detail["quantization"]
        y = (y.astype(np.float32) - zero) * scale
    return y.astype(np.float32, copy=False)


class EdgeModel:
    """A classifier file in its CPU runtime: `infer(x)` takes preprocessed float32 [N, C, H, W]
    and returns float32 logits [N, classes]."""

    def __init__(self, path: str | Path, meta: dict, threads: int | None = None):
        self.path = Path(path)
        self.format = format_of(self.path)
        self.meta = meta
        getattr(self, f"_open_{self.format}")(threads)

    # LiteRT: fixed batch (1); full-integer models take int8 input with the tensor's scale and zero point
    def _open_litert(self, threads):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:  # the slim runtime some boards install instead
            from tflite_runtime.interpreter import Interpreter
        self.interpreter = Interpreter(model_path=str(self.path), num_threads=threads or None)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.fixed_batch = int(self.input["shape"][0])
        self._one = self._run_litert

    def _run_litert(self, x: np.ndarray) -> np.ndarray:
        return run_litert(self.interpreter, self.input, self.output, x)

    # NCNN: no batch dimension; fp16 storage only for an fp16 export, so an fp32 one computes in fp32
    def _open_ncnn(self, threads):
        import ncnn

        self.ncnn = ncnn
        net = ncnn.Net()
        fp16 = self.meta.get("precision") == "fp16"
        net.opt.use_fp16_storage = net.opt.use_fp16_packed = net.opt.use_fp16_arithmetic = fp16
        net.opt.use_bf16_storage = False
        if threads:
            net.opt.num_threads = int(threads)
        weights = self.path.with_name(self.path.name[: -len(".param")] + ".bin")
        if net.load_param(str(self.path)) != 0 or net.load_model(str(weights)) != 0:
            raise RuntimeError(f"{self.path}: ncnn cannot load it with {weights.name}")
        self.net = net
        self.fixed_batch = 1
        self._one = self._run_ncnn

    def _run_ncnn(self, x: np.ndarray) -> np.ndarray:
        with self.net.create_extractor() as ex:
            ex.input(self.meta.get("input_name", "in0"), self.ncnn.Mat(x[0]))
            status, out = ex.extract(self.meta.get("output_name", "out0"))
        if status != 0:
            raise RuntimeError(f"{self.path}: ncnn failed to run it (status {status})")
        return np.array(out, dtype=np.float32).reshape(1, -1)

    # OpenVINO: any batch; f32 unless the caller lets it pick (bf16 on CPUs that have it)
    def _open_openvino(self, threads, precision: str = "f32"):
        import openvino as ov

        config = {"INFERENCE_PRECISION_HINT": precision}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        core = ov.Core()
        self.request = core.compile_model(core.read_model(str(self.path)), "CPU", config).create_infer_request()
        self.fixed_batch = None
        self._one = self._run_openvino

    def _run_openvino(self, x: np.ndarray) -> np.ndarray:
        self.request.infer({0: x})
        return self.request.get_output_tensor(0).data.astype(np.float32)

    def infer(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        b = self.fixed_batch
        if b is None or len(x) == b:
            return self._one(x)
        out = []
        for i in range(0, len(x), b):
            chunk = x[i : i + b]
            n = len(chunk)
            if n < b:
                chunk = np.concatenate([chunk, np.zeros((b - n, *chunk.shape[1:]), np.float32)])
            out.append(self._one(np.ascontiguousarray(chunk))[:n])
        return np.concatenate(out) if out else np.zeros((0, len(self.meta["class_names"])), np.float32)

    def close(self) -> None:
        pass

    def __enter__(self) -> "EdgeModel":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class OnnxDetector:
    """BlazeFace's ONNX: `infer_all(x)` -> [regressors, scores], with ONNX Runtime or OpenVINO."""

    def __init__(self, path: str | Path, threads: int | None = None):
        try:
            import onnxruntime as ort

            options = ort.SessionOptions()
            if threads:
                options.intra_op_num_threads = int(threads)
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            name = session.get_inputs()[0].name
            self.runtime = "onnxruntime"
            self._run = lambda x: session.run(None, {name: x})
        except ImportError:
            import openvino as ov

            core = ov.Core()
            compiled = core.compile_model(core.read_model(str(path)), "CPU",
                                          {"INFERENCE_PRECISION_HINT": "f32"})
            request = compiled.create_infer_request()
            self.runtime = "openvino"

            def run(x):
                request.infer({0: x})
                return [request.get_output_tensor(i).data.copy() for i in range(len(compiled.outputs))]

            self._run = run

    def infer_all(self, x: np.ndarray) -> list[np.ndarray]:
        return list(self._run(np.ascontiguousarray(x, dtype=np.float32)))

    def __enter__(self) -> "OnnxDetector":
        return self

    def __exit__(self, *exc) -> None:
        pass
