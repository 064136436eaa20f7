"""Which machine a figure was measured on: CPU, cores, threads, GPU and library versions."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import torch

from .deploy.board.board_info import cpu_model, jetson_info
from .runs import library_versions


def host_info() -> dict:
    info = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gb": _memory_gb(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        **library_versions(),
    }
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    info.update(_gpu_stack())
    jetson = jetson_info()
    if jetson:
        info["jetson"] = jetson
    return info


def _gpu_stack() -> dict:
    """CUDA runtime (torch's), NVIDIA driver and TensorRT versions where they exist."""
    out: dict = {"cuda": torch.version.cuda if torch.cuda.is_available() else None}
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=10)
        out["driver"] = done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        out["driver"] = None
    try:
        import tensorrt

        out["tensorrt"] = tensorrt.__version__
    except Exception:
        out["tensorrt"] = None
    return out


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None
