"""OpenVINO: the run's ONNX (float, or the QDQ INT8 of a quantized run) as an IR (`model.xml` +
`model.bin`), verified against PyTorch, and a predictor over it on the CPU plugin.

OpenVINO picks its own inference precision: on CPUs with bf16 units (AMX, AVX512-BF16) the
default is bf16, elsewhere f32. `precision="f32"` forces f32; the predictor says which one the
compiled model actually uses (`inference_precision`, read back from INFERENCE_PRECISION_HINT).
The IR keeps FP32 weights (no FP16 compression), so it is the same model the ONNX is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, ModelError
from ..runs import ONNX_FILE
from .edge import labelled_images, metadata_path, publish, read_metadata, staging_dir, verify, write_metadata
from .extras import require

OPENVINO_FILE = "model.xml"
WEIGHTS_FILE = "model.bin"
PRECISIONS = ("auto", "f32")


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ConfigError(f"--ov-precision must be one of {', '.join(PRECISIONS)} (got {precision!r})")


def convert(onnx_path: Path, xml_path: Path) -> None:
    """ONNX -> OpenVINO IR with FP32 weights (QDQ pairs become FakeQuantize: INT8 kernels on the CPU)."""
    ov = require("openvino")
    try:
        model = ov.convert_model(str(onnx_path))
    except Exception as exc:  # OpenVINO's converter errors: an unreadable or unsupported ONNX
        raise ModelError(f"{onnx_path}: OpenVINO cannot convert it ({exc.__class__.__name__}: "
                         f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
    ov.save_model(model, str(xml_path), compress_to_fp16=False)


class OpenVINOPredictor:
    """OpenVINO CPU backend over an IR written by `fercomp export --format openvino`."""

    backend = "openvino"

    def __init__(self, path: str | Path, *, threads: int | None = None, batch_size: int = 256,
                 precision: str = "auto", meta: dict[str, Any] | None = None):
        from .runtime import spec_from_metadata

        ov = require("openvino")
        check_precision(precision)
        self.path = Path(path)
        meta = meta if meta is not None else read_metadata(self.path)
        self.spec = spec_from_metadata(meta)
        self.class_names = [str(name) for name in meta["class_names"]]
        self.precision = meta.get("precision", "fp32")  # of the model: fp32 or int8
        self.batch_size = batch_size
        config: dict[str, Any] = {}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        if precision == "f32":
            config["INFERENCE_PRECISION_HINT"] = "f32"
        core = ov.Core()
        try:
            self.compiled = core.compile_model(core.read_model(str(self.path)), "CPU", config)
        except Exception as exc:  # a damaged or foreign IR
            raise ModelError(f"{self.path}: OpenVINO cannot load it ({exc.__class__.__name__}: "
                             f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); export it again "
                             "with `fercomp export --format openvino`") from None
        self.requested_precision = precision
        self.inference_precision = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self.threads = self.compiled.get_property("INFERENCE_NUM_THREADS")
        self.request = self.compiled.create_infer_request()

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Preprocessed float32 [N, C, H, W] -> logits [N, classes]."""
        self.request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
        return self.request.get_output_tensor(0).data.copy()

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        from .runtime import batched_proba

        return batched_proba(self, images)


def export_openvino(run, cfg, reference, log) -> dict[str, Any]:
    """`model.xml` + `model.bin` from the run's verified ONNX, kept only if it passes the export gate."""
    ov = require("openvino")  # before any work
    check_precision(cfg.ov_precision)
    from .onnx_export import read_metadata as onnx_metadata

    onnx_path = run.path / ONNX_FILE
    int8 = run.stage == "quantize"
    meta = {**onnx_metadata(onnx_path), "precision": "int8" if int8 else "fp32", "format": "openvino",
            "openvino": ov.__version__}
    images, labels, where = labelled_images(run, cfg.parity_images, cfg.data)
    target = run.path / OPENVINO_FILE
    log(f"converting {ONNX_FILE} to OpenVINO IR ({meta['precision']}, OpenVINO {ov.__version__})")
    with staging_dir(run.path) as tmp:
        xml = tmp / OPENVINO_FILE
        convert(onnx_path, xml)
        write_metadata(xml, meta)
        candidate = OpenVINOPredictor(xml, threads=cfg.threads, precision=cfg.ov_precision, meta=meta)
        result = verify(reference, candidate, images, labels, int8=int8, where=where, target=target,
                        reduced=candidate.inference_precision != "f32")
        log(f"OpenVINO ({candidate.inference_precision}) vs PyTorch on {len(images)} images ({where}): top-1 "
            f"agreement {result['top1_agreement']:.3%}, accuracy {result['accuracy']:.2%} "
            f"(torch {result['reference_accuracy']:.2%})")
        hashes = publish([tmp / WEIGHTS_FILE, metadata_path(xml), xml], run.path)
    return {"file": OPENVINO_FILE, "files": hashes, "bytes": (run.path / WEIGHTS_FILE).stat().st_size,
            "precision": meta["precision"], "ov_precision": cfg.ov_precision,
            "inference_precision": candidate.inference_precision, "openvino": ov.__version__, "parity": result}
