"""`fercomp quantize RUN --mode ptq|qat`: an INT8 QDQ ONNX model, measured in ONNX Runtime.

Placement matters more than anything here: ONNX Runtime runs INT8 faster than FP32 only when
Q/DQ pairs surround every conv (so it fuses QLinearConv) and every residual add (QLinearAdd).
ONNX Runtime's own static quantizer (`onnxruntime.quantization.quantize_static`, QDQ format)
places them that way for the operators it can run in INT8 — conv, add, pools, the SE block's
mul and sigmoid, the classifier gemm — after `quant_pre_process` folds BatchNorm into the convs.
Weights are per-channel symmetric INT8 (integers in [-64, 64] unless `--weight-range full`:
see weight_range.py); activations are per-tensor, in one of two encodings:

- `u8-asym` (default, for ONNX Runtime on CPU): UINT8 with a zero point. A ReLU followed by Q
  with zero point at the range minimum is a no-op, so ONNX Runtime drops it and fuses every
  Conv (+ReLU) into QLinearConv (measured: 33 of 33 convs of se_resnet).
- `s8-sym` (for TensorRT, whose explicit quantization accepts only INT8 with zero point 0):
  here the ReLU between Conv and Q must stay, and ONNX Runtime's CPU fusion leaves such convs
  in float (measured: 15 of 33 fused) — TensorRT fuses them itself.
The fusion actually achieved is recorded in the manifest (`quantize.fusion`). Both encodings
exist for QAT too (`--mode qat`, torchao PT2E, see `qat.py`), so a QAT model can reach TensorRT.

The INT8 accuracy is measured by running the QDQ ONNX in ONNX Runtime, never a torch stand-in.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from ..data import FerData
from ..deploy.onnx_export import export_onnx, onnx_metadata, write_metadata
from ..deploy.runtime import OnnxPredictor, preprocess
from ..device import resolve_placement
from ..errors import ConfigError, RunError
from ..io import atomic_path, sha256_file
from ..runs import ONNX_FILE, Run, removed_on_failure
from ..data.run_data import calibration_images
from ..train.evaluate import data_for_run, reports_by_split, write_evaluation
from ..ui import console
from .weight_range import describe as describe_weights
from .weight_range import saturation_record, weight_limits

MODES = ("ptq", "qat")
QAT_LR_FACTOR = 0.05  # QAT fine-tunes gently: a twentieth of the parent's peak lr unless --lr says otherwise
ACTIVATION_ENCODINGS = ("u8-asym", "s8-sym")
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
FP32_ONNX = "model_fp32.onnx"


@dataclass
class QuantizeConfig:
    parent: str
    mode: str = "ptq"
    calib: int = 512  # training images used to calibrate activation ranges
    calib_method: str = "minmax"
    activations: str = "u8-asym"
    epochs: int = 5  # qat: fine-tuning epochs with fake quantization
    lr: float | None = None
    distill: bool = False
    out: str | None = None
    threads: int | None = None
    seed: int = 0
    data: str | None = None  # calibrate / fine-tune on this source instead of the parent's own (e.g. a zoo model's)
    device: str | None = None  # qat: where it fine-tunes (auto: CUDA, then MPS, else CPU); ptq calibrates on the CPU
    amp: str | None = None  # qat: only off (fake quantization trains in fp32)
    weight_range: str = "reduced"  # weights in [-64, 64]: exact on every x86 kernel (see weight_range.py)

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"--mode must be one of {', '.join(MODES)} (got {self.mode!r})")
        if self.calib < 1:
            raise ConfigError(f"--calib must be >= 1 image (got {self.calib})")
        if self.calib_method not in CALIBRATION_METHODS:
            raise ConfigError(f"--calib-method must be one of {', '.join(CALIBRATION_METHODS)} (got {self.calib_method!r})")
        if self.mode == "qat" and self.epochs < 1:
            raise ConfigError(f"--epochs must be >= 1 for qat (got {self.epochs})")
        if self.lr is not None and self.lr <= 0:
            raise ConfigError(f"--lr must be > 0 (got {self.lr})")
        if self.mode != "qat" and (self.device or self.amp):
            raise ConfigError("--device / --amp: PTQ calibrates in ONNX Runtime on the CPU; they apply to --mode qat")
        if self.mode == "qat":
            _, amp = resolve_placement(self.device, "off" if self.amp in (None, "auto") else self.amp)
            if amp != "off":
                raise ConfigError(f"--amp {amp}: quantization-aware training runs in fp32 (its fake-quant observers "
                                  "record fp32 ranges); use --amp off")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be >= 1 (got {self.threads})")
        weight_limits(self.weight_range)
        if self.activations not in ACTIVATION_ENCODINGS:
            raise ConfigError(f"--activations must be one of {', '.join(ACTIVATION_ENCODINGS)} (got {self.activations!r})")


def optimized_op_counts(path: str | Path) -> Counter:
    """Operator counts of the graph ONNX Runtime actually runs (after its fusions)."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        options.log_severity_level = 3
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return Counter(n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node)


def quantize_onnx_static(
    fp32_path: Path, int8_path: Path, images: np.ndarray, spec: dict, method: str, activations: str = "u8-asym",
    weight_range: str = "reduced",
) -> None:
    """PTQ of an FP32 ONNX file into a QDQ INT8 file with ONNX Runtime's quantizer."""
    from onnxruntime.quantization import (
        CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quant_pre_process, quantize_static,
    )

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(preprocess(images[i : i + 64], spec) for i in range(0, len(images), 64))

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._it, None)
            return None if batch is None else {"input": batch}

    calibrate = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                 "entropy": CalibrationMethod.Entropy}[method]
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # Shape inference + graph optimisation: folds BatchNorm into Conv before Q/DQ placement.
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared), str(Path(tmp) / "int8.onnx"), Batches(),
            quant_format=QuantFormat.QDQ, per_channel=True, calibrate_method=calibrate,
            activation_type=QuantType.QUInt8 if activations == "u8-asym" else QuantType.QInt8,
            weight_type=QuantType.QInt8, reduce_range=weight_range == "reduced",  # ORT's [-64, 64]
            # s8-sym is the TensorRT encoding: TensorRT quantizes biases itself and its parser has
            # rejected int32 bias DequantizeLinear, so biases stay float (ORT fuses the same convs).
            extra_options={"ActivationSymmetric": activations == "s8-sym", "WeightSymmetric": True,
                           "QuantizeBias": activations != "s8-sym"},
        )
        model = onnx.load(str(Path(tmp) / "int8.onnx"))
    write_metadata(model, {**onnx_metadata(spec, None), "precision": "int8"})
    with atomic_path(int8_path) as out:
        onnx.save(model, str(out))


def _quantize_aware_training(cfg: QuantizeConfig, parent: Run, out: Path, progress: bool) -> Run:
    from ..train import TrainConfig, fit
    from .qat import QatRecipe, qat_epochs_default

    if "config" not in parent.manifest:
        raise RunError(f"{parent.path}: has no training recipe to fine-tune with (manifest lacks 'config')")
    parent_cfg = TrainConfig.from_dict(parent.manifest["config"])
    freeze_bn, freeze_observers = qat_epochs_default(cfg.epochs)
    run = Run.create(out, stage="quantize", parent=parent, quantize={
        "mode": "qat", "weights": describe_weights(cfg.weight_range), "weight_range": cfg.weight_range,
        "activations": f"per-tensor {cfg.activations}",
        "activation_encoding": cfg.activations,
        "format": "QDQ ONNX", "tool": "torchao PT2E (prepare_qat_pt2e / convert_pt2e, XNNPACK annotator)",
        "epochs": cfg.epochs, "freeze_bn_after_epoch": freeze_bn, "freeze_observers_after_epoch": freeze_observers,
        "distill": cfg.distill})
    train_cfg = parent_cfg.for_later_stage(
        parent.ref if cfg.distill else None,
        init_from=parent.ref,
        epochs=cfg.epochs,
        lr=cfg.lr if cfg.lr is not None else parent_cfg.lr * QAT_LR_FACTOR,
        warmup_epochs=0,
        early_stop=None,
        out=str(run.path),
        keep_sparsity=False,
        threads=cfg.threads or parent_cfg.threads,
        device=cfg.device,
        amp="off",
        **({"data": cfg.data} if cfg.data else {}),
    )
    recipe = QatRecipe(freeze_bn, freeze_observers, source_run=parent.ref, activations=cfg.activations,
                       weight_range=cfg.weight_range)
    with removed_on_failure(run):
        return fit(train_cfg, run=run, progress=progress, recipe=recipe)


def quantize_run(cfg: QuantizeConfig, progress: bool = True) -> Run:
    cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    parent = Run.load(cfg.parent)
    if parent.stage == "quantize":
        raise RunError(f"{parent.path}: this run is already quantized; quantize its float parent instead")
    parent.require_complete()
    out = Path(cfg.out) if cfg.out else parent.home / f"{parent.name}-{cfg.mode}-int8"
    if cfg.mode == "qat":  # the training loop loads the model and data itself
        from .qat import _torchao

        _torchao()  # fail now, before a run folder exists, if torchao is missing
        parent.load_model()  # ... or if the parent holds no model
        return _quantize_aware_training(cfg, parent, out, progress)
    model, spec = parent.load_model()
    data = data_for_run(parent, cfg.data)
    run = Run.create(out, stage="quantize", parent=parent, model=spec, params=parent.manifest.get("params"),
                     macs=parent.manifest.get("macs"),
                     quantize={"mode": cfg.mode, "calib_images": cfg.calib, "calib_method": cfg.calib_method,
                               "weights": describe_weights(cfg.weight_range), "weight_range": cfg.weight_range,
                               "activations": f"per-tensor {cfg.activations}",
                               "format": "QDQ ONNX", "tool": "onnxruntime.quantization.quantize_static"})
    with removed_on_failure(run):
        return _calibrate_and_measure(run, cfg, parent, model, spec, data, progress)


def _calibrate_and_measure(run: Run, cfg: QuantizeConfig, parent: Run, model, spec: dict, data: FerData,
                           progress: bool) -> Run:
    log = console.print if progress else (lambda *a, **k: None)
    log(f"exporting FP32 ONNX and calibrating on {cfg.calib} training images ({cfg.calib_method})")
    export_onnx(model, spec, run.path / FP32_ONNX, source_run=parent.ref)
    quantize_onnx_static(run.path / FP32_ONNX, run.path / ONNX_FILE, calibration_images(data, cfg.calib, cfg.seed),
                         spec, cfg.calib_method, cfg.activations, cfg.weight_range)

    log("measuring FP32 and INT8 accuracy in ONNX Runtime")
    fp32 = reports_by_split(OnnxPredictor(run.path / FP32_ONNX, threads=cfg.threads), data)
    int8 = reports_by_split(OnnxPredictor(run.path / ONNX_FILE, threads=cfg.threads), data)
    fp32_ops, int8_ops = optimized_op_counts(run.path / FP32_ONNX), optimized_op_counts(run.path / ONNX_FILE)
    source_convs = sum(1 for n in onnx.load(str(run.path / FP32_ONNX)).graph.node if n.op_type == "Conv")
    fusion = {
        "convs": source_convs,
        "qlinear_conv": int8_ops.get("QLinearConv", 0),
        "float_conv_left": int8_ops.get("Conv", 0) + int8_ops.get("FusedConv", 0),
        "qlinear_add": int8_ops.get("QLinearAdd", 0),
        "float_add_left": int8_ops.get("Add", 0),
        "int8_ops": dict(int8_ops),
        "fp32_ops": dict(fp32_ops),
    }
    if "test" in int8:
        write_evaluation(run.path, "test", int8["test"], source=data.source, backend="onnxruntime")
    record = dict(run.manifest["quantize"])
    record.update(fusion=fusion, **saturation_record(run.path / ONNX_FILE), accuracy={
        "fp32_onnx": {k: v["accuracy"] for k, v in fp32.items()},
        "int8_onnx": {k: v["accuracy"] for k, v in int8.items()},
    })
    metrics = {"val_acc": int8.get("val", {}).get("accuracy"), "test_acc": int8.get("test", {}).get("accuracy"),
               "test_macro_f1": int8.get("test", {}).get("macro_f1"), "backend": "onnxruntime int8"}
    run.update(quantize=record, metrics=metrics, status="complete",
               files={ONNX_FILE: sha256_file(run.path / ONNX_FILE), FP32_ONNX: sha256_file(run.path / FP32_ONNX)})
    return run
