"""NCNN: the run's PyTorch model converted by pnnx (TorchScript -> ncnn) to `model.ncnn.param` +
`model.ncnn.bin`, run by the `ncnn` Python package on the CPU, and verified against PyTorch.

Precision (`fercomp export --format ncnn --ncnn-precision fp32|fp16`):
- fp32 (default): FP32 weights in the .bin, and the runtime's fp16/bf16 storage and arithmetic
  switched off, so it computes what PyTorch computes (the FP32 gate: >= 99.9% top-1 agreement);
- fp16: pnnx stores the weights as fp16 (half the file) and the runtime keeps activations in fp16
  (and computes in fp16 on CPUs with fp16 arithmetic, e.g. ARMv8.2 boards); gated at 99% like
  OpenVINO's bf16.
No INT8: ncnn quantizes with its C++ tools `ncnn2table` (calibration) and `ncnn2int8`, which the
`ncnn` and `pnnx` wheels do not ship, and pnnx does not convert a QDQ ONNX to ncnn INT8. A
quantized run is refused before any work (export its float parent instead, or build INT8 on the
board with ncnn's tools from the FP32 files).

ncnn has no batch dimension: a batch is run one image at a time (one extractor per image), as on a
Raspberry Pi or a phone. Threads default to 1: ncnn splits each layer across its OpenMP threads, and
at 48x48 the barriers cost more than they save (on a loaded 2-core machine, 131 ms per image with 2
threads against 2.5 ms with 1); `--threads` sets more.
"""

from __future__ import annotations

import subprocess
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, ModelError
from .edge import labelled_images, metadata_path, publish, read_metadata, staging_dir, verify, write_metadata
from .extras import require

NCNN_FILE = "model.ncnn.param"
WEIGHTS_FILE = "model.ncnn.bin"
PRECISIONS = ("fp32", "fp16")
PNNX_TIMEOUT_S = 600


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ConfigError(f"--ncnn-precision must be one of {', '.join(PRECISIONS)} (got {precision!r})")


def preflight(run, cfg) -> None:
    """Before any work: the precision is known and the run is one ncnn can take (a float run)."""
    check_precision(cfg.ncnn_precision)
    if run.stage == "quantize":
        parent = run.manifest.get("parent") or "FLOAT_RUN"
        raise ConfigError(f"--format ncnn: NCNN INT8 needs ncnn's C++ tools ncnn2table/ncnn2int8, which the ncnn and "
                          f"pnnx wheels do not ship; export the float parent instead (fercomp export {parent} "
                          "--format ncnn)")


def convert(model, spec: dict[str, Any], param: Path, *, fp16: bool) -> None:
    """PyTorch -> ncnn at batch 1: traced to TorchScript, converted by the pnnx executable of the pnnx wheel.
    pnnx's by-products (its own graph, a Python script, an ONNX) stay in `param`'s folder."""
    import torch

    pnnx = require("pnnx")
    h, w = spec["input_size"]
    example = torch.zeros(1, spec.get("in_chans", 1), h, w)
    folder = param.parent
    traced = folder / "model.pt"
    with warnings.catch_warnings():  # torch.jit.trace is deprecated, and pnnx reads TorchScript
        warnings.simplefilter("ignore")
        with torch.no_grad():
            torch.jit.trace(model.eval(), example).save(str(traced))
    command = [pnnx.EXEC_PATH, str(traced), f"inputshape=[1,{spec.get('in_chans', 1)},{h},{w}]f32",
               f"fp16={int(fp16)}", "device=cpu", f"ncnnparam={param}",
               f"ncnnbin={param.with_name(WEIGHTS_FILE)}", f"ncnnpy={folder / 'model_ncnn.py'}",
               f"pnnxparam={folder / 'model.pnnx.param'}", f"pnnxbin={folder / 'model.pnnx.bin'}",
               f"pnnxpy={folder / 'model_pnnx.py'}", f"pnnxonnx={folder / 'model.pnnx.onnx'}"]
    try:
        done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=PNNX_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelError(f"pnnx could not convert {spec.get('name', 'the model')} ({exc.__class__.__name__}: "
                         f"{str(exc)[:200]})") from None
    if done.returncode != 0 or not param.is_file() or not param.with_name(WEIGHTS_FILE).is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()
        raise ModelError(f"pnnx could not convert {spec.get('name', 'the model')} (exit {done.returncode}: "
                         f"{tail[-1][:200] if tail else 'no output'})")


class NCNNPredictor:
    """ncnn CPU backend over `model.ncnn.param` + `model.ncnn.bin` written by `fercomp export --format ncnn`."""

    backend = "ncnn"

    def __init__(self, path: str | Path, *, threads: int | None = None, batch_size: int = 256,
                 meta: dict[str, Any] | None = None):
        from .runtime import spec_from_metadata

        ncnn = require("ncnn")
        self.path = Path(path)
        meta = meta if meta is not None else read_metadata(self.path)
        self.spec = spec_from_metadata(meta)
        self.class_names = [str(name) for name in meta["class_names"]]
        self.precision = meta.get("precision", "fp32")  # fp32 | fp16
        self.batch_size = batch_size
        self.input_name, self.output_name = meta.get("input_name", "in0"), meta.get("output_name", "out0")
        weights = self.path.with_name(self.path.name[: -len(".param")] + ".bin")
        net = ncnn.Net()
        fp16 = self.precision == "fp16"
        net.opt.use_fp16_storage = net.opt.use_fp16_packed = net.opt.use_fp16_arithmetic = fp16
        net.opt.use_bf16_storage = False
        net.opt.use_vulkan_compute = False
        net.opt.num_threads = int(threads or 1)  # ncnn's own default, every big core, does not pay at 48x48
        self.threads = int(net.opt.num_threads)
        if not weights.is_file():
            raise ConfigError(f"{self.path}: its weights {weights.name} are missing (export it again with "
                              "`fercomp export --format ncnn`)")
        if net.load_param(str(self.path)) != 0 or net.load_model(str(weights)) != 0 \
                or self.input_name not in net.input_names() or self.output_name not in net.output_names():
            raise ModelError(f"{self.path}: ncnn cannot load it with {weights.name}; export it again with "
                             "`fercomp export --format ncnn`")
        self.net = net
        self._mat = ncnn.Mat

    def _run(self, x: np.ndarray) -> np.ndarray:
        """One preprocessed image [C, H, W] -> logits [classes]."""
        with self.net.create_extractor() as ex:
            ex.input(self.input_name, self._mat(x))  # `x` outlives the extraction: no copy needed
            status, out = ex.extract(self.output_name)
        if status != 0:
            raise ModelError(f"{self.path}: ncnn failed to run it (status {status}); export it again with "
                             "`fercomp export --format ncnn`")
        return np.array(out, dtype=np.float32).reshape(-1)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Preprocessed float32 [N, C, H, W] -> logits [N, classes], one image per ncnn call."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not len(x):
            return np.zeros((0, len(self.class_names)), np.float32)
        return np.stack([self._run(image) for image in x])

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        from .runtime import batched_proba

        return batched_proba(self, images)


def export_ncnn(run, cfg, reference, log) -> dict[str, Any]:
    """`model.ncnn.param` + `model.ncnn.bin` from the run's PyTorch model, kept only if it passes the gate."""
    require("pnnx")  # before any work
    ncnn = require("ncnn")
    preflight(run, cfg)
    import pnnx

    from .onnx_export import onnx_metadata

    precision = cfg.ncnn_precision
    images, labels, where = labelled_images(run, cfg.parity_images, cfg.data)
    meta = {**onnx_metadata(reference.spec, str(run.path.resolve()), precision), "format": "ncnn",
            "input_name": "in0", "output_name": "out0", "ncnn": ncnn.__version__,
            "input_layout": "one image per call: float32 [C, H, W] = (pixel/255 - mean) / std; output: logits"}
    target = run.path / NCNN_FILE
    log(f"converting {run.name} to NCNN with pnnx {getattr(pnnx, '__version__', '')} ({precision} weights)")
    with staging_dir(run.path) as tmp:
        param = tmp / NCNN_FILE
        convert(reference.model, reference.spec, param, fp16=precision == "fp16")
        write_metadata(param, meta)
        candidate = NCNNPredictor(param, threads=cfg.threads, meta=meta)
        result = verify(reference, candidate, images, labels, int8=False, where=where, target=target,
                        reduced=precision != "fp32")
        log(f"NCNN ({precision}) vs PyTorch on {len(images)} images ({where}): top-1 agreement "
            f"{result['top1_agreement']:.3%}, max |Δp| {result['max_abs_prob_diff']:.1e}, accuracy "
            f"{result['accuracy']:.2%} (torch {result['reference_accuracy']:.2%})")
        hashes = publish([tmp / WEIGHTS_FILE, metadata_path(param), param], run.path)
    return {"file": NCNN_FILE, "files": hashes, "bytes": (run.path / WEIGHTS_FILE).stat().st_size,
            "precision": precision, "batch": 1, "threads": candidate.threads, "ncnn": ncnn.__version__,
            "pnnx": getattr(pnnx, "__version__", None), "parity": result}
