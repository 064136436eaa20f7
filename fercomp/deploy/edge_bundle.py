"""`fercomp deploy RUN --target rpi|x86`: a tar.gz a CPU board runs without fercomp.

- rpi (Raspberry Pi and other ARM boards): the run's LiteRT model (`--runtime litert`, the default;
  full-integer INT8 for a quantized run, FP32 otherwise) or its NCNN model (`--runtime ncnn`);
- x86 (Intel/AMD mini-PCs): the run's OpenVINO IR (INT8 for a quantized run).

The bundle carries the verified export's files exactly as `fercomp export --format` wrote and
recorded them (exported first when the run has none), `model.json` (the export's metadata with the
run's params, MACs, parity and fercomp's accuracy on the bundled images), the board runtime
`fercomp_board/` (no fercomp import: `edge_runtime.py` runs the classifier, `edge_detect.py` finds and
classifies faces with BlazeFace's `detector.onnx`, `edge_bench.py` benchmarks), `test_images.npz`,
`requirements.txt` (the pip line for the board), a README and SHA256SUMS.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .. import __version__
from ..runs import Run, recorded_sparsity, writable_copy
from ..ui import console
from .edge import read_metadata
from .formats import entry_file, kept, require_format, weights_file

BOARD_REQUIREMENTS = {
    "litert": "ai-edge-litert numpy opencv-python-headless onnxruntime",
    "ncnn": "ncnn numpy opencv-python-headless onnxruntime",
    "openvino": "openvino numpy opencv-python-headless",
}
BOARD_NAMES = {"rpi": "a Raspberry Pi (or another ARM board, 64-bit OS)", "x86": "an Intel/AMD x86 mini-PC"}
RUNTIME_NAMES = {"litert": "LiteRT (XNNPACK)", "ncnn": "NCNN", "openvino": "OpenVINO (CPU)"}


def edge_readme(run: Run, meta: dict[str, Any], target: str, fmt: str) -> str:
    parity = meta.get("parity") or {}
    reference = meta.get("reference_accuracy") or {}
    detector = "ONNX Runtime" if fmt != "openvino" else "OpenVINO (it reads detector.onnx directly)"
    return f"""# {run.name} on {BOARD_NAMES[target]}

Model `{meta['model']}` ({meta['precision']}) in {RUNTIME_NAMES[fmt]}: `{meta['file']}`, input
{meta['input_size'][0]}x{meta['input_size'][1]} grayscale face crops, classes: {', '.join(meta['class_names'])}.
Exported by fercomp {__version__} from run `{run.name}`; on the PC it agreed with PyTorch on
{parity.get('top1_agreement', float('nan')):.2%} of {parity.get('images', '?')} held-out images
({parity.get('against', '')}) and scored {reference.get('accuracy', float('nan')):.2%} on the bundled test images.

Needs Python 3.9+ and: `pip install {BOARD_REQUIREMENTS[fmt]}` (requirements.txt). No fercomp.

1. Benchmark (latency, throughput, accuracy on test_images.npz, the CPU):

       python3 -m fercomp_board.edge_bench --threads 4

   prints a table and writes `bench_<hostname>.json` in `fercomp bench`'s report format
   (`fercomp bench --merge` puts it beside the PC's rows); a model that scores more than 2 points
   below the accuracy above is refused (exit 3). Try --threads 1 too: NCNN splits each layer
   across its threads, which costs more than it gains on a 48x48 model on a busy CPU.

2. Find the faces in photos and videos (BlazeFace on {detector}) and classify them:

       python3 -m fercomp_board.edge_detect photo.jpg clip.mp4 --every 2

   or classify face crops directly: `python3 -m fercomp_board.edge_detect face.png --no-detect`.
   One tab-separated line per face: source, frame, x, y, w, h, emotion, confidence.

Preprocessing (`fercomp_board/trt_runtime.py`, the function every fercomp backend uses; its TensorRT
part is not used here): grayscale uint8, resize to the input size (INTER_AREA),
x = (pixel/255 - {meta['normalization']['mean']}) / {meta['normalization']['std']}, NCHW float32.
The output is logits; softmax gives probabilities. Check files with `sha256sum -c SHA256SUMS`.
"""


def _reference_accuracy(run: Run, fmt: str, split, where: str) -> dict[str, Any]:
    """fercomp's accuracy with this very file on the bundled images (OpenVINO in f32, as the board runs it)."""
    from .runtime import load

    predicted = load(run.path, backend=fmt, ov_precision="f32").predict_proba(split.x).argmax(1)
    return {"accuracy": float((predicted == split.y).mean()), "images": int(len(split.y)), "backend": fmt,
            "data": where}


def edge_bundle_files(run: Run, cfg, progress: bool) -> dict[str, bytes]:
    """Every file of a rpi / x86 bundle by its path inside the bundle folder."""
    from .bundle import BOARD_PACKAGE, EDGE_MODULES, TEST_IMAGES, detector_files, test_images_npz
    from .export import ExportConfig, export_run, held_out_split

    fmt = cfg.edge_runtime()
    if not kept(run, fmt):
        require_format(fmt)  # before anything is written
        from .formats import preflight

        export_cfg = ExportConfig(run=str(run.path), formats=("onnx", fmt), ov_precision="f32", data=cfg.data)
        preflight(fmt, run, export_cfg)
        if progress:
            console.print(f"{run.name} has no verified {fmt} export yet: exporting it first")
        export_run(export_cfg, progress=progress)
        run = Run.load(writable_copy(run).path)  # a zoo model exported into its copy in artifacts/
    record = run.manifest["export"][fmt]
    entry = entry_file(fmt)
    lineage_root = run.lineage()[0]
    meta = {**read_metadata(run.path / entry), "format": fmt, "target": cfg.target, "file": entry,
            "weights": weights_file(fmt), "params": run.manifest.get("params"), "macs": run.manifest.get("macs"),
            "sparsity": recorded_sparsity(run), "run": run.name, "parent": run.parent.name if run.parent else None,
            "root_run": lineage_root.name, "parity": record.get("parity")}
    files = {name: (run.path / name).read_bytes() for name in record["files"]}
    for name in EDGE_MODULES:
        files[f"fercomp_board/{name}"] = (BOARD_PACKAGE / name).read_bytes()
    files.update(detector_files())
    if cfg.test_images:
        split, class_names, where = held_out_split(run, cfg.data)
        files[TEST_IMAGES] = test_images_npz(split, class_names)
        meta["reference_accuracy"] = _reference_accuracy(run, fmt, split, where)
    files["model.json"] = (json.dumps(meta, indent=2) + "\n").encode()
    files["requirements.txt"] = (BOARD_REQUIREMENTS[fmt].replace(" ", "\n") + "\n").encode()
    files["README.md"] = edge_readme(run, meta, cfg.target, fmt).encode()
    files["SHA256SUMS"] = "".join(f"{hashlib.sha256(b).hexdigest()}  {n}\n" for n, b in sorted(files.items())).encode()
    return files
