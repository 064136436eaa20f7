"""TensorRT engine building: every TensorRT call of fercomp's build side lives here.

TensorRT is optional (it needs an NVIDIA GPU and NVIDIA's wheels), so it is imported lazily
through `require_tensorrt()`. What to build is decided by pure functions (`build_settings`,
`trtexec_command`) that need no TensorRT, so the mapping from fercomp's options to TensorRT's
flags, profiles and trtexec arguments is tested on any machine.

Written against the TensorRT 10 Python API (`create_network`, `OnnxParser.parse_from_file`,
`set_memory_pool_limit`, `create_optimization_profile`, `create_timing_cache`,
`build_serialized_network`). Precision rules:
- fp32: no precision flag.
- fp16: `BuilderFlag.FP16` (weak typing). TensorRT 11 removed that flag; there fp16 needs an
  ONNX whose tensors are already fp16, so fercomp refuses with a message rather than silently
  building fp32.
- int8: explicit quantization from the QDQ ONNX of `fercomp quantize`, built as a strongly typed
  network (`NetworkDefinitionCreationFlag.STRONGLY_TYPED`, which TensorRT's docs recommend for
  Q/DQ models and TensorRT 11 makes the only mode); layers outside Q/DQ pairs stay fp32.
- sparse: `BuilderFlag.SPARSE_WEIGHTS`, for 2:4-pruned runs on Ampere / Jetson Orin and later.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, FercompError

PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_WORKSPACE_MIB = 1024


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


def build_settings(spec: EngineSpec, tensorrt_major: int = 10) -> BuildSettings:
    """Map an EngineSpec to TensorRT flags for the given TensorRT major version."""
    spec.validate()
    network_flags: list[str] = []
    builder_flags: list[str] = []
    notes: list[str] = []
    if spec.precision == "fp16":
        if tensorrt_major >= 11:
            raise ConfigError("--fp16: TensorRT 11 removed the FP16 builder flag (networks are strongly typed); "
                              "build on TensorRT 10 (JetPack 6), or export an fp16 ONNX and build it as fp32")
        builder_flags.append("FP16")
    elif spec.precision == "int8":
        network_flags.append("STRONGLY_TYPED")
        notes.append("explicit INT8 from the QDQ ONNX; layers outside Q/DQ pairs run in fp32")
    if spec.sparse:
        builder_flags.append("SPARSE_WEIGHTS")
        notes.append("2:4 sparse kernels are used only where TensorRT finds them faster (Ampere and later)")
    return BuildSettings(tuple(network_flags), tuple(builder_flags), spec.profile(), spec.workspace_mib << 20,
                         tuple(notes))


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


def _dims(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


def trtexec_command(spec: EngineSpec, onnx: str = "model.onnx", engine: str = "model.engine",
                    timing_cache: str = "timing.cache") -> list[str]:
    """The trtexec (TensorRT 10) command line that builds the same engine as `build_engine`."""
    settings = build_settings(spec)
    cmd = ["trtexec", f"--onnx={onnx}", f"--saveEngine={engine}", f"--timingCacheFile={timing_cache}",
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


def build_engine(onnx_path: str | Path, spec: EngineSpec, *, timing_cache: str | Path | None = None) -> tuple[bytes, list[str], dict[str, Any]]:
    """Build a serialized engine from an ONNX file.

    Returns (engine bytes, build log lines, a record of the settings used). The timing cache, if
    given, is read when it exists and written back after the build, so rebuilds are fast.
    """
    trt = require_tensorrt()
    settings = build_settings(spec, major_version(trt.__version__))
    log: list[str] = []
    logger = _logger(trt, log)
    builder = trt.Builder(logger)
    flags = 0
    for name in settings.network_flags:
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
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
    record = {"tensorrt": trt.__version__, "network_flags": list(settings.network_flags),
              "builder_flags": list(settings.builder_flags), "profile": settings.profile,
              "workspace_bytes": settings.workspace_bytes, "notes": list(settings.notes)}
    return bytes(serialized), log, record
