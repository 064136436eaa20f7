"""TensorRT engine building: every TensorRT call of fercomp's build side lives here.

TensorRT is optional (it needs an NVIDIA GPU and NVIDIA's wheels), so it is imported lazily
through `require_tensorrt()`. What to build is decided by pure functions (`build_settings`,
`trtexec_command`) that need no TensorRT, so the mapping from fercomp's options to TensorRT's
flags, profiles and trtexec arguments is tested on any machine, for both TensorRT majors.

Written against the TensorRT 10 and 11 Python APIs (`create_network`, `OnnxParser.parse_from_file`,
`set_memory_pool_limit`, `create_optimization_profile`, `create_timing_cache`,
`build_serialized_network`). TensorRT 11 removed weak typing (the FP16 / INT8 builder flags and
trtexec's --fp16 / --int8): every network is strongly typed and precision comes from the ONNX.
Jetsons stay on TensorRT 10 (TensorRT 11.4 does not support JetPack); desktop GPUs may have 11,
so the major version (`tensorrt.__version__`) picks the recipe. Precision rules:
- fp32: no precision flag (both majors).
- fp16: TensorRT 10 `BuilderFlag.FP16` (weak typing) on the fp32 ONNX; TensorRT 11 builds an
  fp16 copy of the ONNX (`to_fp16_onnx`: weights and inputs/outputs in float16), so the engine
  takes and returns float16 (the board runtime reads each tensor's dtype and converts).
- int8: explicit quantization from the QDQ ONNX of `fercomp quantize`, built strongly typed
  (`NetworkDefinitionCreationFlag.STRONGLY_TYPED` on TensorRT 10, which TensorRT's docs recommend
  for Q/DQ models; always on in TensorRT 11); layers outside Q/DQ pairs stay fp32.
- sparse: `BuilderFlag.SPARSE_WEIGHTS`, for 2:4-pruned runs on Ampere / Jetson Orin and later.
"""

from __future__ import annotations

import importlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, FercompError

PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_WORKSPACE_MIB = 1024
STRONG_TYPING_ONLY = 11  # the first TensorRT major without weak typing
FP16_ONNX_FILE = "model_fp16.onnx"


class TensorRTUnavailable(FercompError):
    """TensorRT (or a GPU for it) is missing on this host."""


MISSING_HINT = (
    "TensorRT is not installed on this host (it needs an NVIDIA GPU and NVIDIA's tensorrt wheel). "
    "Build the engine on the target instead: `fercomp deploy RUN --target jetson` writes a bundle "
    "whose build_engine.sh runs trtexec on the board"
)


def require_tensorrt():
    """The `tensorrt` module, or a TensorRTUnavailable error that says what to do."""
    try:
        return importlib.import_module("tensorrt")
    except Exception as exc:  # ImportError, or a wheel that fails to load its CUDA libraries
        raise TensorRTUnavailable(f"{MISSING_HINT} ({type(exc).__name__}: {exc})") from None


def tensorrt_available() -> tuple[bool, str]:
    """(available, reason) without raising: for reports that list unavailable backends."""
    try:
        trt = require_tensorrt()
    except TensorRTUnavailable as exc:
        return False, str(exc)
    return True, f"TensorRT {getattr(trt, '__version__', '?')}"


def major_version(version: str) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return 10


@dataclass(frozen=True)
class EngineSpec:
    """What engine to build: precision, sparsity and the input shapes it must accept."""

    input_name: str
    input_shape: tuple[int, int, int]  # C, H, W
    precision: str = "fp32"
    sparse: bool = False
    dynamic_batch: bool = True
    min_batch: int = 1
    opt_batch: int = 64
    max_batch: int = 256
    static_batch: int = 1
    workspace_mib: int = DEFAULT_WORKSPACE_MIB

    def validate(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)} (got {self.precision!r})")
        if self.dynamic_batch and not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise ConfigError(f"batch profile needs 1 <= min <= opt <= max (got {self.min_batch}, "
                              f"{self.opt_batch}, {self.max_batch})")
        if self.workspace_mib < 16:
            raise ConfigError(f"--workspace must be at least 16 MiB (got {self.workspace_mib})")

    def shape(self, batch: int) -> tuple[int, int, int, int]:
        return (batch, *self.input_shape)

    def profile(self) -> dict[str, tuple[int, ...]] | None:
        """min / opt / max input shapes of the optimization profile; None for a static batch."""
        if not self.dynamic_batch:
            return None
        return {"min": self.shape(self.min_batch), "opt": self.shape(self.opt_batch), "max": self.shape(self.max_batch)}


@dataclass(frozen=True)
class BuildSettings:
    """TensorRT enum member names to set: a plain description the builder applies with getattr."""

    network_flags: tuple[str, ...] = ()
    builder_flags: tuple[str, ...] = ()
    profile: dict[str, tuple[int, ...]] | None = None
    workspace_bytes: int = DEFAULT_WORKSPACE_MIB << 20
    notes: tuple[str, ...] = field(default_factory=tuple)
    fp16_onnx: bool = False  # build from an fp16 copy of the ONNX (TensorRT 11's only way to fp16)
    tensorrt_major: int = 10


def build_settings(spec: EngineSpec, tensorrt_major: int = 10) -> BuildSettings:
    """Map an EngineSpec to TensorRT flags for the given TensorRT major version."""
    spec.validate()
    strong_only = tensorrt_major >= STRONG_TYPING_ONLY
    network_flags: list[str] = []
    builder_flags: list[str] = []
    notes: list[str] = []
    if spec.precision == "fp16" and strong_only:
        notes.append(f"TensorRT {tensorrt_major}: strongly typed, built from an fp16 copy of the ONNX "
                     "(float16 weights, inputs and outputs)")
    elif spec.precision == "fp16":
        builder_flags.append("FP16")
    elif spec.precision == "int8":
        if not strong_only:  # TensorRT 11 types every network strongly; the flag is redundant there
            network_flags.append("STRONGLY_TYPED")
        notes.append("explicit INT8 from the QDQ ONNX; layers outside Q/DQ pairs run in fp32")
    if spec.sparse:
        builder_flags.append("SPARSE_WEIGHTS")
        notes.append("2:4 sparse kernels are used only where TensorRT finds them faster (Ampere and later)")
    return BuildSettings(tuple(network_flags), tuple(builder_flags), spec.profile(), spec.workspace_mib << 20,
                         tuple(notes), fp16_onnx=spec.precision == "fp16" and strong_only,
                         tensorrt_major=tensorrt_major)


def tensorrt_qdq_problems(model) -> list[str]:
    """Why TensorRT would reject this QDQ ONNX: it takes only signed INT8 with zero point 0."""
    import numpy as np
    from onnx import numpy_helper

    constants = {t.name: t for t in model.graph.initializer}
    problems = []
    for node in model.graph.node:
        if node.op_type != "QuantizeLinear" or len(node.input) < 3 or node.input[2] not in constants:
            continue
        zero_point = numpy_helper.to_array(constants[node.input[2]])
        if zero_point.dtype != np.int8:
            problems.append(f"{node.name or node.output[0]}: {zero_point.dtype} activations")
        elif np.any(zero_point != 0):
            problems.append(f"{node.name or node.output[0]}: non-zero zero point")
    return problems


# Inputs the ONNX spec types as float32 whatever the data's type: they stay float32 in an fp16 copy.
FLOAT32_ONLY_INPUTS = {"Resize": (2,), "Upsample": (1,)}
FP16_MAX = 65504.0


def to_fp16_onnx(model):
    """An fp16 copy of an fp32 ONNX model: what TensorRT 11 needs to build an FP16 engine.

    fercomp's own conversion (onnxconverter-common is not a dependency): float32 initializers,
    Constant tensors, graph inputs/outputs and value_info become float16 (weights clipped to
    ±65504 so none turns into inf), and Cast-to-float32 becomes Cast-to-float16. Every operator
    in fercomp's models (Conv, Gemm, Add, Mul, Relu, Sigmoid, pools, ReduceMean, Reshape) takes
    float16 in ONNX; graphs with subgraphs (If/Loop) are refused rather than half converted.
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())  # never modify the caller's model
    graph = model.graph
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in graph.node for a in n.attribute):
        raise ConfigError("this ONNX has control flow (subgraphs); fercomp's fp16 conversion covers plain graphs only")
    keep_fp32 = {n.input[i] for n in graph.node for i in FLOAT32_ONLY_INPUTS.get(n.op_type, ()) if i < len(n.input)}

    def half(tensor):
        array = np.clip(numpy_helper.to_array(tensor), -FP16_MAX, FP16_MAX).astype(np.float16)
        return numpy_helper.from_array(array, tensor.name)

    for i, init in enumerate(graph.initializer):
        if init.data_type == TensorProto.FLOAT and init.name not in keep_fp32:
            graph.initializer[i].CopyFrom(half(init))
    for value in [*graph.input, *graph.output, *graph.value_info]:
        if value.type.tensor_type.elem_type == TensorProto.FLOAT and value.name not in keep_fp32:
            value.type.tensor_type.elem_type = TensorProto.FLOAT16
    for node in graph.node:
        for attr in node.attribute:
            if node.op_type == "Constant" and attr.name == "value" and attr.t.data_type == TensorProto.FLOAT:
                if node.output[0] not in keep_fp32:
                    attr.t.CopyFrom(half(attr.t))
            if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT:
                attr.i = TensorProto.FLOAT16
    onnx.checker.check_model(model)
    return model


def _dims(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


def trtexec_command(spec: EngineSpec, onnx: str = "model.onnx", engine: str = "model.engine",
                    timing_cache: str = "timing.cache", tensorrt_major: int = 10,
                    fp16_onnx: str = FP16_ONNX_FILE) -> list[str]:
    """The trtexec command line that builds the same engine as `build_engine` on that TensorRT major.

    On TensorRT 11 an fp16 engine is built from `fp16_onnx` (see `to_fp16_onnx`), with neither
    --fp16 nor --stronglyTyped (both gone or implied there)."""
    settings = build_settings(spec, tensorrt_major)
    source = fp16_onnx if settings.fp16_onnx else onnx
    cmd = ["trtexec", f"--onnx={source}", f"--saveEngine={engine}", f"--timingCacheFile={timing_cache}",
           f"--memPoolSize=workspace:{spec.workspace_mib}", "--skipInference"]
    if "STRONGLY_TYPED" in settings.network_flags:
        cmd.append("--stronglyTyped")
    if "FP16" in settings.builder_flags:
        cmd.append("--fp16")
    if "SPARSE_WEIGHTS" in settings.builder_flags:
        cmd.append("--sparsity=enable")
    if settings.profile:
        for key in ("min", "opt", "max"):
            cmd.append(f"--{key}Shapes={spec.input_name}:{_dims(settings.profile[key])}")
    return cmd


def _logger(trt, lines: list[str]):
    """A TensorRT logger that keeps every message but the verbose ones, for the build log."""

    class KeepingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity, msg) -> None:
            if severity != trt.ILogger.Severity.VERBOSE:  # verbose would be megabytes per build
                lines.append(f"[{getattr(severity, 'name', severity)}] {msg}")

    return KeepingLogger()


def write_fp16_onnx(source: str | Path, target: str | Path) -> Path:
    """Save the fp16 copy (`to_fp16_onnx`) of the ONNX file `source` as `target`."""
    import onnx

    onnx.save(to_fp16_onnx(onnx.load(str(source))), str(target))
    return Path(target)


def build_engine(onnx_path: str | Path, spec: EngineSpec, *, timing_cache: str | Path | None = None) -> tuple[bytes, list[str], dict[str, Any]]:
    """Build a serialized engine from an ONNX file.

    Returns (engine bytes, build log lines, a record of the settings used). The timing cache, if
    given, is read when it exists and written back after the build, so rebuilds are fast. On
    TensorRT 11 an fp16 engine is parsed from an fp16 copy of the ONNX, made in a temporary folder.
    """
    trt = require_tensorrt()
    settings = build_settings(spec, major_version(trt.__version__))
    with tempfile.TemporaryDirectory(prefix="fercomp-trt-") as tmp:
        source = write_fp16_onnx(onnx_path, Path(tmp) / FP16_ONNX_FILE) if settings.fp16_onnx else Path(onnx_path)
        serialized, log = _build(trt, source, spec, settings, onnx_path, timing_cache)
    record = {"tensorrt": trt.__version__, "network_flags": list(settings.network_flags),
              "builder_flags": list(settings.builder_flags), "profile": settings.profile,
              "workspace_bytes": settings.workspace_bytes, "notes": list(settings.notes),
              "onnx_precision": "fp16" if settings.fp16_onnx else "as exported"}
    return serialized, log, record


def _build(trt, source: Path, spec: EngineSpec, settings: BuildSettings, onnx_path, timing_cache):
    """Parse `source`, configure and build: (engine bytes, log lines)."""
    log: list[str] = []
    logger = _logger(trt, log)
    builder = trt.Builder(logger)
    flags = 0
    for name in settings.network_flags:
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(source)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise FercompError(f"{onnx_path}: TensorRT's ONNX parser failed: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_bytes)
    for name in settings.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    if settings.profile:
        profile = builder.create_optimization_profile()
        profile.set_shape(spec.input_name, settings.profile["min"], settings.profile["opt"], settings.profile["max"])
        config.add_optimization_profile(profile)
    cache_path = Path(timing_cache) if timing_cache else None
    cache_bytes = cache_path.read_bytes() if cache_path and cache_path.is_file() else b""
    config.set_timing_cache(config.create_timing_cache(cache_bytes), False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        errors = [line for line in log if line.startswith(("[ERROR]", "[INTERNAL_ERROR]"))][-3:]
        raise FercompError(f"{onnx_path}: TensorRT could not build an engine: {' | '.join(errors) or 'no error logged'}")
    if cache_path is not None:
        from ..io import write_bytes

        write_bytes(cache_path, bytes(config.get_timing_cache().serialize()))
    return bytes(serialized), log
