"""Quantization-aware training with torchao's PT2E flow, exported as a QDQ ONNX model.

The float parent is captured with `torch.export`, annotated, and prepared for QAT
(`prepare_qat_pt2e`: BatchNorm folded into the conv's fake-quantized weights, fake quantizers on
activations); the ordinary training loop fine-tunes it (so it is resumable and can distil from
the parent); BatchNorm statistics and then observers are frozen after set epochs; the best
epoch on validation is converted (`convert_pt2e`) into quantize/dequantize ops that torch's ONNX
exporter writes as QuantizeLinear/DequantizeLinear.

Placement: torchao's XNNPACK annotator quantizes every conv (with its BN and ReLU), its output,
residual adds, pools and the classifier — the pattern ONNX Runtime fuses into QLinearConv /
QLinearAdd. Weights are per-channel symmetric INT8; activations per-tensor, in the two encodings
of `fercomp quantize --activations` (as for PTQ):
- `u8-asym` (default, ONNX Runtime on CPU): UINT8 affine. With INT8 activations ONNX Runtime
  keeps the ReLU between conv and Q and leaves those convs in float (measured on separable_cnn:
  10 of 17 fused with int8 activations, 17 of 17 with uint8).
- `s8-sym` (TensorRT, whose explicit quantization takes only INT8 with zero point 0): INT8
  symmetric fake quantizers, so the QDQ ONNX has int8 zero points that are all 0 and the run
  can be built into a TensorRT engine and shipped to a Jetson. Biases stay float either way.
The annotator lives in torchao's testing package (the maintained home of the XNNPACK quantizer
moved to ExecuTorch); fercomp only configures it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings

import onnx
import torch

from ..deploy.onnx_export import OPSET, batch_dim, onnx_metadata, write_metadata
from ..deploy.runtime import OnnxPredictor, TorchPredictor
from ..errors import ConfigError
from ..io import atomic_path, save_torch, sha256_file
from ..runs import ONNX_FILE
from ..train.evaluate import reports_by_split, write_evaluation
from ..train.fit import FloatRecipe, history_metrics
from .weight_range import saturation_record, weight_limits

QAT_BEST = "qat_best.pt"
QAT_FORMAT = "fercomp-qat/1"


def _torchao():
    try:
        from torchao.quantization import pt2e
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e
        from torchao.testing.pt2e._xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config
    except ImportError as exc:
        raise ConfigError(f"--mode qat needs torchao (pip install torchao): {exc}") from exc
    return pt2e, prepare_qat_pt2e, convert_pt2e, XNNPACKQuantizer, get_symmetric_quantization_config


def make_quantizer(activations: str = "u8-asym", weight_range: str = "reduced"):
    """Per-channel symmetric INT8 weights (integers within `weight_range`, see weight_range.py) and
    per-tensor activations (`u8-asym`: UINT8 affine for ONNX Runtime; `s8-sym`: INT8 with zero
    point 0 for TensorRT), ORT-fusable placement."""
    _, _, _, XNNPACKQuantizer, get_config = _torchao()
    low, high = weight_limits(weight_range)
    config = get_config(is_per_channel=True, is_qat=True, weight_qmin=low, weight_qmax=high)
    if activations == "s8-sym":
        spec = dataclasses.replace(config.input_activation, dtype=torch.int8, quant_min=-128, quant_max=127,
                                   qscheme=torch.per_tensor_symmetric)
    else:
        spec = dataclasses.replace(config.input_activation, dtype=torch.uint8, quant_min=0, quant_max=255)
    config = dataclasses.replace(config, input_activation=spec, output_activation=spec)
    return XNNPACKQuantizer().set_global(config)


def _freeze_batchnorm_stats(model: torch.fx.GraphModule) -> None:
    """Normalise with running statistics from now on (batch_norm's `training` argument False)."""
    changed = False
    for node in model.graph.nodes:
        if "batch_norm" in str(node.target) and len(node.args) > 5 and node.args[5] is True:
            args = list(node.args)
            args[5] = False
            node.args = tuple(args)
            changed = True
    if changed:
        model.recompile()


class QatRecipe(FloatRecipe):
    """Train the fake-quantized graph; save its state; finish by converting and exporting ONNX."""

    channels_last = False  # the exported graph was captured in NCHW

    def __init__(self, freeze_bn_epoch: int, freeze_observer_epoch: int, source_run: str,
                 activations: str = "u8-asym", weight_range: str = "reduced"):
        self.freeze_bn_epoch = freeze_bn_epoch
        self.freeze_observer_epoch = freeze_observer_epoch
        self.source_run = source_run
        self.activations = activations
        self.weight_range = weight_range

    def prepare(self, model, input_size):
        pt2e, prepare_qat_pt2e, _, _, _ = _torchao()
        example = (torch.randn(2, getattr(model, "in_chans", 1), *input_size),)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exported = torch.export.export(model.train(), example, dynamic_shapes=(batch_dim(),)).module()
            prepared = prepare_qat_pt2e(exported, make_quantizer(self.activations, self.weight_range))
        pt2e.allow_exported_model_train_eval(prepared)  # so .train()/.eval() switch BN, dropout, observers
        return prepared

    def on_epoch_start(self, model, epoch):
        pt2e = _torchao()[0]
        if epoch > self.freeze_observer_epoch:
            model.apply(pt2e.disable_observer)  # scales stop moving: the last epochs train against fixed grids
        if epoch > self.freeze_bn_epoch:
            _freeze_batchnorm_stats(model)

    @contextlib.contextmanager
    def evaluating(self, model):
        # Fake-quant observers update their ranges whenever enabled, even in eval mode: switch them
        # off for validation so no validation (or test) statistics leak into the INT8 scales.
        flags = {m: m.observer_enabled.clone() for m in model.modules() if hasattr(m, "observer_enabled")}
        model.apply(_torchao()[0].disable_observer)
        try:
            yield
        finally:
            for module, flag in flags.items():
                module.observer_enabled.copy_(flag)

    def save_best(self, run, model, spec):
        save_torch(run.path / QAT_BEST, {"format": QAT_FORMAT, "state_dict": model.state_dict()})

    def finish(self, run, cfg, data, state, model):
        _, _, convert_pt2e, _, _ = _torchao()
        best = torch.load(run.path / QAT_BEST, map_location="cpu", weights_only=True)
        model = model.cpu()  # trained on any device: converted, exported and measured on the CPU
        model.load_state_dict(best["state_dict"])
        model.apply(_torchao()[0].disable_observer)  # the saved flags may be on: scales are final now
        model.eval()
        spec = run.manifest["model"]
        fake_quant = reports_by_split(TorchPredictor(model, spec), data)
        fake_quant_probs = TorchPredictor(model, spec).predict_proba(data.split("test").x)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            converted = convert_pt2e(model)
            h, w = spec["input_size"]
            program = torch.onnx.export(
                converted, (torch.zeros(2, 1, h, w),), dynamo=True, opset_version=OPSET, external_data=False,
                input_names=["input"], output_names=["logits"],
                dynamic_shapes=(batch_dim(),), verbose=False,
            )
        proto = program.model_proto
        write_metadata(proto, {**onnx_metadata(spec, self.source_run), "precision": "int8"})
        onnx.checker.check_model(proto)
        with atomic_path(run.path / ONNX_FILE) as tmp:
            onnx.save(proto, str(tmp))

        onnx_int8 = OnnxPredictor(run.path / ONNX_FILE, threads=cfg.threads)
        int8 = reports_by_split(onnx_int8, data)
        agreement = float((onnx_int8.predict_proba(data.split("test").x).argmax(1) == fake_quant_probs.argmax(1)).mean())
        if "test" in int8:
            write_evaluation(run.path, "test", int8["test"], source=data.source, backend="onnxruntime")
        record = dict(run.manifest.get("quantize", {}))
        record["accuracy"] = {
            **record.get("accuracy", {}),
            "torch_fake_quant": {k: v["accuracy"] for k, v in fake_quant.items()},
            "int8_onnx": {k: v["accuracy"] for k, v in int8.items()},
        }
        record["ort_vs_fake_quant_top1_agreement_test"] = agreement
        record.update(saturation_record(run.path / ONNX_FILE))
        metrics = {**history_metrics(state), "val_acc": int8.get("val", {}).get("accuracy"),
                   "test_acc": int8.get("test", {}).get("accuracy"),
                   "test_macro_f1": int8.get("test", {}).get("macro_f1"), "backend": "onnxruntime int8"}
        files = dict(run.manifest.get("files", {}), **{ONNX_FILE: sha256_file(run.path / ONNX_FILE)})
        run.update(quantize=record, metrics=metrics, status="complete", files=files)
        (run.path / "last.pt").unlink(missing_ok=True)
        return run


def resume_qat(path, progress: bool = True, device: str | None = None):
    """Continue an interrupted QAT run with the recipe recorded in its manifest."""
    from ..runs import Run
    from ..train import TrainConfig, fit

    run = Run.load(path)
    q = run.manifest["quantize"]
    recipe = QatRecipe(q["freeze_bn_after_epoch"], q["freeze_observers_after_epoch"],
                       source_run=run.parent.ref if run.parent else None,
                       activations=q.get("activation_encoding", "u8-asym"),  # runs from before s8-sym QAT: u8
                       weight_range=q.get("weight_range", "full"))  # runs from before the reduced range: full
    return fit(TrainConfig(device=device), resume=run.path, progress=progress, recipe=recipe)


def qat_epochs_default(finetune_epochs: int) -> tuple[int, int]:
    """Freeze BN statistics after ~60% and observers after ~80% of the QAT epochs (at least one epoch each)."""
    freeze_bn = max(1, int(round(0.6 * finetune_epochs)))
    freeze_obs = max(freeze_bn, int(round(0.8 * finetune_epochs)))
    return freeze_bn, freeze_obs
