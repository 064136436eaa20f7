"""The integer range of INT8 weights, and why the default leaves the top bit unused.

On x86 CPUs without VNNI (AVX2, and AVX-512 before Cascade Lake: Zen 2/3 EPYCs, Skylake Xeons)
ONNX Runtime multiplies uint8 activations by int8 weights with VPMADDUBSW, which adds each pair of
products into an int16 and saturates there: 255 * 127 * 2 = 64,770 does not fit in 32,767.
VNNI CPUs sum into int32 and never saturate, so the same INT8 model gives different answers on
different machines (measured: zoo compact-int8 67.48% on an AVX-512 VNNI EPYC, 63.61% on CI's
CPU). ONNX Runtime's documented remedy is `reduce_range`: weights in [-64, 64], so a pair is at
most 255 * 64 * 2 = 32,640 and every x86 kernel computes the exact same integers.
`full` keeps [-127, 127] for targets without the problem (TensorRT, VNNI-only fleets).
"""

from __future__ import annotations

from ..errors import ConfigError

WEIGHT_RANGES = {"reduced": (-64, 64), "full": (-127, 127)}
INT16_MAX = 32767


def weight_limits(weight_range: str) -> tuple[int, int]:
    if weight_range not in WEIGHT_RANGES:
        raise ConfigError(f"--weight-range must be one of {', '.join(WEIGHT_RANGES)} (got {weight_range!r})")
    return WEIGHT_RANGES[weight_range]


def describe(weight_range: str) -> str:
    """The manifest's words for the weight encoding."""
    low, high = weight_limits(weight_range)
    return f"int8 per-channel symmetric, integers in [{low}, {high}]"


def saturation_free(max_abs_weight: int, max_activation: int = 255) -> bool:
    """True when no pair of uint8 x int8 products can overflow VPMADDUBSW's int16 sums."""
    return 2 * max_activation * max_abs_weight <= INT16_MAX


def max_abs_weight(model) -> int:
    """Largest |integer| among the int8 weights a Conv / Gemm / MatMul of a QDQ model multiplies by."""
    import numpy as np
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    dequantized = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    largest = 0
    for node in model.graph.node:
        if node.op_type in ("Conv", "Gemm", "MatMul") and len(node.input) > 1 and node.input[1] in dequantized:
            source = inits.get(dequantized[node.input[1]])
            if source is not None:
                values = numpy_helper.to_array(source)
                if values.dtype == np.int8:
                    largest = max(largest, int(np.abs(values.astype(np.int16)).max()))
    return largest


def saturation_record(path) -> dict:
    """The manifest's record of whether x86 kernels without VNNI compute an INT8 ONNX file exactly."""
    import onnx

    largest = max_abs_weight(onnx.load(str(path)))
    return {"max_abs_weight": largest, "exact_on_non_vnni_x86": saturation_free(largest)}
