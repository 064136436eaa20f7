"""`fercomp export RUN`: the run's model as a file a board can run, proven to compute the same thing.

Float runs (train, prune) are exported to `model.onnx` (dynamo exporter, onnxsim, onnx.checker,
metadata embedded) and checked against the PyTorch model on the run's own test images: FP32 must
agree on top-1 for at least 99.9% of them, or nothing is written. Quantized runs already hold
their INT8 QDQ `model.onnx`; export re-checks it and reports its agreement with the float parent
(information, not a gate: INT8 is meant to differ a little). `--trt` then builds a TensorRT
engine from that ONNX and verifies it against ONNX Runtime; on a host without TensorRT the
ONNX stays in place and the command exits 2 saying how to build on the target.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..errors import ConfigError, FercompError, RunError, require_at_least
from ..io import atomic_path, sha256_file, write_json, write_text
from ..runs import ONNX_FILE, Run, is_2to4_run, writable_copy
from ..ui import console
from .formats import EDGE, FORMATS, export_format, kept, preflight, remove_converted, require_format
from .onnx_export import OPSET, export_onnx, read_metadata
from .runtime import ENGINE_FILE, OnnxPredictor, TorchPredictor, engine_metadata_path
from .tensorrt import PRECISIONS, EngineSpec, TensorRTUnavailable

EXPORT_REPORT = "export.json"
BUILD_LOG = "trt_build.log"
TIMING_CACHE = "timing.cache"
FP32_MIN_AGREEMENT = 0.999
REDUCED_MIN_AGREEMENT = 0.99  # an FP16 / INT8 engine against the same ONNX in ONNX Runtime


class ParityError(FercompError):
    """The exported model does not compute what the PyTorch model computes."""


@dataclass
class ExportConfig:
    run: str
    opset: int = OPSET
    dynamic_batch: bool = True
    simplify: bool = True
    trt: bool = False
    precision: str | None = None  # of the TensorRT engine: fp32 | fp16 | int8; None: int8 for INT8 runs, else fp32
    sparse: bool = False
    parity_images: int | None = None  # None: the whole test split
    max_batch: int = 256
    opt_batch: int = 64
    static_batch: int = 1  # the batch of a --static-batch export
    workspace_mib: int = 1024
    threads: int | None = None
    data: str | None = None  # parity images from this source instead of the run's own
    formats: tuple[str, ...] = ("onnx",)  # edge formats (formats.EDGE) convert from the verified ONNX
    ov_precision: str = "auto"  # OpenVINO inference precision for its parity check: auto | f32
    ncnn_precision: str = "fp32"  # NCNN weights and activations: fp32 | fp16

    def validate(self) -> None:
        require_at_least(("--max-batch", self.max_batch, 1), ("--opt-batch", self.opt_batch, 1),
                         ("--batch", self.static_batch, 1), ("--workspace", self.workspace_mib, 16))
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)} (got {self.precision!r})")
        if not self.trt and (self.precision is not None or self.sparse):
            raise ConfigError("--fp16, --int8 and --sparse choose how the TensorRT engine is built; add --trt")
        if not 7 <= self.opset <= 23:
            raise ConfigError(f"--opset must be between 7 and 23 (got {self.opset})")
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown:
            raise ConfigError(f"--format must be one or more of {', '.join(FORMATS)} (got {', '.join(unknown)})")
        if "ncnn" in self.formats:
            from .ncnn_backend import check_precision

            check_precision(self.ncnn_precision)
        if self.parity_images is not None and self.parity_images < 1:
            raise ConfigError(f"--parity-images must be >= 1 (got {self.parity_images})")


def parity(reference, candidate, images: np.ndarray) -> dict[str, Any]:
    """Max / mean absolute difference of probabilities and top-1 agreement of two predictors."""
    ref, cand = reference.predict_proba(images), candidate.predict_proba(images)
    diff = np.abs(ref - cand)
    return {
        "images": int(len(images)),
        "reference": reference.backend,
        "candidate": candidate.backend,
        "max_abs_prob_diff": float(diff.max()) if len(diff) else 0.0,
        "mean_abs_prob_diff": float(diff.mean()) if len(diff) else 0.0,
        "top1_agreement": float((ref.argmax(1) == cand.argmax(1)).mean()) if len(ref) else 1.0,
    }


def held_out_split(run: Run, data_source: str | None = None):
    """The run's own held-out images (or those of `data_source`, e.g. for a zoo model whose data
    file is elsewhere): the test split (FER2013 PrivateTest), or val when there is none.

    Returns (split, class names, "source split") — what export checks parity on and deploy ships."""
    from ..data.run_data import data_for_run

    data = data_for_run(run, data_source)
    name = "test" if "test" in data.splits and len(data.splits["test"]) else "val"
    return data.split(name), data.class_names, f"{data.source} {name}"


def parity_images(run: Run, limit: int | None, data_source: str | None = None) -> tuple[np.ndarray, str]:
    """Real images to compare on, the first `limit` of them when given."""
    split, _, where = held_out_split(run, data_source)
    return (split.x[:limit] if limit else split.x), where


def _float_reference(run: Run) -> tuple[Run, TorchPredictor]:
    """The PyTorch model an export is compared with: the run's own, or a quantized run's float parent."""
    source = run if run.stage != "quantize" else run.parent
    if source is None:
        raise RunError(f"{run.path}: a quantized run without its float parent; cannot check parity")
    model, spec = source.load_model()
    return source, TorchPredictor(model, spec)


def export_run(cfg: ExportConfig, progress: bool = True) -> dict[str, Any]:
    cfg.validate()
    for fmt in cfg.formats:
        require_format(fmt)  # a missing extra is said before any work
    log = console.print if progress else (lambda *a, **k: None)
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    source = Run.load(cfg.run).require_complete()
    for fmt in (f for f in cfg.formats if f in EDGE):
        preflight(fmt, source, cfg)  # e.g. a run this format cannot take: said before anything is written
    run = writable_copy(source)  # a zoo model is read-only: it exports into artifacts/<name>
    if run is not source:
        log(f"{source.ref} is read-only; exporting its copy in {run.path}")
    onnx_path = run.path / ONNX_FILE
    quantized = run.stage == "quantize"
    cfg = replace(cfg, precision=cfg.precision or ("int8" if quantized else "fp32"))
    if cfg.precision == "int8" and not quantized:
        raise ConfigError(f"--int8 builds from a QDQ ONNX: quantize the run first (fercomp quantize {run.path})")
    if quantized and cfg.precision != "int8":
        raise ConfigError(f"{run.path} is an INT8 run: its engine is built from the QDQ ONNX with --int8")
    source, reference = _float_reference(run)
    images, where = parity_images(run, cfg.parity_images, cfg.data)

    if quantized:
        if not onnx_path.is_file():
            raise RunError(f"{run.path}: this quantized run holds no {ONNX_FILE}")
        onnx.checker.check_model(str(onnx_path))
        candidate = OnnxPredictor(onnx_path, threads=cfg.threads)
        report = {"onnx": _onnx_facts(onnx_path, simplified=None, opset=None, dynamic_batch=True),
                  "parity": {**parity(reference, candidate, images), "data": where, "gate": None,
                             "against": f"float parent {source.name}"}}
        log(f"INT8 ONNX checked; top-1 agreement with the float parent "
            f"{report['parity']['top1_agreement']:.2%} on {len(images)} images ({where})")
    else:
        report = _export_float(run, cfg, reference, images, where, log)

    if cfg.trt:
        report["tensorrt"] = {"precision": cfg.precision, "sparse": cfg.sparse}
        _record(run, report)  # the ONNX is kept and recorded even when the engine cannot be built
        try:
            report["tensorrt"] = build_and_verify(run, cfg, images, where, log)
        except TensorRTUnavailable as exc:
            raise TensorRTUnavailable(f"{run.path / ONNX_FILE} is written and verified, but no engine was built: {exc}") from None
    edge = [f for f in cfg.formats if f in EDGE]
    if edge:
        _record(run, report)  # the verified ONNX is kept even when a conversion from it fails
    for fmt in edge:
        report[fmt] = export_format(fmt, run, cfg, reference, log)
    _record(run, report)
    return report


def _onnx_facts(path: Path, *, simplified: bool | None, opset: int | None, dynamic_batch: bool) -> dict[str, Any]:
    model = onnx.load(str(path), load_external_data=False)
    return {"file": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path),
            "nodes": len(model.graph.node), "opset": opset or max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
            "simplified": simplified, "dynamic_batch": dynamic_batch, "metadata": read_metadata(model)}


def _export_float(run: Run, cfg: ExportConfig, reference: TorchPredictor, images: np.ndarray, where: str,
                  log) -> dict[str, Any]:
    target = run.path / ONNX_FILE
    log(f"exporting {run.name} to ONNX (opset {cfg.opset}, {'dynamic' if cfg.dynamic_batch else 'fixed'} batch"
        f"{', onnxsim' if cfg.simplify else ''})")
    with atomic_path(target) as tmp:  # renamed into place only if parity holds
        export_onnx(reference.model, reference.spec, tmp, source_run=str(run.path.resolve()),
                    dynamic_batch=cfg.dynamic_batch, simplify=cfg.simplify, opset=cfg.opset,
                    static_batch=cfg.static_batch)
        result = parity(reference, OnnxPredictor(tmp, threads=cfg.threads), images)
        result.update(data=where, gate=FP32_MIN_AGREEMENT, against="torch (same weights)")
        log(f"parity on {result['images']} images ({where}): top-1 agreement {result['top1_agreement']:.3%}, "
            f"max |Δp| {result['max_abs_prob_diff']:.2e}")
        if result["top1_agreement"] < FP32_MIN_AGREEMENT:
            raise ParityError(f"{target}: ONNX Runtime agrees with PyTorch on only {result['top1_agreement']:.3%} "
                              f"of {where} (need {FP32_MIN_AGREEMENT:.1%}); nothing written")
    _remove_engine(run)  # an engine built from the previous ONNX would no longer match it
    remove_converted(run)  # and so would OpenVINO / LiteRT files converted from it
    return {"onnx": _onnx_facts(target, simplified=cfg.simplify, opset=cfg.opset,
                                dynamic_batch=cfg.dynamic_batch), "parity": result}


def _remove_engine(run: Run) -> None:
    for name in (ENGINE_FILE, engine_metadata_path(Path(ENGINE_FILE)).name, BUILD_LOG):
        (run.path / name).unlink(missing_ok=True)
    files = {k: v for k, v in run.manifest.get("files", {}).items() if k != ENGINE_FILE}
    run.update(files=files)


def _record(run: Run, report: dict[str, Any]) -> None:
    write_json(run.path / EXPORT_REPORT, report)
    files = dict(run.manifest.get("files", {}), **{ONNX_FILE: report["onnx"]["sha256"]})
    engine = run.path / ENGINE_FILE
    if "parity" in (report.get("tensorrt") or {}) and engine.is_file():  # built and verified this time
        files[ENGINE_FILE] = sha256_file(engine)
    # this export's conversions, and the earlier ones still valid (an INT8 run keeps its ONNX, so they stay)
    edge = {fmt: report.get(fmt) or run.manifest["export"][fmt] for fmt in EDGE if fmt in report or kept(run, fmt)}
    for fmt in edge:
        files.update(edge[fmt]["files"])
    run.update(export={**(run.manifest.get("export") or {}), "onnx": report["onnx"], "parity": report["parity"],
                       "tensorrt": report.get("tensorrt"), **edge}, files=files)


def engine_spec(cfg: ExportConfig, onnx_path: Path) -> EngineSpec:
    model = onnx.load(str(onnx_path), load_external_data=False)
    first = model.graph.input[0]
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in first.type.tensor_type.shape.dim]
    if len(dims) != 4:
        raise ConfigError(f"{onnx_path}: expected an NCHW image input, found shape {dims}")
    return EngineSpec(input_name=first.name, input_shape=tuple(dims[1:]), precision=cfg.precision or "fp32",
                      sparse=cfg.sparse, dynamic_batch=dims[0] == -1, opt_batch=min(cfg.opt_batch, cfg.max_batch),
                      max_batch=cfg.max_batch, static_batch=max(dims[0], 1), workspace_mib=cfg.workspace_mib)


def require_tensorrt_int8(onnx_path: Path) -> None:
    """TensorRT builds explicit INT8 only from signed, zero-point-0 Q/DQ: say how to get one."""
    from .tensorrt import tensorrt_qdq_problems

    model = onnx.load(str(onnx_path), load_external_data=False)
    if not any(n.op_type == "QuantizeLinear" for n in model.graph.node):
        raise ConfigError(f"{onnx_path}: --int8 needs Q/DQ nodes; this ONNX has none")
    problems = tensorrt_qdq_problems(model)
    if problems:
        raise ConfigError(f"{onnx_path}: TensorRT takes INT8 with zero point 0 only, but this QDQ ONNX has "
                          f"{len(problems)} asymmetric/uint8 quantizers (e.g. {problems[0]}); quantize for "
                          "TensorRT with `fercomp quantize RUN --activations s8-sym`")


def engine_gate(precision: str) -> float:
    return FP32_MIN_AGREEMENT if precision == "fp32" else REDUCED_MIN_AGREEMENT


def build_and_verify(run: Run, cfg: ExportConfig, images: np.ndarray, where: str, log) -> dict[str, Any]:
    """Build an engine from model.onnx, compare it with ONNX Runtime, and keep it only if they agree."""
    from .runtime import TensorRTPredictor
    from .tensorrt import build_engine, require_tensorrt

    onnx_path = run.path / ONNX_FILE
    require_tensorrt()  # before any work: the message says how to build on the target instead
    spec = engine_spec(cfg, onnx_path)
    if cfg.precision == "int8":
        require_tensorrt_int8(onnx_path)
    if cfg.sparse and not is_2to4_run(run):
        log("note: --sparse on a run that was not pruned to 2:4; TensorRT will find few sparse layers")
    log(f"building TensorRT engine ({cfg.precision}{', sparse' if cfg.sparse else ''})")
    _remove_engine(run)
    engine_bytes, build_log, record = build_engine(onnx_path, spec, timing_cache=run.path / TIMING_CACHE)
    engine = run.path / ENGINE_FILE
    write_text(run.path / BUILD_LOG, "\n".join(build_log) + "\n")
    meta = {**read_metadata(onnx_path), "precision": cfg.precision, "sparse": cfg.sparse, "onnx": ONNX_FILE,
            "onnx_sha256": sha256_file(onnx_path)}
    with atomic_path(engine) as tmp:  # renamed into place only if the engine agrees with ONNX Runtime
        tmp.write_bytes(engine_bytes)
        with TensorRTPredictor(tmp, meta=meta) as engine_predictor:  # its CUDA stream and buffers are freed here
            check = parity(OnnxPredictor(onnx_path, threads=cfg.threads), engine_predictor, images)
        gate = engine_gate(cfg.precision)
        check.update(data=where, against="onnxruntime (same ONNX)", gate=gate)
        log(f"engine vs ONNX Runtime: top-1 agreement {check['top1_agreement']:.3%}, "
            f"max |Δp| {check['max_abs_prob_diff']:.2e}")
        if check["top1_agreement"] < gate:
            raise ParityError(f"{engine}: the {cfg.precision} engine agrees with ONNX Runtime on only "
                              f"{check['top1_agreement']:.3%} of {where} (need {gate:.1%}); engine not kept "
                              f"(log: {run.path / BUILD_LOG})")
    write_json(engine_metadata_path(engine), meta)
    return {**record, "spec": asdict(spec), "engine_bytes": len(engine_bytes), "parity": check,
            "build_log": BUILD_LOG}
