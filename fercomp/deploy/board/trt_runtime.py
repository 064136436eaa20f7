"""TensorRT runtime for a fercomp engine, with no dependency but numpy and TensorRT.

This one file is both fercomp's TensorRT backend (`fercomp.deploy.runtime` imports it) and the
runtime shipped in the Jetson bundle (copied verbatim), so the board runs exactly the code that
was tested here. GPU memory is handled through the CUDA runtime library with ctypes: every host
with TensorRT has libcudart, while pycuda / cuda-python / torch may be absent on a board.

TensorRT 10 / 11 API: named I/O tensors (`num_io_tensors`, `get_tensor_name`, `get_tensor_mode`,
`get_tensor_dtype`, `set_input_shape`, `set_tensor_address`) and `execute_async_v3`. Each tensor's
dtype is read from the engine: an fp16 engine built by TensorRT 11 from an fp16 ONNX takes and
returns float16, so inputs are converted to it and logits come back as float32 either way.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
from pathlib import Path

import numpy as np

H2D, D2H = 1, 2  # cudaMemcpyKind
CUDART_NAMES = ("cudart", "libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0")


def _wheel_cudart() -> list[str]:
    """libcudart from NVIDIA's pip wheels (nvidia-cuda-runtime-cu12/13), where pip-installed TensorRT finds it."""
    import glob
    import site

    roots = site.getsitepackages() + [site.getusersitepackages()]
    return sorted(p for root in roots for p in glob.glob(f"{root}/nvidia/cu*/lib/libcudart.so*")
                  + glob.glob(f"{root}/nvidia/cuda_runtime/lib/libcudart.so*"))


class CudaRuntime:
    """The few CUDA runtime calls inference needs: device buffers, one stream, async copies."""

    def __init__(self, library: str | None = None):
        self.lib = self._load(library)
        self.stream = ctypes.c_void_p()
        self._check(self.lib.cudaStreamCreate(ctypes.byref(self.stream)), "cudaStreamCreate")

    @staticmethod
    def _load(library: str | None):
        candidates = [library] if library else [os.environ.get("FERCOMP_CUDART")] + [
            ctypes.util.find_library(n) or n for n in CUDART_NAMES] + ["/usr/local/cuda/lib64/libcudart.so"] + _wheel_cudart()
        for name in filter(None, candidates):
            try:
                return ctypes.CDLL(name)
            except OSError:
                continue
        raise RuntimeError("the CUDA runtime (libcudart) was not found; set FERCOMP_CUDART to its path")

    def _check(self, status: int, what: str) -> None:
        if status != 0:
            self.lib.cudaGetErrorString.restype = ctypes.c_char_p
            raise RuntimeError(f"{what} failed: {self.lib.cudaGetErrorString(status).decode()} ({status})")

    def malloc(self, nbytes: int) -> int:
        ptr = ctypes.c_void_p()
        self._check(self.lib.cudaMalloc(ctypes.byref(ptr), ctypes.c_size_t(nbytes)), "cudaMalloc")
        return int(ptr.value)

    def free(self, ptr: int) -> None:
        self._check(self.lib.cudaFree(ctypes.c_void_p(ptr)), "cudaFree")

    def copy_to_device(self, device_ptr: int, host: np.ndarray) -> None:
        self._check(self.lib.cudaMemcpyAsync(ctypes.c_void_p(device_ptr), ctypes.c_void_p(host.ctypes.data),
                                             ctypes.c_size_t(host.nbytes), H2D, self.stream), "cudaMemcpyAsync H2D")

    def copy_to_host(self, host: np.ndarray, device_ptr: int) -> None:
        self._check(self.lib.cudaMemcpyAsync(ctypes.c_void_p(host.ctypes.data), ctypes.c_void_p(device_ptr),
                                             ctypes.c_size_t(host.nbytes), D2H, self.stream), "cudaMemcpyAsync D2H")

    def synchronize(self) -> None:
        self._check(self.lib.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")

    @property
    def stream_handle(self) -> int:
        return int(self.stream.value or 0)

    def close(self) -> None:
        if self.stream.value:
            self.lib.cudaStreamDestroy(self.stream)
            self.stream = ctypes.c_void_p()


class TrtModel:
    """A deserialized engine with one float input [N, C, H, W] and its outputs: [N, classes] for a
    classifier (`infer`), or several (the face detector's boxes and scores: `infer_all`).

    Owns a CUDA stream and device buffers: close it (or use it as a context manager) when done."""

    def __init__(self, engine_path: str | Path, cuda: CudaRuntime | None = None, trt=None):
        if trt is None:
            import tensorrt as trt
        self.trt = trt
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)
        self.cuda = cuda or CudaRuntime()
        try:
            self._open(Path(engine_path))
        except BaseException:
            self.close()  # the stream exists already: do not leak it on a bad engine
            raise

    def _open(self, engine_path: Path) -> None:
        trt = self.trt
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise RuntimeError(f"{engine_path}: TensorRT could not deserialize this engine "
                               "(built by another TensorRT version or for another GPU?)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or not outputs:
            raise RuntimeError(f"{engine_path}: expected one input and outputs, found {inputs} and {outputs}")
        self.input_name, self.output_names = inputs[0], outputs
        self.output_name = outputs[0]
        self.input_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.input_name)))
        self.output_dtypes = [np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in outputs]
        self.output_dtype = self.output_dtypes[0]
        self.input_shape = tuple(self.engine.get_tensor_shape(self.input_name))
        self.dynamic_batch = self.input_shape[0] == -1
        # the largest batch the engine accepts: the profile's max when dynamic, else the fixed batch
        self.max_batch = (self.engine.get_tensor_profile_shape(self.input_name, 0)[2][0]
                          if self.dynamic_batch else self.input_shape[0])

    def __enter__(self) -> "TrtModel":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _device_buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(name, (0, 0))
        if size < nbytes:  # grow, never shrink: batches vary between calls
            if ptr:
                self.cuda.free(ptr)
            ptr, size = self.cuda.malloc(nbytes), nbytes
            self._buffers[name] = (ptr, size)
        return ptr

    def _bind(self, batch: np.ndarray) -> tuple[int, list[tuple[int, np.ndarray]]]:
        """Set the input shape and every tensor address: (input pointer, [(output pointer, host output)])."""
        if self.dynamic_batch and not self.context.set_input_shape(self.input_name, batch.shape):
            raise RuntimeError(f"the engine rejected input shape {batch.shape} (outside its optimization profile)")
        in_ptr = self._device_buffer(self.input_name, batch.nbytes)
        bound = [(self.input_name, in_ptr)]
        outputs = []
        for name, dtype in zip(self.output_names, self.output_dtypes):
            host = np.empty(tuple(self.context.get_tensor_shape(name)), dtype=dtype)
            ptr = self._device_buffer(name, host.nbytes)
            outputs.append((ptr, host))
            bound.append((name, ptr))
        for name, ptr in bound:
            if not self.context.set_tensor_address(name, ptr):
                raise RuntimeError(f"TensorRT refused the device address of {name}")
        return in_ptr, outputs

    def execute(self) -> None:
        """Run the engine on the batch already on the device and wait: no host-device copies."""
        if not self.context.execute_async_v3(self.cuda.stream_handle):
            raise RuntimeError("TensorRT execution failed")
        self.cuda.synchronize()

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        in_ptr, outputs = self._bind(batch)
        self.cuda.copy_to_device(in_ptr, batch)
        if not self.context.execute_async_v3(self.cuda.stream_handle):
            raise RuntimeError("TensorRT execution failed")
        for ptr, host in outputs:
            self.cuda.copy_to_host(host, ptr)
        self.cuda.synchronize()
        return [host for _, host in outputs]

    def _chunks(self, x: np.ndarray):
        """(chunk in the engine's input dtype, real rows) pieces the engine accepts; fixed batches padded."""
        x = np.ascontiguousarray(x, dtype=self.input_dtype)
        step = self.max_batch
        for start in range(0, len(x), step):
            chunk = x[start : start + step]
            n = len(chunk)
            if not self.dynamic_batch and n < step:  # a fixed-batch engine: pad the last chunk
                chunk = np.concatenate([chunk, np.zeros((step - n, *chunk.shape[1:]), chunk.dtype)])
            yield np.ascontiguousarray(chunk), n

    def infer(self, x: np.ndarray) -> np.ndarray:
        """float [N, C, H, W] -> float32 logits [N, classes], in chunks the engine accepts."""
        outs = [self._run(chunk)[0][:n].astype(np.float32) for chunk, n in self._chunks(x)]
        return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)

    def infer_all(self, x: np.ndarray) -> list[np.ndarray]:
        """float [N, C, H, W] (N within the engine's batch) -> every output as float32, in engine order."""
        (chunk, n), = self._chunks(x[: self.max_batch])
        return [out[:n].astype(np.float32) for out in self._run(chunk)]

    def stage(self, x: np.ndarray) -> None:
        """Copy one batch (at most `max_batch` images) to the device and bind it, for `execute`:
        how `bench` times the engine without host-device copies."""
        if len(x) > self.max_batch:
            raise ValueError(f"batch {len(x)} exceeds the engine's largest batch {self.max_batch}")
        (chunk, _), = self._chunks(x)
        in_ptr, _ = self._bind(chunk)
        self.cuda.copy_to_device(in_ptr, chunk)
        self.cuda.synchronize()

    def close(self) -> None:
        """Free the device buffers and the CUDA stream; safe to call twice."""
        for ptr, _ in self._buffers.values():
            self.cuda.free(ptr)
        self._buffers.clear()
        if self.cuda is not None:
            self.cuda.close()
            self.cuda = None


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def load_metadata(path: str | Path) -> dict:
    """The model's metadata JSON (class names, input size, normalisation) written beside the engine."""
    return json.loads(Path(path).read_text())


def preprocess(images: np.ndarray, meta: dict) -> np.ndarray:
    """uint8 grayscale [N, H, W] -> normalised float32 [N, 1, h, w], exactly as fercomp trains."""
    images = np.asarray(images)
    if images.ndim == 2:
        images = images[None]
    h, w = meta["input_size"]
    if images.shape[1:] != (h, w):
        import cv2  # JetPack ships OpenCV; only needed when crops are not already model-sized

        images = np.stack([cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA) for im in images])
    norm = meta["normalization"]
    return ((images.astype(np.float32) / 255.0 - norm["mean"]) / norm["std"])[:, None]
