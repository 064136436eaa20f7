"""FP32 ONNX export with the metadata a runtime needs (classes, input size, normalisation).

Uses torch's dynamo exporter (opset 18, weights embedded), optionally simplified with onnxsim,
then checked with onnx.checker. The metadata lets ONNX Runtime, TensorRT or a board-side script
preprocess and label outputs without fercomp installed.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import onnx
import torch

from .. import __version__
from ..io import atomic_path

OPSET = 18
METADATA_KEY = "fercomp"


def onnx_metadata(spec: dict[str, Any], source_run: str | None, precision: str = "fp32") -> dict[str, Any]:
    return {
        "class_names": spec["class_names"],
        "input_size": spec["input_size"],
        "in_chans": spec.get("in_chans", 1),
        "normalization": spec["normalization"],
        "model": spec["name"],
        "precision": precision,
        "source_run": source_run,
        "fercomp_version": __version__,
        "input_layout": "NCHW float32: (pixel/255 - mean) / std; output: logits",
    }


def write_metadata(model: onnx.ModelProto, meta: dict[str, Any]) -> None:
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)


def read_metadata(path_or_model: str | Path | onnx.ModelProto) -> dict[str, Any]:
    model = path_or_model if isinstance(path_or_model, onnx.ModelProto) else onnx.load(str(path_or_model), load_external_data=False)
    for entry in model.metadata_props:
        if entry.key == METADATA_KEY:
            return json.loads(entry.value)
    return {}


def batch_dim() -> dict:
    """Dynamic-shape spec of an image batch: any batch size, fixed channels and size."""
    return {0: torch.export.Dim("batch", min=1, max=4096)}


def export_onnx(
    model: torch.nn.Module,
    spec: dict[str, Any],
    path: str | Path,
    *,
    source_run: str | None = None,
    dynamic_batch: bool = True,
    simplify: bool = True,
    opset: int = OPSET,
    static_batch: int = 1,
) -> Path:
    """Export `model` (eval mode) to `path`; returns the path. Written atomically."""
    path = Path(path)
    model = model.eval().to(memory_format=torch.contiguous_format)
    h, w = spec["input_size"]
    # a dynamic batch needs an example of 2 (the exporter specialises size 1); a fixed one is batch 1
    example = torch.zeros(2 if dynamic_batch else static_batch, spec.get("in_chans", 1), h, w)
    dynamic = (batch_dim(),) if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter is chatty about internals users cannot act on
        program = torch.onnx.export(
            model, (example,), dynamo=True, opset_version=opset, external_data=False,
            input_names=["input"], output_names=["logits"], dynamic_shapes=dynamic, verbose=False,
        )
    proto = program.model_proto
    if simplify:
        import onnxsim

        simplified, ok = onnxsim.simplify(proto)
        if ok:
            proto = simplified
    write_metadata(proto, onnx_metadata(spec, source_run))
    onnx.checker.check_model(proto)
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))
    return path
