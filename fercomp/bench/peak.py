"""This host's measured peak, so every row can say how close to the hardware it runs.

FP32: the faster of a large PyTorch matrix product and ONNX Runtime's MatMul. INT8: ONNX
Runtime's MatMulInteger (uint8 x int8 -> int32, its VNNI/AVX2 GEMM) on the same sizes. Both at
the benchmark's thread count; MAC/s = m*n*k / fastest call's time.
"""

from __future__ import annotations

import time

import numpy as np
import torch


SIZE = 1024


def _ort_session(model_bytes: bytes, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def _matmul_model(op: str, a_type: int, b_type: int, out_type: int) -> bytes:
    from onnx import helper

    graph = helper.make_graph(
        [helper.make_node(op, ["a", "b"], ["c"])], "peak",
        [helper.make_tensor_value_info("a", a_type, [SIZE, SIZE]), helper.make_tensor_value_info("b", b_type, [SIZE, SIZE])],
        [helper.make_tensor_value_info("c", out_type, [SIZE, SIZE])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()


def _macs_per_s(fn, iters: int) -> float:
    """MAC/s of the fastest of `iters` calls: a peak is what the host can do, not what it usually does."""
    for _ in range(3):
        fn()
    best = float("inf")
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return SIZE**3 / best


def host_peak(threads: int, iters: int = 20) -> dict[str, float]:
    """Peak MAC/s for FP32 (torch and ORT, the larger counts) and INT8 (ORT MatMulInteger)."""
    from onnx import TensorProto

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    a, b = torch.randn(SIZE, SIZE), torch.randn(SIZE, SIZE)
    torch_fp32 = _macs_per_s(lambda: torch.mm(a, b), iters)
    f32 = _ort_session(_matmul_model("MatMul", TensorProto.FLOAT, TensorProto.FLOAT, TensorProto.FLOAT), threads)
    feed32 = {"a": rng.standard_normal((SIZE, SIZE), dtype=np.float32), "b": rng.standard_normal((SIZE, SIZE), dtype=np.float32)}
    ort_fp32 = _macs_per_s(lambda: f32.run(None, feed32), iters)
    i8 = _ort_session(_matmul_model("MatMulInteger", TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32), threads)
    feed8 = {"a": rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8), "b": rng.integers(-128, 128, (SIZE, SIZE), dtype=np.int8)}
    ort_int8 = _macs_per_s(lambda: i8.run(None, feed8), iters)
    return {"threads": threads, "fp32_macs_per_s": max(torch_fp32, ort_fp32), "int8_macs_per_s": ort_int8,
            "torch_fp32_macs_per_s": torch_fp32, "ort_fp32_macs_per_s": ort_fp32,
            "method": f"{SIZE}x{SIZE}x{SIZE} matrix products, fastest of {iters} after warm-up"}


def efficiency(row: dict, peak: dict | None) -> tuple[float | None, float | None]:
    """(achieved MAC/s, fraction of this host's peak for the row's precision) for a measured row."""
    if not peak or row.get("status") != "ok" or not row.get("macs") or not row.get("images_per_s"):
        return None, None
    achieved = row["macs"] * row["images_per_s"]
    key = "int8_macs_per_s" if row.get("precision") == "int8" else "fp32_macs_per_s"
    return achieved, achieved / peak[key]
