"""The Jetson bundle: complete, checksummed, its scripts valid and consistent with the model, and
its board runtime + benchmark running end to end (through a fake TensorRT on this CPU host)."""

import hashlib
import json
import py_compile
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

import fake_tensorrt
from fercomp.cli import main
from fercomp.compress import PruneConfig, prune_run
from fercomp.compress.quantize import QuantizeConfig, quantize_run
from fercomp.deploy.board.board_info import l4t_release, power_mode
from fercomp.deploy.board.report_format import REPORT_SCHEMA, ROW_FIELDS
from fercomp.deploy.bundle import BOARD_MODULES, DeployConfig, deploy_run
from fercomp.runs import Run
from fercomp.train import TrainConfig, evaluate_run, fit

EXPECTED = {"model.onnx", "model.json", "build_engine.sh", "README.md", "SHA256SUMS", "test_images.npz",
            "detector.onnx", "detector.json", *(f"fercomp_board/{m}" for m in BOARD_MODULES)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("deploy")
    base = fit(TrainConfig(model="separable_cnn", synthetic_per_class=40, epochs=3, out=str(root / "base")),
               progress=False)
    int8 = quantize_run(QuantizeConfig(parent=str(base.path), calib=64, activations="s8-sym", out=str(root / "int8")),
                        progress=False)
    int8u = quantize_run(QuantizeConfig(parent=str(base.path), calib=64, out=str(root / "int8u")), progress=False)
    s24 = prune_run(PruneConfig(parent=str(base.path), pattern="2:4", finetune_epochs=0, out=str(root / "s24")),
                    progress=False)
    return {"base": base, "int8": int8, "int8u": int8u, "s24": s24}


def unpack(bundle, where):
    with tarfile.open(bundle) as tar:
        tar.extractall(where, filter="data")
    (folder,) = [p for p in where.iterdir() if p.is_dir()]
    return folder


def bundle_of(run, tmp_path, **kw):
    copy = tmp_path / run.name
    shutil.copytree(run.path, copy)
    result = deploy_run(DeployConfig(run=str(copy), out=str(tmp_path / f"{run.name}.tar.gz"), **kw), progress=False)
    return result, unpack(result["bundle"], tmp_path / "unpacked"), Run.load(copy)


FAKE_TRTEXEC = """#!/usr/bin/env bash
# trtexec as far as build_engine.sh needs it: a version banner on --help, the removed weak-typing
# flags refused on TensorRT 11, its arguments recorded, the engine file written.
if [ "$1" = "--help" ]; then
  [ -n "$BANNER" ] && echo "&&&& RUNNING TensorRT.trtexec [TensorRT $BANNER] [b1] # trtexec --help"
  echo "=== Model Options ==="
  exit 0
fi
printf '%s\\n' "$@" >> "$ARGS_FILE"
for arg in "$@"; do
  case "$arg" in
    --fp16|--int8) [ "$MAJOR" -ge 11 ] && { echo "Unknown option: $arg" >&2; exit 1; } ;;
    --saveEngine=*) echo engine > "${arg#--saveEngine=}" ;;
  esac
done
"""


def run_build_script(folder, tmp_path, banner: str, major: int):
    """Run the bundle's build_engine.sh with a fake trtexec first on PATH: (result, its arguments)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "trtexec").write_text(FAKE_TRTEXEC)
    (bin_dir / "trtexec").chmod(0o755)
    args_file = tmp_path / "trtexec_args.txt"
    args_file.unlink(missing_ok=True)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "BANNER": banner, "MAJOR": str(major), "ARGS_FILE": str(args_file)}
    done = subprocess.run(["bash", str(folder / "build_engine.sh")], env=env, capture_output=True, text=True)
    return done, (args_file.read_text().split("\n")[:-1] if args_file.exists() else None)


@pytest.mark.parametrize("which, precision, flag", [("base", "fp16", "--fp16"), ("int8", "int8", "--stronglyTyped"),
                                                    ("s24", "fp16", "--sparsity=enable")])
def test_bundle_is_complete_and_consistent_with_the_model(runs, tmp_path, which, precision, flag):
    result, folder, run = bundle_of(runs[which], tmp_path)
    names = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
    assert names == EXPECTED | ({"model_fp16.onnx"} if precision == "fp16" else set())
    for line in (folder / "SHA256SUMS").read_text().splitlines():  # every file, unchanged
        digest, name = line.split("  ")
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
    assert (folder / "model.onnx").read_bytes() == (run.path / "model.onnx").read_bytes()
    meta = json.loads((folder / "model.json").read_text())
    assert meta["precision"] == precision and meta["params"] == run.manifest["params"]
    graph_input = onnx.load(str(folder / "model.onnx")).graph.input[0]
    c, h, w = (d.dim_value for d in graph_input.type.tensor_type.shape.dim[1:])
    assert meta["input_name"] == graph_input.name and meta["input_size"] == [h, w]

    assert subprocess.run(["bash", "-n", str(folder / "build_engine.sh")]).returncode == 0
    assert (folder / "build_engine.sh").stat().st_mode & 0o111  # executable
    done, words = run_build_script(folder, tmp_path, "v100300", 10)  # JetPack 6.1's TensorRT 10.3
    assert done.returncode == 0, done.stderr
    assert flag in words and "--onnx=model.onnx" in words and "--saveEngine=model.engine" in words
    assert (folder / "model.engine").is_file() and "TensorRT 10:" in done.stdout
    assert "--onnx=detector.onnx" in words and (folder / "detector.engine").is_file()
    assert f"--maxShapes={graph_input.name}:64x{c}x{h}x{w}" in words
    assert f"--minShapes={graph_input.name}:1x{c}x{h}x{w}" in words
    for module in folder.glob("fercomp_board/*.py"):
        py_compile.compile(str(module), doraise=True)
    with np.load(folder / "test_images.npz") as npz:
        assert npz["x"].dtype == np.uint8 and len(npz["x"]) == len(npz["y"]) > 0
        assert list(npz["class_names"]) == meta["class_names"]


def bundle_with_engine(run, tmp_path, monkeypatch, precision: str):
    """The run's bundle with a (fake TensorRT) model.engine built, ready to import fercomp_board from:
    (bundle folder, the run, the fake CUDA)."""
    result, folder, run = bundle_of(run, tmp_path)
    trt, cuda = fake_tensorrt.install(monkeypatch)
    from fercomp.deploy.tensorrt import EngineSpec, build_engine

    meta = json.loads((folder / "model.json").read_text())
    engine, _, _ = build_engine(folder / "model.onnx", EngineSpec(meta["input_name"], (1, 48, 48), precision=precision,
                                                                  opt_batch=16, max_batch=64))
    (folder / "model.engine").write_bytes(engine)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.chdir(folder)
    for name in [m for m in sys.modules if m.startswith("fercomp_board")]:
        monkeypatch.delitem(sys.modules, name)
    return folder, run, cuda


def test_board_scripts_run_without_fercomp(runs, tmp_path, monkeypatch):
    """Build an 'engine' from the bundle's ONNX, then run the board's benchmark from the bundle folder."""
    folder, run, cuda = bundle_with_engine(runs["base"], tmp_path, monkeypatch, "fp16")
    meta = json.loads((folder / "model.json").read_text())
    import fercomp_board.bench as board_bench
    import fercomp_board.trt_runtime as board_runtime

    assert board_bench.__file__.startswith(str(folder))  # the bundle's copy, not fercomp's package
    for module in folder.glob("fercomp_board/*.py"):
        source = module.read_text()
        assert "from fercomp" not in source and "import fercomp\n" not in source and "from .." not in source
    monkeypatch.setattr(board_runtime, "CudaRuntime", cuda.open)
    assert board_bench.main(["--batch-sizes", "1,8,100", "--warmup", "1", "--iters", "3", "--out", "board.json"]) == 0
    assert cuda.opened == cuda.closed == 1 and cuda.memory == {}  # the engine's stream and buffers were freed
    report = json.loads((folder / "board.json").read_text())
    assert report["schema"] == REPORT_SCHEMA and [r["batch"] for r in report["rows"]] == [1, 8, 100]
    assert all(set(r) == set(ROW_FIELDS) for r in report["rows"])
    row = report["rows"][0]
    assert row["backend"] == "tensorrt" and row["precision"] == "fp16" and row["p50_ms"] > 0
    # latency with copies and of the engine alone; batch 100 exceeds the engine's 64: no copy-free figure
    assert row["compute_p50_ms"] > 0 and row["compute_p95_ms"] >= row["compute_p50_ms"]
    assert report["rows"][2]["compute_p50_ms"] is None and report["rows"][2]["p50_ms"] > 0
    assert row["run"] == run.name and row["parent"] is None  # names that line up with the PC's rows
    # accuracy on the bundled test images equals the run's own test accuracy (same model, same images)
    expected = evaluate_run(run.path, backend="onnxruntime", write=False)["accuracy"]
    assert row["accuracy"] == pytest.approx(expected, abs=1e-9)
    assert meta["reference_accuracy"]["accuracy"] == pytest.approx(expected, abs=1e-9)


def test_board_info_parsers():
    assert l4t_release("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64") == "36.4.3"
    assert l4t_release("garbage") is None and l4t_release(None) is None
    assert power_mode("NV Power Mode: MAXN\n0\n") == "MAXN"
    assert power_mode("NV Power Mode: 15W\n2") == "15W" and power_mode("") is None


@pytest.mark.parametrize("argv, expected", [(["--target", "raspi"], "--target"), (["--out", "b.zip"], "--out"),
                                            (["--precision", "int8"], "quantize first"),
                                            (["--precision", "bf16"], "--precision"), (["--max-batch", "0"], "--max-batch")])
def test_deploy_mistakes_exit_2_without_a_bundle(runs, tmp_path, capsys, argv, expected):
    copy = tmp_path / "base"
    shutil.copytree(runs["base"].path, copy)
    code = main(["deploy", str(copy), "--no-progress", *argv])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.glob("*.tar.gz")) and not list(tmp_path.glob("*.zip"))
    assert not (copy / "model.onnx").exists()  # refused before the automatic export


def test_uint8_int8_run_is_not_bundled_for_tensorrt(runs, tmp_path, capsys):
    copy = tmp_path / "int8u"
    shutil.copytree(runs["int8u"].path, copy)
    assert main(["deploy", str(copy), "--no-progress", "--out", str(tmp_path / "b.tar.gz")]) == 2
    assert "--activations s8-sym" in capsys.readouterr().err and not (tmp_path / "b.tar.gz").exists()


def unpacked_bundle(runs, which, tmp_path):
    return bundle_of(runs[which], tmp_path)[1]


@pytest.mark.parametrize("which, banner, major, expected, absent", [
    # TensorRT 11 (desktop GPU): no weak typing; fp16 from the fp16 ONNX, no --fp16 / --stronglyTyped
    ("base", "v110400", 11, ["--onnx=model_fp16.onnx"], ["--fp16", "--stronglyTyped", "--onnx=model.onnx"]),
    ("int8", "v110400", 11, ["--onnx=model.onnx"], ["--fp16", "--int8", "--stronglyTyped"]),
    # TensorRT 10 (Jetson, JetPack 6.x): weak-typed fp16 from the fp32 ONNX; strongly typed int8
    ("base", "v101600", 10, ["--onnx=model.onnx", "--fp16"], ["--onnx=model_fp16.onnx"]),
    ("int8", "v100300", 10, ["--onnx=model.onnx", "--stronglyTyped"], ["--fp16"]),
    ("base", "v11.4.0", 11, ["--onnx=model_fp16.onnx"], ["--fp16"]),  # a dotted banner
    ("base", "", 10, ["--fp16"], []),  # no banner: JetPack's TensorRT 10 is assumed, with a notice
])
def test_build_engine_sh_picks_the_commands_of_the_tensorrt_it_finds(runs, tmp_path, which, banner, major,
                                                                     expected, absent):
    folder = unpacked_bundle(runs, which, tmp_path)
    done, words = run_build_script(folder, tmp_path, banner, major)
    assert done.returncode == 0, done.stderr
    assert f"TensorRT {major}:" in done.stdout and (folder / "model.engine").is_file()
    assert all(w in words for w in expected) and not any(w in words for w in absent)
    assert "--saveEngine=model.engine" in words and any(w.startswith("--maxShapes=") for w in words)
    if not banner:
        assert "assuming TensorRT 10" in done.stderr


def test_build_engine_sh_refuses_strongly_typed_int8_on_tensorrt_8(runs, tmp_path):
    folder = unpacked_bundle(runs, "int8", tmp_path)
    done, words = run_build_script(folder, tmp_path, "v8601", 8)  # JetPack 6.0's TensorRT 8.6.1
    assert done.returncode == 2 and "older than 10" in done.stderr and words is None
    assert not (folder / "model.engine").exists()


def test_fp16_bundle_runs_on_a_tensorrt_11_engine_with_float16_io(runs, tmp_path, monkeypatch):
    """The TensorRT 11 path end to end: the bundle's fp16 ONNX -> a float16-IO engine -> the board benchmark."""
    result, folder, run = bundle_of(runs["base"], tmp_path)
    fp16 = onnx.load(str(folder / "model_fp16.onnx"))
    assert fp16.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    trt, cuda = fake_tensorrt.install(monkeypatch, version="11.4.0")
    from fercomp.deploy.tensorrt import EngineSpec, build_engine

    meta = json.loads((folder / "model.json").read_text())
    spec = EngineSpec(meta["input_name"], (1, 48, 48), precision="fp16", opt_batch=16, max_batch=64)
    engine, _, record = build_engine(folder / "model.onnx", spec)
    assert trt.calls[-1][1]["input_type"] == "FLOAT16" and record["onnx_precision"] == "fp16"
    (folder / "model.engine").write_bytes(engine)
    from fercomp.deploy.board import bench as board_bench

    monkeypatch.chdir(folder)
    assert board_bench.main(["--batch-sizes", "1", "--warmup", "0", "--iters", "2", "--out", "b.json"]) == 0
    row = json.loads((folder / "b.json").read_text())["rows"][0]
    assert row["accuracy"] == pytest.approx(meta["reference_accuracy"]["accuracy"], abs=0.02)
    assert row["compute_p50_ms"] > 0 and cuda.opened == cuda.closed


def test_board_benchmark_refuses_an_engine_that_disagrees(trained_synthetic, tmp_path, monkeypatch, capsys):
    """The board has no ONNX Runtime: its gate is the accuracy ONNX Runtime had on the bundled images.
    A model that learned (so a wrong engine shows in accuracy) and an engine that swaps the classes."""
    result, folder, run = bundle_of(trained_synthetic, tmp_path)
    meta = json.loads((folder / "model.json").read_text())
    assert meta["reference_accuracy"]["accuracy"] > 0.85
    trt, cuda = fake_tensorrt.install(monkeypatch)
    from fercomp.deploy.board import bench as board_bench
    from fercomp.deploy.tensorrt import EngineSpec, build_engine

    engine, _, _ = build_engine(folder / "model.onnx", EngineSpec(meta["input_name"], (1, 48, 48), precision="fp16"))
    (folder / "model.engine").write_bytes(engine)
    monkeypatch.chdir(folder)
    argv = ["--batch-sizes", "1", "--warmup", "0", "--iters", "1"]
    trt.corrupt_outputs = True
    assert board_bench.main([*argv, "--out", "bad.json"]) == 3
    assert "ONNX Runtime's was" in capsys.readouterr().out and not (folder / "bad.json").exists()
    assert cuda.opened == cuda.closed and cuda.memory == {}
    trt.corrupt_outputs = False  # the same engine, correct: accepted, with ONNX Runtime's accuracy
    assert board_bench.main([*argv, "--out", "good.json"]) == 0
    row = json.loads((folder / "good.json").read_text())["rows"][0]
    assert row["accuracy"] == pytest.approx(meta["reference_accuracy"]["accuracy"], abs=1e-9)


def test_board_detects_and_classifies_faces_as_predict_does(runs, tmp_path, monkeypatch, capsys):
    """The bundle's detector + classifier engines (fake TensorRT running their ONNX) on a photo and a
    video give the boxes and emotions `fercomp predict` gives with ONNX Runtime on the PC."""
    import csv

    from fercomp.bench.scenes import ASTRONAUT, moving_faces, write_video
    from fercomp.deploy.predict import PredictConfig, predict_sources

    folder, run, cuda = bundle_with_engine(runs["base"], tmp_path, monkeypatch, "fp32")
    from fercomp.deploy.tensorrt import EngineSpec, build_engine

    detector_input = onnx.load(str(folder / "detector.onnx")).graph.input[0].name
    engine, _, _ = build_engine(folder / "detector.onnx", EngineSpec(detector_input, (3, 128, 128), precision="fp32",
                                                                     dynamic_batch=False, static_batch=1))
    (folder / "detector.engine").write_bytes(engine)
    video = tmp_path / "clip.avi"
    write_video(video, moving_faces(faces=2, frames=3, seed=4))
    shutil.copy(ASTRONAUT, tmp_path / "astronaut.jpg")

    import fercomp_board.detect as board_detect
    import fercomp_board.trt_runtime as board_runtime

    monkeypatch.setattr(board_runtime, "CudaRuntime", cuda.open)
    sources = [str(tmp_path / "astronaut.jpg"), str(video)]
    capsys.readouterr()
    assert board_detect.main(sources) == 0
    board = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert cuda.opened == cuda.closed == 2 and cuda.memory == {}  # both engines freed their streams and buffers

    summary = predict_sources(PredictConfig(sources=sources, model=str(run.path), backend="onnxruntime",
                                            out=str(tmp_path / "pc"), annotate=False), progress=False)
    with open(summary["csv"], newline="") as fh:
        pc = [[Path(r["source"]).name, r["frame"], r["x"], r["y"], r["w"], r["h"], r["predicted"]]
              for r in csv.DictReader(fh)]
    assert len(pc) == 1 + 3 * 2  # the astronaut, and two faces in each of 3 frames
    assert [[Path(b[0]).name, *b[1:7]] for b in board] == pc


def test_board_classify_crops_prints_each_images_emotion_and_names_unreadable_files(tmp_path, capsys):
    from fercomp.deploy.board.detect import classify_crops

    class BrightIsHappy:  # logits from the preprocessed pixels: a bright crop is "happy", a dark one "sad"
        def infer(self, x):
            m = float(x.mean())
            return np.array([[m, -m]], dtype=np.float32)

    meta = {"class_names": ["happy", "sad"], "input_size": [48, 48], "in_chans": 1,
            "normalization": {"mean": 0.5, "std": 0.25}}
    cv2.imwrite(str(tmp_path / "bright.png"), np.full((60, 60), 240, np.uint8))
    cv2.imwrite(str(tmp_path / "dark.png"), np.full((60, 60), 10, np.uint8))
    (tmp_path / "broken.png").write_bytes(b"not an image")
    classify_crops(BrightIsHappy(), meta, [str(tmp_path / n) for n in ("bright.png", "dark.png", "broken.png")])
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[1] for line in lines] == ["happy", "sad", "error: not a readable image"]
    assert all(0.5 < float(line.split("\t")[2]) <= 1 for line in lines[:2])
