"""What device a figure was measured on, without fercomp or torch: CPU, and on a Jetson the
board model, L4T/JetPack release and power mode (nvpmodel)."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace").strip("\x00\n ")
    except OSError:
        return None


def l4t_release(text: str | None) -> str | None:
    """'# R36 (release), REVISION: 4.3, ...' (from /etc/nv_tegra_release) -> '36.4.3'."""
    if not text:
        return None
    match = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    return f"{match.group(1)}.{match.group(2)}" if match else None


def power_mode(nvpmodel_output: str | None) -> str | None:
    """'NV Power Mode: MAXN\\n0' (from `nvpmodel -q`) -> 'MAXN'."""
    if not nvpmodel_output:
        return None
    match = re.search(r"NV Power Mode:\s*(\S+)", nvpmodel_output)
    return match.group(1) if match else None


def jetson_info() -> dict | None:
    """Board, L4T release and power mode on a Jetson; None elsewhere."""
    model = _read("/proc/device-tree/model")
    release = _read("/etc/nv_tegra_release")
    if not release and not (model and "jetson" in model.lower()):
        return None
    try:
        mode = subprocess.run(["nvpmodel", "-q"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        mode = None
    return {"board": model, "l4t": l4t_release(release), "power_mode": power_mode(mode)}


def device_info() -> dict:
    info = {"cpu": cpu_model(), "cores": os.cpu_count(), "machine": platform.machine(),
            "hostname": platform.node(), "python": platform.python_version()}
    jetson = jetson_info()
    if jetson:
        info["jetson"] = jetson
    for module in ("tensorrt", "onnxruntime"):
        try:
            info[module] = __import__(module).__version__
        except Exception:
            pass
    return info
