"""The export formats beside ONNX and TensorRT, in one table: the file each writes in a run folder,
how to export it (from the run's verified ONNX or model), and how to open a predictor over it.

`runtime.load`, `export_run` and `bench` look formats up here, so a new runtime is one module
(e.g. `openvino_backend.py`) plus one entry below.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from ..errors import ConfigError

# every value `fercomp export --format` takes; onnx is always written (the others convert from it)
FORMATS = ("onnx", "openvino", "litert", "ncnn", "tensorrt")

# backend -> (module, entry file in a run folder, file suffix, predictor class, export function)
EDGE = {
    "openvino": ("openvino_backend", "model.xml", ".xml", "OpenVINOPredictor", "export_openvino"),
    "litert": ("litert_backend", "model.tflite", ".tflite", "LiteRTPredictor", "export_litert"),
    "ncnn": ("ncnn_backend", "model.ncnn.param", ".ncnn.param", "NCNNPredictor", "export_ncnn"),
}
# backend -> (the package its runtime imports, the file holding its weights, the converter's package)
RUNTIME = {
    "openvino": ("openvino", "model.bin", "openvino"),
    "litert": ("ai_edge_litert", "model.tflite", "litert_torch"),
    "ncnn": ("ncnn", "model.ncnn.bin", "pnnx"),
}


def parse_formats(text: str | None) -> tuple[str, ...]:
    """`--format onnx,openvino` -> ("onnx", "openvino"); None -> ("onnx",) (today's default)."""
    if text is None:
        return ("onnx",)
    names = tuple(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in FORMATS]
    if not names or unknown:
        raise ConfigError(f"--format must be one or more of {', '.join(FORMATS)}, comma-separated "
                          f"(got {text!r})")
    return names


def _module(backend: str):
    return importlib.import_module(f".{EDGE[backend][0]}", __package__)


def entry_file(backend: str) -> str:
    return EDGE[backend][1]


def runtime_module(backend: str) -> str:
    return RUNTIME[backend][0]


def require_format(backend: str) -> None:
    """MissingExtra (one line, exit 2, naming the extra) unless `backend`'s converter and runtime import."""
    from .extras import require

    if backend in RUNTIME:
        for module in dict.fromkeys((RUNTIME[backend][2], RUNTIME[backend][0])):
            require(module)


def preflight(backend: str, run, cfg) -> None:
    """The format's own checks of the run and the options (e.g. NCNN takes no INT8 run), before any work."""
    check = getattr(_module(backend), "preflight", None)
    if check is not None:
        check(run, cfg)


def weights_file(backend: str) -> str:
    return RUNTIME[backend][1]


def backend_for_file(path: Path) -> str | None:
    return next((b for b, entry in EDGE.items() if path.name.endswith(entry[2])), None)


def open_predictor(backend: str, path: Path, *, threads: int | None, batch_size: int,
                   ov_precision: str = "auto") -> Any:
    options = {"precision": ov_precision} if backend == "openvino" else {}
    return getattr(_module(backend), EDGE[backend][3])(path, threads=threads, batch_size=batch_size, **options)


def export_format(backend: str, run, cfg, reference, log) -> dict[str, Any]:
    return getattr(_module(backend), EDGE[backend][4])(run, cfg, reference, log)


def kept(run, backend: str) -> bool:
    """The run's manifest records a `backend` export whose files are all still there."""
    record = (run.manifest.get("export") or {}).get(backend) or {}
    return bool(record.get("files")) and all((run.path / name).is_file() for name in record["files"])


def remove_converted(run) -> None:
    """Delete every edge-format file converted from the run's previous ONNX, and its records."""
    export = dict(run.manifest.get("export") or {})
    files = dict(run.manifest.get("files") or {})
    for backend in EDGE:
        for name in ((export.pop(backend, None) or {}).get("files") or {}):
            (run.path / name).unlink(missing_ok=True)
            files.pop(name, None)
    run.update(export=export, files=files)
