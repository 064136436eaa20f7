"""One predictor interface over the backends: images in, class probabilities out.

Every backend shares `preprocess` (uint8 face crops -> normalised float tensors) so a number
measured on one backend means the same thing on another. `evaluate`, `bench`, `predict` and
the parity checks all go through `load(path).predict_proba(images)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from .. import zoo
from ..device import resolve_device
from ..errors import ConfigError, ModelError
from ..runs import ONNX_FILE, Run, load_checkpoint
from .board.trt_runtime import preprocess as board_preprocess
from .board.trt_runtime import softmax
from .formats import EDGE, backend_for_file, entry_file, open_predictor


class Predictor(Protocol):
    backend: str
    class_names: list[str]
    spec: dict[str, Any]

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Preprocessed float32 [N, C, H, W] -> logits [N, C]."""

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """uint8 grayscale images [N, H, W] (any H, W) -> float32 probabilities [N, C]."""


def preprocess(images: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """uint8 [N, H, W] -> float32 [N, 1, h, w] at the model's input size, normalised as in training.

    The arithmetic is the board runtime's own function, so the Jetson bundle preprocesses
    exactly as every backend here does.
    """
    images = np.asarray(images)
    if images.ndim == 2:
        images = images[None]
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ConfigError(f"expected uint8 grayscale images [N,H,W], got {images.dtype} {images.shape}")
    return board_preprocess(images, spec)


def batched_proba(predictor, images: np.ndarray) -> np.ndarray:
    """Probabilities for uint8 images, preprocessed and run `predictor.batch_size` at a time."""
    out = [softmax(predictor.forward(preprocess(images[i : i + predictor.batch_size], predictor.spec)))
           for i in range(0, len(images), predictor.batch_size)]
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, len(predictor.class_names)), np.float32)


class TorchPredictor:
    """PyTorch eager backend over a run folder or a fercomp checkpoint."""

    backend = "torch"

    def __init__(self, model: torch.nn.Module, spec: dict[str, Any], batch_size: int = 256,
                 device: torch.device | None = None):
        model.eval()  # exported (QAT) graphs return None from eval(), so don't chain it
        if device is not None:
            model.to(device)
        self.model = model
        first = next(iter(model.parameters()), None)
        self.device = first.device if first is not None else torch.device("cpu")  # a model trained on a GPU stays there
        self.spec = spec
        self.class_names = list(spec["class_names"])
        self.batch_size = batch_size
        self.dtype = torch.float32

    def half(self) -> "TorchPredictor":
        """fp16 weights and inputs (a GPU's half-precision path; `bench` times it on CUDA)."""
        self.model.half()
        self.dtype = torch.float16
        return self

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Preprocessed float32 [N, C, H, W] -> logits [N, classes] (what `bench` times)."""
        with torch.inference_mode():
            return self.model(torch.from_numpy(x).to(self.device, self.dtype)).float().cpu().numpy()

    def forward_timer(self, x: np.ndarray):
        """On a GPU: a call running the model on `x` staged on the device once (no copies), for
        CUDA-event timing; None on the CPU, where `forward` already is the compute."""
        if self.device.type != "cuda":
            return None
        staged = torch.from_numpy(x).to(self.device, self.dtype)

        def call():
            with torch.inference_mode():
                return self.model(staged)

        return call

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        return batched_proba(self, images)


def spec_from_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """The preprocessing/labelling spec a runtime needs, from exported metadata."""
    return {"name": meta["model"], "class_names": meta["class_names"], "input_size": meta["input_size"],
            "in_chans": meta.get("in_chans", 1), "normalization": meta["normalization"]}


class OnnxPredictor:
    """ONNX Runtime backend (CPU) over an .onnx file carrying fercomp metadata."""

    backend = "onnxruntime"

    def __init__(self, path: str | Path, *, threads: int | None = None, batch_size: int = 256):
        import onnxruntime as ort

        from .onnx_export import read_metadata

        self.path = Path(path)
        try:
            meta = read_metadata(self.path)
        except Exception as exc:  # protobuf / JSON errors of a damaged or foreign file
            raise ModelError(f"{self.path}: not a readable ONNX model ({exc.__class__.__name__}); "
                             "export it again with `fercomp export`") from None
        if not meta:
            raise ConfigError(f"{self.path}: no fercomp metadata (export it with `fercomp export`)")
        try:
            self.spec = spec_from_metadata(meta)
            self.class_names = [str(name) for name in meta["class_names"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{self.path}: damaged fercomp metadata ({exc.__class__.__name__}: {exc}); "
                             "export it again with `fercomp export`") from None
        self.precision = meta.get("precision", "fp32")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ONNX Runtime's pybind errors (InvalidProtobuf, Fail, InvalidGraph, ...)
            raise ModelError(f"{self.path}: ONNX Runtime cannot load it ({exc.__class__.__name__}: "
                             f"{str(exc).splitlines()[0][:200]})") from None
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        # an ONNX exported with a fixed batch takes exactly that many images per call
        self.fixed_batch = first.shape[0] if isinstance(first.shape[0], int) else None
        self.batch_size = self.fixed_batch or batch_size

    def forward(self, x: np.ndarray) -> np.ndarray:
        n = len(x)
        if self.fixed_batch and n < self.fixed_batch:
            x = np.concatenate([x, np.zeros((self.fixed_batch - n, *x.shape[1:]), x.dtype)])
        if self.fixed_batch and n > self.fixed_batch:
            return np.concatenate([self.forward(x[i : i + self.fixed_batch]) for i in range(0, n, self.fixed_batch)])
        try:
            return self.session.run(None, {self.input_name: x})[0][:n]
        except Exception as exc:  # a damaged graph can load and fail only when it runs (e.g. a Reshape)
            raise ModelError(f"{self.path}: ONNX Runtime cannot run it ({exc.__class__.__name__}: "
                             f"{str(exc).splitlines()[0][:200]}); export it again with `fercomp export`") from None

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        return batched_proba(self, images)


ENGINE_FILE = "model.engine"


def engine_metadata_path(engine: Path) -> Path:
    """Where an engine's metadata lives: `<name>.json` beside it (TensorRT plans carry none)."""
    return engine.with_suffix(".json")


class TensorRTPredictor:
    """TensorRT backend over a `.engine` built by `fercomp export --trt` (or the Jetson bundle).

    Holds a CUDA stream and device memory until `close()`; use it as a context manager."""

    backend = "tensorrt"

    def __init__(self, path: str | Path, *, batch_size: int = 256, meta: dict[str, Any] | None = None):
        from .board.trt_runtime import TrtModel, load_metadata
        from .tensorrt import TensorRTUnavailable, require_tensorrt

        self.path = Path(path)
        trt = require_tensorrt()
        if meta is None:
            meta_path = engine_metadata_path(self.path)
            if not meta_path.is_file():
                raise ConfigError(f"{self.path}: its metadata {meta_path.name} is missing "
                                  "(rebuild with `fercomp export --trt`)")
            meta = load_metadata(meta_path)
        self.spec = spec_from_metadata(meta)
        self.precision = meta.get("precision", "fp32")
        self.class_names = list(meta["class_names"])
        self.batch_size = batch_size
        try:
            self.model = TrtModel(self.path, trt=trt)
        except RuntimeError as exc:  # no libcudart, no GPU, an engine from another TensorRT: say so in one line
            raise TensorRTUnavailable(f"{self.path}: {exc}") from None

    def close(self) -> None:
        """Release the engine's CUDA stream and device buffers (idempotent)."""
        self.model.close()

    def __enter__(self) -> "TensorRTPredictor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Preprocessed float32 [N, C, H, W] -> float32 logits (an fp16-IO engine is converted both ways)."""
        return self.model.infer(x)

    def forward_timer(self, x: np.ndarray):
        """A call that runs the engine on `x` already on the GPU, without host-device copies; None when
        `x` is larger than one engine call (then there is no single copy-free call to time)."""
        if len(x) > self.model.max_batch:
            return None
        self.model.stage(x)
        return self.model.execute

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        return batched_proba(self, images)


BACKENDS = ("torch", "onnxruntime", "tensorrt", *EDGE)


def load(
    path: str | Path, *, backend: str | None = None, threads: int | None = None, batch_size: int = 256,
    device: str | None = None,
    ov_precision: str = "auto",
) -> Predictor:
    """A predictor for a run folder, a `.pt` checkpoint, an `.onnx`, a TensorRT `.engine` or an
    edge format's file (see `formats.EDGE`: OpenVINO `.xml`, ...).

    A run folder's default backend is its deliverable: ONNX Runtime for a quantized run (its
    INT8 model exists only as ONNX), PyTorch otherwise; `backend` picks another one. `device`
    (--device: auto, cpu, cuda[:N], mps) places the PyTorch backend; checkpoints load on the CPU
    first, so a model trained anywhere runs anywhere.
    `ov_precision` (auto | f32) is OpenVINO's inference precision.
    """
    # An unavailable --device fails before anything is loaded; `auto` is resolved for the torch backend only.
    placement = resolve_device(device) if device is not None else None
    path = zoo.resolve(path)
    if backend is not None and backend not in BACKENDS:
        raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)} (got {backend!r})")
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads must be >= 1 (got {threads})")
        torch.set_num_threads(threads)
    if path.is_dir():
        run = Run.load(path)
        if backend == "tensorrt":
            if not (run.path / ENGINE_FILE).exists():
                raise ConfigError(f"{run.path}: no {ENGINE_FILE} here (build it with `fercomp export {run.path} --trt`)")
            return TensorRTPredictor(run.path / ENGINE_FILE, batch_size=batch_size)
        if backend in EDGE:
            if not (run.path / entry_file(backend)).exists():
                raise ConfigError(f"{run.path}: no {entry_file(backend)} here (export it with "
                                  f"`fercomp export {run.path} --format {backend}`)")
            return open_predictor(backend, run.path / entry_file(backend), threads=threads, batch_size=batch_size,
                                  ov_precision=ov_precision)
        onnx_file = run.path / ONNX_FILE
        if backend == "onnxruntime" or (backend is None and run.stage == "quantize"):
            if not onnx_file.exists():
                raise ConfigError(f"{run.path}: no {ONNX_FILE} here (export it with `fercomp export {run.path}`)")
            return OnnxPredictor(onnx_file, threads=threads, batch_size=batch_size)
        model, spec = run.load_model()
        return TorchPredictor(model, spec, batch_size=batch_size, device=placement or resolve_device(None))
    if not path.exists():
        raise ConfigError(f"{path}: no such model file or run folder")
    if path.suffix == ".pt":
        model, spec = load_checkpoint(path)
        return TorchPredictor(model, spec, batch_size=batch_size, device=placement or resolve_device(None))
    if path.suffix == ".onnx":
        return OnnxPredictor(path, threads=threads, batch_size=batch_size)
    if path.suffix in (".engine", ".plan"):
        return TensorRTPredictor(path, batch_size=batch_size)
    if backend_for_file(path):
        return open_predictor(backend_for_file(path), path, threads=threads, batch_size=batch_size,
                              ov_precision=ov_precision)
    raise ConfigError(f"{path}: unsupported model file (expected a run folder, a .pt, an .onnx, an .engine "
                      f"or an edge format's {', '.join(entry_file(b) for b in EDGE)})")
