"""LiteRT (TFLite): the run's PyTorch model converted with litert-torch to `model.tflite`, run by the
LiteRT interpreter with its default XNNPACK delegate, and verified against PyTorch.

A float run gives an FP32 model. A quantized run gives a full-integer INT8 model (int8 weights,
activations, input and output) of its float parent: PT2E post-training quantization (per-channel
symmetric weights), calibrated on the same number of training images the run's own quantization
used. The model has a fixed batch of 1 (litert-torch cannot export a dynamic batch, and XNNPACK
cannot resize the exported reshape); a larger batch is run one image at a time, which is how a
phone or a Raspberry Pi runs it.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import ModelError
from .board.edge_runtime import run_litert
from .edge import labelled_images, metadata_path, publish, read_metadata, staging_dir, verify, write_metadata
from .extras import require

LITERT_FILE = "model.tflite"
DEFAULT_CALIB = 512


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """The converter prints its progress and MLIR/absl logs on the C stdout and stderr: mute both."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


class LiteRTPredictor:
    """LiteRT interpreter (XNNPACK) over a `.tflite` written by `fercomp export --format litert`."""

    backend = "litert"

    def __init__(self, path: str | Path, *, threads: int | None = None, batch_size: int = 256,
                 meta: dict[str, Any] | None = None):
        from .runtime import spec_from_metadata

        require("ai_edge_litert")
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        meta = meta if meta is not None else read_metadata(self.path)
        self.spec = spec_from_metadata(meta)
        self.class_names = [str(name) for name in meta["class_names"]]
        self.precision = meta.get("precision", "fp32")
        self.batch_size = batch_size
        try:
            with quiet():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
                self.interpreter = Interpreter(model_path=str(self.path), num_threads=threads or None)
                self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{self.path}: LiteRT cannot load it ({exc.__class__.__name__}: "
                             f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); export it again "
                             "with `fercomp export --format litert`") from None
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.fixed_batch = int(self.input["shape"][0])

    def _run(self, x: np.ndarray) -> np.ndarray:
        return run_litert(self.interpreter, self.input, self.output, x)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Preprocessed float32 [N, C, H, W] -> logits [N, classes], `fixed_batch` images per call."""
        b = self.fixed_batch
        if len(x) == b:
            return self._run(np.ascontiguousarray(x, dtype=np.float32))
        out = []
        for i in range(0, len(x), b):
            chunk = np.ascontiguousarray(x[i : i + b], dtype=np.float32)
            n = len(chunk)
            if n < b:
                chunk = np.concatenate([chunk, np.zeros((b - n, *chunk.shape[1:]), np.float32)])
            out.append(self._run(chunk)[:n])
        return np.concatenate(out)

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        from .runtime import batched_proba

        return batched_proba(self, images)


def _calibration(run, cfg) -> np.ndarray:
    """Training images (uint8) for the INT8 activation ranges: as many as the run's own PTQ used."""
    from ..data.run_data import calibration_images, data_for_run

    count = int((run.manifest.get("quantize") or {}).get("calib_images") or DEFAULT_CALIB)
    return calibration_images(data_for_run(run, cfg.data), count, seed=0)


def convert(model, spec: dict[str, Any], target: Path, calibration: np.ndarray | None = None) -> None:
    """PyTorch -> .tflite at batch 1: FP32, or full-integer INT8 calibrated on `calibration` (uint8 images)."""
    import torch

    with quiet():
        litert_torch = require("litert_torch")
    from .runtime import preprocess

    h, w = spec["input_size"]
    example = (torch.zeros(1, spec.get("in_chans", 1), h, w),)
    model = model.eval()
    with quiet():
        if calibration is None:
            edge = litert_torch.convert(model, example)
        else:
            from litert_torch.quantize import pt2e_quantizer, quant_config
            from torchao.quantization.pt2e import quantize_pt2e

            quantizer = pt2e_quantizer.PT2EQuantizer().set_global(
                pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True))
            prepared = quantize_pt2e.prepare_pt2e(torch.export.export(model, example).module(), quantizer)
            with torch.no_grad():
                for x in preprocess(calibration, spec):
                    prepared(torch.from_numpy(x[None]))
            quantized = quantize_pt2e.convert_pt2e(prepared, fold_quantize=False)
            edge = litert_torch.convert(quantized, example, quant_config=quant_config.QuantConfig(pt2e_quantizer=quantizer))
        edge.export(str(target))


def export_litert(run, cfg, reference, log) -> dict[str, Any]:
    """`model.tflite` from the run's PyTorch model (a quantized run: its float parent, INT8), kept only
    if it passes the export gate."""
    with quiet():  # importing the converter logs oneDNN / absl notices on the C stderr
        require("litert_torch")  # before any work
    require("ai_edge_litert")
    from .onnx_export import onnx_metadata

    int8 = run.stage == "quantize"
    images, labels, where = labelled_images(run, cfg.parity_images, cfg.data)
    calibration = _calibration(run, cfg) if int8 else None
    precision = "int8" if int8 else "fp32"
    meta = {**onnx_metadata(reference.spec, str(run.path.resolve()), precision), "format": "litert",
            "input_layout": "NCHW float32 batch 1: (pixel/255 - mean) / std (an INT8 model quantizes it with "
                            "the input tensor's scale and zero point); output: logits"}
    target = run.path / LITERT_FILE
    log(f"converting {run.name if not int8 else run.parent.name + ' (float parent)'} to LiteRT ({precision}"
        f"{f', calibrated on {len(calibration)} training images' if int8 else ''})")
    with staging_dir(run.path) as tmp:
        path = tmp / LITERT_FILE
        convert(reference.model, reference.spec, path, calibration)
        write_metadata(path, meta)
        candidate = LiteRTPredictor(path, threads=cfg.threads, meta=meta)
        result = verify(reference, candidate, images, labels, int8=int8, where=where, target=target)
        log(f"LiteRT vs PyTorch on {len(images)} images ({where}): top-1 agreement {result['top1_agreement']:.3%}, "
            f"accuracy {result['accuracy']:.2%} (torch {result['reference_accuracy']:.2%})")
        hashes = publish([metadata_path(path), path], run.path)
    import ai_edge_litert

    return {"file": LITERT_FILE, "files": hashes, "bytes": target.stat().st_size, "precision": precision,
            "batch": 1, "calibration_images": len(calibration) if int8 else None, "delegate": "XNNPACK",
            "ai_edge_litert": getattr(ai_edge_litert, "__version__", None), "parity": result}
