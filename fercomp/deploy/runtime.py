"""One predictor interface over the backends: images in, class probabilities out.

Every backend shares `preprocess` (uint8 face crops -> normalised float tensors) so a number
measured on one backend means the same thing on another. `evaluate`, `bench`, `predict` and
the parity checks all go through `load(path).predict_proba(images)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import torch

from ..errors import ConfigError
from ..runs import ONNX_FILE, Run, load_checkpoint


class Predictor(Protocol):
    backend: str
    class_names: list[str]
    spec: dict[str, Any]

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """uint8 grayscale images [N, H, W] (any H, W) -> float32 probabilities [N, C]."""


def preprocess(images: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """uint8 [N, H, W] -> float32 [N, 1, h, w] at the model's input size, normalised as in training."""
    images = np.asarray(images)
    if images.ndim == 2:
        images = images[None]
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ConfigError(f"expected uint8 grayscale images [N,H,W], got {images.dtype} {images.shape}")
    h, w = spec["input_size"]
    if images.shape[1:] != (h, w):
        images = np.stack([cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA) for im in images])
    norm = spec["normalization"]
    x = (images.astype(np.float32) / 255.0 - norm["mean"]) / norm["std"]
    return x[:, None]


class TorchPredictor:
    """PyTorch eager backend over a run folder or a fercomp checkpoint."""

    backend = "torch"

    def __init__(self, model: torch.nn.Module, spec: dict[str, Any], batch_size: int = 256):
        model.eval()  # exported (QAT) graphs return None from eval(), so don't chain it
        self.model = model
        self.spec = spec
        self.class_names = list(spec["class_names"])
        self.batch_size = batch_size

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                x = torch.from_numpy(preprocess(images[start : start + self.batch_size], self.spec))
                out.append(torch.softmax(self.model(x), dim=1).numpy())
        if not out:
            return np.zeros((0, len(self.class_names)), dtype=np.float32)
        return np.concatenate(out).astype(np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class OnnxPredictor:
    """ONNX Runtime backend (CPU) over an .onnx file carrying fercomp metadata."""

    backend = "onnxruntime"

    def __init__(self, path: str | Path, *, threads: int | None = None, batch_size: int = 256):
        import onnxruntime as ort

        from .onnx_export import read_metadata

        self.path = Path(path)
        meta = read_metadata(self.path)
        if not meta:
            raise ConfigError(f"{self.path}: no fercomp metadata (export it with `fercomp export`)")
        self.spec = {"name": meta["model"], "class_names": meta["class_names"], "input_size": meta["input_size"],
                     "in_chans": meta.get("in_chans", 1), "normalization": meta["normalization"]}
        self.precision = meta.get("precision", "fp32")
        self.class_names = list(meta["class_names"])
        self.batch_size = batch_size
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        out = [
            softmax(self.session.run(None, {self.input_name: preprocess(images[i : i + self.batch_size], self.spec)})[0])
            for i in range(0, len(images), self.batch_size)
        ]
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, len(self.class_names)), np.float32)


BACKENDS = ("torch", "onnxruntime")


def load(
    path: str | Path, *, backend: str | None = None, threads: int | None = None, batch_size: int = 256
) -> Predictor:
    """A predictor for a run folder, a `.pt` checkpoint or an `.onnx` file.

    A run folder's default backend is its deliverable: ONNX Runtime for a quantized run (its
    INT8 model exists only as ONNX), PyTorch otherwise; `backend` picks another one.
    """
    path = Path(path)
    if backend is not None and backend not in BACKENDS:
        raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)} (got {backend!r})")
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads must be >= 1 (got {threads})")
        torch.set_num_threads(threads)
    if path.is_dir():
        run = Run.load(path)
        onnx_file = run.path / ONNX_FILE
        if backend == "onnxruntime" or (backend is None and run.stage == "quantize"):
            if not onnx_file.exists():
                raise ConfigError(f"{run.path}: no {ONNX_FILE} here (export the run first)")
            return OnnxPredictor(onnx_file, threads=threads, batch_size=batch_size)
        model, spec = run.load_model()
        return TorchPredictor(model, spec, batch_size=batch_size)
    if not path.exists():
        raise ConfigError(f"{path}: no such model file or run folder")
    if path.suffix == ".pt":
        model, spec = load_checkpoint(path)
        return TorchPredictor(model, spec, batch_size=batch_size)
    if path.suffix == ".onnx":
        return OnnxPredictor(path, threads=threads, batch_size=batch_size)
    raise ConfigError(f"{path}: unsupported model file (expected a run folder, a .pt or an .onnx)")
