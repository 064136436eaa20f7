"""`fercomp deploy RUN --target jetson`: a tar.gz a Jetson (JetPack, TensorRT 10) uses without fercomp.

The bundle holds the verified ONNX (QDQ for INT8 runs), `model.json` (classes, preprocessing,
precision, params, MACs, parity figures), `build_engine.sh` (trtexec with the precision, sparsity,
shape profile and timing cache that `fercomp export --trt` would use: both come from
`tensorrt.trtexec_command`), the board runtime package `fercomp_board/` (the very files fercomp's
TensorRT backend imports), the run's test images for an on-board accuracy check, a README and
SHA256SUMS. Jetsons run TensorRT 10 (TensorRT 11.4 does not support JetPack), but the script
reads trtexec's version banner and also builds on TensorRT 11, which has no --fp16: an fp16
bundle therefore carries `model_fp16.onnx` too (fp16 weights and I/O) for that case.
"""

from __future__ import annotations

import hashlib
import io
import json
import shlex
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from .. import __version__
from ..errors import ConfigError, require_at_least
from ..io import atomic_path, sha256_file
from ..runs import ONNX_FILE, Run, is_2to4_run, recorded_sparsity, writable_copy
from ..ui import console
from .export import EXPORT_REPORT, ExportConfig, engine_spec, export_run, held_out_split, require_tensorrt_int8
from .board.face_detect import options_to_json
from .detectors import BLAZEFACE, MODELS_DIR
from .onnx_export import read_metadata
from .tensorrt import FP16_ONNX_FILE, PRECISIONS, to_fp16_onnx, trtexec_command

TARGETS = ("jetson", "rpi", "x86")
# a CPU board's runtimes: the first is the default (rpi: LiteRT with XNNPACK, or NCNN; x86: OpenVINO)
EDGE_RUNTIMES = {"rpi": ("litert", "ncnn"), "x86": ("openvino",)}
EDGE_MODULES = ("__init__.py", "trt_runtime.py", "timing.py", "board_info.py", "report_format.py", "bench.py",
                "face_detect.py", "detect.py", "edge_runtime.py", "edge_detect.py", "edge_bench.py")
BOARD_PACKAGE = Path(__file__).parent / "board"
BOARD_MODULES = ("__init__.py", "trt_runtime.py", "timing.py", "board_info.py", "report_format.py", "bench.py",
                 "classify.py", "face_detect.py", "detect.py")
DETECTOR = "blazeface"  # the board finds faces with the short-range BlazeFace: one 128x128 network per frame
TEST_IMAGES = "test_images.npz"


@dataclass
class DeployConfig:
    run: str
    target: str = "jetson"
    out: str | None = None
    precision: str | None = None  # None: int8 for INT8 runs, else fp16 (what a Jetson runs fastest)
    sparse: bool | None = None  # None: on for 2:4-pruned runs
    max_batch: int = 64
    opt_batch: int = 16
    workspace_mib: int = 1024
    test_images: bool = True
    runtime: str | None = None  # rpi: litert (default) | ncnn; x86: openvino
    data: str | None = None  # test images from this source (default: the run's own; a zoo model needs it)

    def validate(self) -> None:
        if self.target not in TARGETS:
            raise ConfigError(f"--target must be one of {', '.join(TARGETS)} (got {self.target!r})")
        if self.target == "jetson" and self.runtime not in (None, "tensorrt"):
            raise ConfigError(f"--runtime: a Jetson bundle runs TensorRT (got {self.runtime!r})")
        if self.target in EDGE_RUNTIMES and self.runtime not in (None, *EDGE_RUNTIMES[self.target]):
            raise ConfigError(f"--runtime for --target {self.target} must be one of "
                              f"{', '.join(EDGE_RUNTIMES[self.target])} (got {self.runtime!r})")
        if self.target != "jetson" and (self.precision is not None or self.sparse):
            raise ConfigError("--precision and --sparse configure the Jetson's TensorRT engine; the "
                              f"{self.target} bundle carries the run's verified {self.edge_runtime()} export")
        if self.out is not None and not self.out.endswith((".tar.gz", ".tgz")):
            raise ConfigError(f"--out must name a .tar.gz file (got {self.out!r})")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)} (got {self.precision!r})")
        require_at_least(("--max-batch", self.max_batch, 1), ("--opt-batch", self.opt_batch, 1),
                         ("--workspace", self.workspace_mib, 16))

    def edge_runtime(self) -> str:
        return self.runtime or EDGE_RUNTIMES[self.target][0]

    def resolved_precision(self, run: Run) -> str:
        """The engine precision for this run; refuses combinations TensorRT cannot build."""
        quantized = run.stage == "quantize"
        precision = self.precision or ("int8" if quantized else "fp16")
        if precision == "int8" and not quantized:
            raise ConfigError(f"--precision int8 needs an INT8 run: quantize first "
                              f"(fercomp quantize {run.path} --activations s8-sym)")
        if quantized and precision != "int8":
            raise ConfigError(f"{run.path} is an INT8 run: its engine is int8")
        return precision


def _exported(run: Run) -> bool:
    onnx_path = run.path / ONNX_FILE
    if not (onnx_path.is_file() and (run.path / EXPORT_REPORT).is_file()):
        return False
    recorded = run.manifest.get("export", {}).get("onnx", {}).get("sha256")
    return recorded == sha256_file(onnx_path)


def _shell_array(command: list[str]) -> str:
    return "\n".join(f"    {shlex.quote(a)}" for a in command[1:])


def build_script(commands: dict[int, list[str]]) -> str:
    """build_engine.sh: detects TensorRT's major version from trtexec's banner, then runs the
    trtexec command for it (`commands[10]`: TensorRT 10, `commands[11]`: TensorRT 11 and later)."""
    too_old = ""
    if "--stronglyTyped" in commands[10]:  # TensorRT 8.6 (JetPack 6.0) cannot build this strongly typed network
        too_old = ('if [ "$TENSORRT_MAJOR" -lt 10 ]; then\n'
                   '  echo "this trtexec is TensorRT $TENSORRT_MAJOR, older than 10 (no strongly typed INT8): '
                   'use JetPack 6.1 or later" >&2\n  exit 2\nfi\n')
    return f"""#!/usr/bin/env bash
# Build model.engine on this board with trtexec: TensorRT 10 (JetPack 6.1 or later), or TensorRT 11
# (desktop GPUs; strongly typed only, so an fp16 engine is built from model_fp16.onnx without --fp16).
# Written by fercomp {__version__}; the same precision, sparsity and shape profile as `fercomp export --trt`.
set -euo pipefail
cd "$(dirname "$0")"
TRTEXEC="${{TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}}"
if [ ! -x "$TRTEXEC" ]; then
  echo "trtexec not found: install TensorRT (JetPack) or run TRTEXEC=/path/to/trtexec $0" >&2
  exit 2
fi

# TensorRT's major version from trtexec's banner "[TensorRT v100300]" (10.3.0; 8.x prints v8601 for
# 8.6.1); without a banner assume JetPack's TensorRT 10. TENSORRT_MAJOR=11 $0 overrides the detection.
trt_major() {{
  local version
  version=$("$TRTEXEC" --help 2>&1 | sed -n 's/.*\\[TensorRT v\\([0-9.]*\\)\\].*/\\1/p' | head -n 1) || true
  case "$version" in
    "") echo "no TensorRT version in trtexec's banner: assuming TensorRT 10" >&2; echo 10 ;;
    *.*) echo "${{version%%.*}}" ;;
    ??????*) echo $((10#$version / 10000)) ;;
    *) echo $((10#$version / 1000)) ;;
  esac
}}
TENSORRT_MAJOR="${{TENSORRT_MAJOR:-$(trt_major)}}"
{too_old}if [ "$TENSORRT_MAJOR" -ge 11 ]; then
  ARGS=(
{_shell_array(commands[11])}
  )
else
  ARGS=(
{_shell_array(commands[10])}
  )
fi
echo "TensorRT $TENSORRT_MAJOR: $TRTEXEC ${{ARGS[*]}}"
"$TRTEXEC" "${{ARGS[@]}}" 2>&1 | tee build.log
echo "engine written: $(pwd)/model.engine (log: build.log, timing cache: timing.cache)"

# The face detector (BlazeFace, fixed 1x3x128x128 input, float32 ONNX): no precision flag, so one
# command serves TensorRT 10 and 11; at about 0.1M parameters it is not worth an fp16 build.
"$TRTEXEC" --onnx=detector.onnx --saveEngine=detector.engine 2>&1 | tee build_detector.log
echo "engine written: $(pwd)/detector.engine (log: build_detector.log)"
"""


def board_readme(run: Run, meta: dict[str, Any], command: list[str]) -> str:
    parity = run.manifest.get("export", {}).get("parity", {})
    fp16_note = f" from {FP16_ONNX_FILE}: its engine takes and returns float16" if meta["precision"] == "fp16" else ""
    names = ", ".join(meta["class_names"])
    return f"""# {run.name} on a Jetson

Model `{meta['model']}` ({meta['precision']}), input {meta['input_size'][0]}x{meta['input_size'][1]} grayscale face
crops, classes: {names}. Exported by fercomp {__version__} from run `{run.name}`; on the PC the ONNX agreed
with PyTorch on {parity.get('top1_agreement', float('nan')):.2%} of {parity.get('images', '?')} test images.

Needs JetPack 6.1 or later (TensorRT 10, its Python bindings, numpy; OpenCV for classify). Nothing else.

1. Build the engine (minutes; the timing cache makes rebuilds fast):

       ./build_engine.sh

   which runs, on TensorRT 10: `{' '.join(command)}`
   (on a TensorRT 11 host, which has no weak typing, it runs the strongly typed equivalent{fp16_note})

2. Benchmark it (latency, throughput, accuracy on test_images.npz, board and power mode):

       python3 -m fercomp_board.bench

   It prints a table (latency with host-device copies, and of the engine alone) and writes
   `bench_<hostname>.json` in `fercomp bench`'s report format; an engine whose accuracy falls more
   than 2 points below ONNX Runtime's on the same images is refused (exit 3, no report):
   copy it back and run `fercomp bench --merge cpu/report.json bench_<hostname>.json`.
   Set the power mode first (`sudo nvpmodel -m 0; sudo jetson_clocks`) and say which you used.

3. Classify face crops:

       python3 -m fercomp_board.classify face.png

   or find the faces in photos and videos first (BlazeFace on TensorRT, `detector.engine`):

       python3 -m fercomp_board.detect photo.jpg clip.mp4 --every 2

Preprocessing (in `fercomp_board/trt_runtime.py`): grayscale uint8, resize to the input size
(INTER_AREA), x = (pixel/255 - {meta['normalization']['mean']}) / {meta['normalization']['std']}, NCHW float32
(converted to the engine's input dtype by the runtime).
The output is logits; softmax gives probabilities. Check files with `sha256sum -c SHA256SUMS`.
"""


def _board_meta(run: Run, onnx_path: Path, precision: str, sparse: bool, spec) -> dict[str, Any]:
    lineage_root = run.lineage()[0]
    return {**read_metadata(onnx_path), "precision": precision, "sparse": sparse,
            "params": run.manifest.get("params"), "macs": run.manifest.get("macs"),
            "sparsity": recorded_sparsity(run),
            "run": run.name, "parent": run.parent.name if run.parent else None,
            "source_run": str(run.path.resolve()), "root_run": lineage_root.name,
            "input_name": spec.input_name, "profile": spec.profile(), "parity": run.manifest.get("export", {}).get("parity"),
            "onnx": ONNX_FILE, "engine": "model.engine"}


def test_images_npz(split, class_names) -> bytes:
    """The held-out images and labels a bundle carries for its on-board accuracy check."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x=split.x, y=split.y, class_names=np.array(class_names))
    return buffer.getvalue()


def _reference_accuracy(onnx_path: Path, split, where: str) -> dict[str, Any]:
    """ONNX Runtime's accuracy on the bundled test images: the board's benchmark refuses an engine
    that falls clearly below it (the board has no ONNX Runtime to compare with)."""
    from .runtime import OnnxPredictor

    predicted = OnnxPredictor(onnx_path).predict_proba(split.x).argmax(1)
    return {"accuracy": float((predicted == split.y).mean()), "images": int(len(split.y)),
            "backend": "onnxruntime", "data": where}


def detector_files() -> dict[str, bytes]:
    """The face detector's ONNX and the settings the board decodes it with (detector.json)."""
    variant = BLAZEFACE[DETECTOR]
    config = {"name": DETECTOR, "options": options_to_json(variant.options), "margin": variant.margin,
              "source": "MediaPipe BlazeFace short range (Apache-2.0), converted to ONNX by fercomp"}
    return {"detector.onnx": (MODELS_DIR / variant.file).read_bytes(),
            "detector.json": (json.dumps(config, indent=2) + "\n").encode()}


def bundle_files(run: Run, cfg: DeployConfig) -> tuple[dict[str, bytes], list[str]]:
    """Every file of the bundle by its path inside the bundle folder, and the trtexec command."""
    onnx_path = run.path / ONNX_FILE
    precision = cfg.resolved_precision(run)
    if precision == "int8":
        require_tensorrt_int8(onnx_path)
    sparse = cfg.sparse if cfg.sparse is not None else is_2to4_run(run)
    spec = engine_spec(ExportConfig(run=str(run.path), trt=True, precision=precision, sparse=sparse,
                                    max_batch=cfg.max_batch, opt_batch=cfg.opt_batch,
                                    workspace_mib=cfg.workspace_mib), onnx_path)
    commands = {major: trtexec_command(spec, tensorrt_major=major) for major in (10, 11)}
    command = commands[10]  # what a Jetson runs
    meta = _board_meta(run, onnx_path, precision, sparse, spec)
    files = {
        ONNX_FILE: onnx_path.read_bytes(),
        "model.json": (json.dumps(meta, indent=2) + "\n").encode(),
        "build_engine.sh": build_script(commands).encode(),
        "README.md": board_readme(run, meta, command).encode(),
    }
    if f"--onnx={FP16_ONNX_FILE}" in commands[11]:  # TensorRT 11 builds fp16 only from an fp16 graph
        files[FP16_ONNX_FILE] = to_fp16_onnx(onnx.load(str(onnx_path))).SerializeToString()
    for name in BOARD_MODULES:
        files[f"fercomp_board/{name}"] = (BOARD_PACKAGE / name).read_bytes()
    files.update(detector_files())
    if cfg.test_images:
        split, class_names, where = held_out_split(run, cfg.data)
        files[TEST_IMAGES] = test_images_npz(split, class_names)
        meta["reference_accuracy"] = _reference_accuracy(onnx_path, split, where)
        files["model.json"] = (json.dumps(meta, indent=2) + "\n").encode()
    files["SHA256SUMS"] = "".join(f"{hashlib.sha256(b).hexdigest()}  {n}\n" for n, b in sorted(files.items())).encode()
    return files, command


def deploy_run(cfg: DeployConfig, progress: bool = True) -> dict[str, Any]:
    cfg.validate()
    run = Run.load(cfg.run).require_complete()
    if cfg.target != "jetson":
        from .edge_bundle import edge_bundle_files

        files = edge_bundle_files(run, cfg, progress)
        return _write_bundle(run, cfg, files, command=[])
    if cfg.resolved_precision(run) == "int8":  # before anything is written
        require_tensorrt_int8(run.path / ONNX_FILE)
    if not _exported(run):
        if progress:
            console.print(f"{run.name} has no verified ONNX yet: exporting it first")
        export_run(ExportConfig(run=str(run.path), data=cfg.data), progress=progress)
        run = Run.load(writable_copy(run).path)  # a zoo model exported into its copy in artifacts/
    files, command = bundle_files(run, cfg)
    return _write_bundle(run, cfg, files, command)


def _write_bundle(run: Run, cfg: DeployConfig, files: dict[str, bytes], command: list[str]) -> dict[str, Any]:
    out = Path(cfg.out) if cfg.out else run.home / f"{run.name}-{cfg.target}.tar.gz"
    folder = out.name.removesuffix(".tar.gz").removesuffix(".tgz")
    with atomic_path(out) as tmp:
        with tarfile.open(tmp, "w:gz") as tar:
            for name, data in sorted(files.items()):
                info = tarfile.TarInfo(f"{folder}/{name}")
                info.size = len(data)
                info.mode = 0o755 if name.endswith(".sh") else 0o644
                tar.addfile(info, io.BytesIO(data))
    return {"bundle": str(out), "folder": folder, "files": {n: len(b) for n, b in files.items()},
            "precision": json.loads(files["model.json"])["precision"],
            "build_command": " ".join(command) or None}
