"""A stand-in for TensorRT's Python module and for GPU memory, so the code around TensorRT runs here.

It exposes only the TensorRT names fercomp is written against (a misspelt, undocumented or
removed call fails with AttributeError), in two personalities chosen by the version string:
- TensorRT 10: weak typing (`BuilderFlag.FP16` / `INT8`) and the opt-in STRONGLY_TYPED network flag;
- TensorRT 11: no precision builder flags, no EXPLICIT_BATCH, every network strongly typed, so an
  fp16 engine comes only from an fp16 ONNX (and then takes and returns float16).
It records what the builder was asked for, and "builds" an engine that is the ONNX itself plus a
header; its execution context runs that ONNX in ONNX Runtime, reading and writing the fake device
memory through the addresses it was given, in the dtypes the engine reports. Like the real API it
answers with return values (False, None), not exceptions, where fercomp checks them. A test can
make the engine wrong (`trt.corrupt_outputs`) to prove the parity gates refuse it. This tests
fercomp's plumbing (flags, profiles, I/O names, dtypes, shapes, buffers, chunking, metadata), not
TensorRT.
"""

from __future__ import annotations

import enum
import json
import types

import numpy as np
import onnx
import onnxruntime as ort

HEADER = b"FAKE-TRT-ENGINE\n"
ORT_TO_NUMPY = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


class FakeCuda:
    """Device memory as host byte arrays keyed by fake pointers; the interface of CudaRuntime.

    `open` stands in for the CudaRuntime constructor: `opened` and `closed` count streams, so a
    test can check every TrtModel closed the stream it opened and freed its buffers."""

    def __init__(self):
        self.memory: dict[int, bytearray] = {}
        self._next = 0x1000
        self.stream_handle = 7
        self.opened = self.closed = 0
        self.copies = 0  # host<->device copies, to tell timed copies from copy-free execution

    def open(self, *args, **kwargs) -> "FakeCuda":
        self.opened += 1
        return self

    def malloc(self, nbytes: int) -> int:
        ptr, self._next = self._next, self._next + nbytes + 256
        self.memory[ptr] = bytearray(nbytes)
        return ptr

    def free(self, ptr: int) -> None:
        del self.memory[ptr]

    def copy_to_device(self, ptr: int, host: np.ndarray) -> None:
        self.copies += 1
        self.memory[ptr][: host.nbytes] = host.tobytes()

    def copy_to_host(self, host: np.ndarray, ptr: int) -> None:
        self.copies += 1
        host[...] = np.frombuffer(bytes(self.memory[ptr][: host.nbytes]), dtype=host.dtype).reshape(host.shape)

    def synchronize(self) -> None:
        pass

    def close(self) -> None:
        self.closed += 1


def major(version: str) -> int:
    return int(version.split(".")[0])


def make_module(cuda: FakeCuda, version: str = "10.3.0") -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.calls = []  # (what, details) in call order
    # a test sets it to get an engine that disagrees with ONNX Runtime: True swaps the classes'
    # order (every answer wrong), a float adds that much noise to the logits (some answers wrong)
    trt.corrupt_outputs = False
    strong_only = major(version) >= 11

    class _Severity(enum.IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    class ILogger:
        Severity = _Severity

        def __init__(self):
            pass

    class Logger(ILogger):
        WARNING = _Severity.WARNING

        def __init__(self, min_severity=_Severity.WARNING):
            super().__init__()
            self.messages = []

        def log(self, severity, msg):
            self.messages.append((severity, msg))

    if strong_only:  # TensorRT 11: weak typing and EXPLICIT_BATCH are gone; STRONGLY_TYPED is accepted, implied
        NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", {"STRONGLY_TYPED": 1})
        BuilderFlag = enum.IntEnum("BuilderFlag", {"TF32": 6, "SPARSE_WEIGHTS": 7})
    else:
        NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag",
                                                     {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1})
        BuilderFlag = enum.IntEnum("BuilderFlag", {"FP16": 0, "INT8": 1, "TF32": 6, "SPARSE_WEIGHTS": 7})
    MemoryPoolType = enum.IntEnum("MemoryPoolType", {"WORKSPACE": 0})
    TensorIOMode = enum.IntEnum("TensorIOMode", {"NONE": 0, "INPUT": 1, "OUTPUT": 2})
    DataType = enum.IntEnum("DataType", {"FLOAT": 0, "HALF": 1, "INT8": 2, "INT32": 3})
    NUMPY = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8,
             DataType.INT32: np.int32}

    def nptype(trt_type):
        return NUMPY[DataType(trt_type)]

    def data_type(ort_type: str):
        return DataType.HALF if ort_type == "tensor(float16)" else DataType.FLOAT

    class Network:
        def __init__(self, flags):
            self.flags, self.onnx_bytes, self.dynamic, self.input_type = flags, None, False, None

    class OnnxParser:
        def __init__(self, network, logger):
            self.network, self.errors = network, []

        def parse_from_file(self, path):
            data = open(path, "rb").read()
            try:
                model = onnx.load_from_string(data)
                onnx.checker.check_model(model)
            except Exception as exc:
                self.errors.append(str(exc))
                return False
            # TensorRT's parser takes INT8 Q/DQ with zero point 0 only (no uint8, no int32 bias DQ)
            constants = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
            for node in model.graph.node:
                if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
                    zero_point = constants.get(node.input[2])
                    if zero_point is not None and (zero_point.dtype != np.int8 or np.any(zero_point != 0)):
                        self.errors.append(f"{node.name}: unsupported zero point {zero_point.dtype}")
                        return False
            first = model.graph.input[0].type.tensor_type
            self.network.onnx_bytes = data
            self.network.dynamic = any(not d.HasField("dim_value") for d in first.shape.dim)
            self.network.input_type = onnx.TensorProto.DataType.Name(first.elem_type)
            return True

        @property
        def num_errors(self):
            return len(self.errors)

        def get_error(self, i):
            return self.errors[i]

    class TimingCache:
        def __init__(self, data):
            self.data = bytes(data) or b"fresh-cache"

        def serialize(self):
            return self.data + b"+1"

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, min, opt, max):
            self.shapes[name] = (tuple(min), tuple(opt), tuple(max))

    class BuilderConfig:
        def __init__(self):
            self.flags, self.profiles, self.pools, self.cache = set(), [], {}, None

        def set_memory_pool_limit(self, pool, size):
            self.pools[MemoryPoolType(pool).name] = size

        def set_flag(self, flag):
            self.flags.add(BuilderFlag(flag).name)

        def add_optimization_profile(self, profile):
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def create_timing_cache(self, data):
            return TimingCache(data)

        def set_timing_cache(self, cache, ignore_mismatch):
            self.cache = cache
            return True

        def get_timing_cache(self):
            return self.cache

    class Builder:
        def __init__(self, logger):
            self.logger = logger

        def create_network(self, flags=0):
            return Network(flags)

        def create_builder_config(self):
            return BuilderConfig()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            strongly_typed = strong_only or bool(network.flags & (1 << NetworkDefinitionCreationFlag.STRONGLY_TYPED))
            if strongly_typed and config.flags & {"FP16", "INT8"}:
                self.logger.log(_Severity.ERROR, "precision flags are not allowed on a strongly typed network")
                return None
            if network.dynamic and not config.profiles:
                self.logger.log(_Severity.ERROR, "dynamic input without an optimization profile")
                return None
            record = {"flags": sorted(config.flags), "strongly_typed": strongly_typed, "pools": config.pools,
                      "profiles": [{k: [list(s) for s in v] for k, v in p.shapes.items()} for p in config.profiles],
                      "cache_in": config.cache.data.decode() if config.cache else None,
                      "input_type": network.input_type}
            trt.calls.append(("build", record))
            self.logger.log(_Severity.INFO, "fake build done")
            self.logger.log(_Severity.VERBOSE, "verbose noise")
            return HEADER + json.dumps(record).encode() + b"\n" + network.onnx_bytes

    class Engine:
        def __init__(self, record, onnx_bytes):
            self.session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
            i, outputs = self.session.get_inputs()[0], self.session.get_outputs()
            self.names = [i.name] + [o.name for o in outputs]
            self.types = {t.name: data_type(t.type) for t in [i, *outputs]}
            self.static_batch = i.shape[0] if isinstance(i.shape[0], int) else None
            self.input_chw = tuple(i.shape[1:])
            self.output_shapes = {o.name: tuple(o.shape[1:]) for o in outputs}  # a classifier: (classes,)
            self.profile = record["profiles"][0][i.name] if record["profiles"] else None
            self.num_io_tensors = len(self.names)

        def get_tensor_name(self, index):
            return self.names[index]

        def get_tensor_mode(self, name):
            if name not in self.names:
                return TensorIOMode.NONE
            return TensorIOMode.INPUT if name == self.names[0] else TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name):
            return self.types[name]

        def get_tensor_shape(self, name):
            batch = self.static_batch if self.static_batch else -1
            return (batch, *self.input_chw) if name == self.names[0] else (batch, *self.output_shapes[name])

        def get_tensor_profile_shape(self, name, profile_index):
            return [tuple(s) for s in self.profile]

        def create_execution_context(self):
            return Context(self)

    class Context:
        def __init__(self, engine):
            self.engine, self.shape, self.addresses = engine, None, {}
            if engine.static_batch:
                self.shape = (engine.static_batch, *engine.input_chw)

        def set_input_shape(self, name, shape):
            """False, as TensorRT answers, for a shape outside the profile (it logs, never raises)."""
            if self.engine.profile is None:  # a fixed-shape engine takes its own shape only
                return tuple(shape) == self.shape
            lo, hi = self.engine.profile[0][0], self.engine.profile[2][0]
            if name != self.engine.names[0] or tuple(shape[1:]) != self.engine.input_chw or not lo <= shape[0] <= hi:
                return False
            self.shape = tuple(shape)
            return True

        def get_tensor_shape(self, name):
            if name == self.engine.names[0]:
                return self.shape
            return (self.shape[0], *self.engine.output_shapes[name])

        def set_tensor_address(self, name, ptr):
            if name not in self.engine.names:
                return False
            self.addresses[name] = ptr
            return True

        def execute_async_v3(self, stream_handle):
            inp, *outs = self.engine.names
            if set(self.addresses) != set(self.engine.names) or self.shape is None:
                return False
            in_type = nptype(self.engine.types[inp])
            n = int(np.prod(self.shape)) * np.dtype(in_type).itemsize
            x = np.frombuffer(bytes(cuda.memory[self.addresses[inp]][:n]), in_type).reshape(self.shape)
            for out, y in zip(outs, self.engine.session.run(None, {inp: x})):
                y = y.astype(nptype(self.engine.types[out]))
                if y.ndim == 2:  # a classifier's logits
                    y = _corrupt(y, trt.corrupt_outputs)
                cuda.memory[self.addresses[out]][: y.nbytes] = y.tobytes()
            return True

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            if not data.startswith(HEADER):
                return None
            header, onnx_bytes = data[len(HEADER):].split(b"\n", 1)
            return Engine(json.loads(header), onnx_bytes)

    for name, value in dict(ILogger=ILogger, Logger=Logger, NetworkDefinitionCreationFlag=NetworkDefinitionCreationFlag,
                            BuilderFlag=BuilderFlag, MemoryPoolType=MemoryPoolType, TensorIOMode=TensorIOMode,
                            DataType=DataType, nptype=nptype, OnnxParser=OnnxParser, Builder=Builder,
                            Runtime=Runtime).items():
        setattr(trt, name, value)
    return trt


def _corrupt(y: np.ndarray, how) -> np.ndarray:
    """The logits of a wrong engine: classes swapped (True) or noise of that scale (a float)."""
    if how is True:
        return np.ascontiguousarray(y[:, ::-1])
    if how:
        noise = np.random.default_rng(len(y)).standard_normal(y.shape) * float(how)
        return (y.astype(np.float32) + noise).astype(y.dtype)
    return y


def install(monkeypatch, version: str = "10.3.0") -> tuple[types.ModuleType, FakeCuda]:
    """Make `import tensorrt` return the fake and give every TrtModel fake device memory."""
    import sys

    from fercomp.deploy.board import trt_runtime

    cuda = FakeCuda()
    trt = make_module(cuda, version)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(trt_runtime, "CudaRuntime", cuda.open)
    return trt, cuda
