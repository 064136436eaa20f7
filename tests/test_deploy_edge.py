"""`fercomp deploy --target rpi|x86`: each bundle's board runtime, run in a subprocess where fercomp
cannot be imported, finds the faces of a photo and a video and gives the emotions `fercomp predict`
gives on the PC with the same model file; its benchmark writes `fercomp bench`'s report format.
And `fercomp predict` on a video with every edge backend gives ONNX Runtime's CSV."""

import csv
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from fercomp.compress.quantize import QuantizeConfig, quantize_run
from fercomp.train import TrainConfig, fit
from fercomp.bench.scenes import ASTRONAUT, moving_faces, write_video
from fercomp.cli import main
from fercomp.deploy.board.report_format import ROW_FIELDS
from fercomp.deploy.bundle import DeployConfig, deploy_run
from fercomp.deploy.export import ExportConfig, export_run
from fercomp.deploy.extras import available
from fercomp.deploy.predict import PredictConfig, predict_sources

# CI runs these (FERCOMP_ALL_TESTS=1); the quick suite leaves them out: OpenVINO, NCNN and LiteRT exports before each bundle.
pytestmark = pytest.mark.slow

# the board's Python: fercomp cannot be imported there, only the bundle's fercomp_board
NO_FERCOMP = ("import runpy, sys; sys.modules['fercomp'] = None; sys.argv[0] = 'board'; "
              "runpy.run_module(sys.argv.pop(1), run_name='__main__')")


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("scene")
    video = root / "clip.avi"
    write_video(video, moving_faces(faces=2, frames=3, seed=4))
    shutil.copy(ASTRONAUT, root / "astronaut.jpg")
    return [str(root / "astronaut.jpg"), str(video)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A small synthetic float run (its test split ships in the bundle), exported to ONNX, OpenVINO and
    NCNN (those installed), and its PTQ INT8."""
    root = tmp_path_factory.mktemp("edge-deploy")
    base = fit(TrainConfig(model="separable_cnn", synthetic_per_class=40, epochs=3, out=str(root / "base")),
               progress=False)
    formats = ("onnx", *(f for f, module in (("openvino", "openvino"), ("ncnn", "ncnn")) if available(module)[0]))
    export_run(ExportConfig(run=str(base.path), formats=formats, ov_precision="f32", threads=1), progress=False)
    int8 = quantize_run(QuantizeConfig(parent=str(base.path), calib=64, out=str(root / "int8")), progress=False)
    return {"float": base, "int8": int8}


def board(folder: Path, module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", NO_FERCOMP, module, *args], cwd=folder, capture_output=True,
                          text=True, timeout=600)


def build(run, tmp_path, target, runtime=None):
    copy = tmp_path / run.path.name
    shutil.copytree(run.path, copy)
    result = deploy_run(DeployConfig(run=str(copy), target=target, runtime=runtime,
                                     out=str(tmp_path / f"{target}.tar.gz")), progress=False)
    with tarfile.open(result["bundle"]) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    return result, tmp_path / "unpacked" / result["folder"], copy


def pc_rows(copy, backend, sources, out):
    summary = predict_sources(PredictConfig(sources=sources, model=str(copy), backend=backend, out=str(out),
                                            annotate=False, threads=1, ov_precision="f32"), progress=False)
    with open(summary["csv"], newline="") as fh:
        return [[Path(r["source"]).name, r["frame"], r["x"], r["y"], r["w"], r["h"], r["predicted"]]
                for r in csv.DictReader(fh)]


def check_bundle(runs, tmp_path, scene, target, runtime, expected_files):
    result, folder, copy = build(runs["float"], tmp_path, target, runtime)
    assert expected_files <= set(result["files"])
    meta = json.loads((folder / "model.json").read_text())
    for line in (folder / "SHA256SUMS").read_text().splitlines():  # every file as checksummed
        digest, name = line.split("  ")
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
    for module in folder.glob("fercomp_board/*.py"):
        assert "from fercomp" not in module.read_text() and "from .." not in module.read_text()

    done = board(folder, "fercomp_board.edge_detect", *scene, "--threads", "1")
    assert done.returncode == 0, done.stderr
    on_board = [[Path(b[0]).name, *b[1:7]] for b in (line.split("\t") for line in done.stdout.splitlines())]
    on_pc = pc_rows(copy, meta["format"], scene, tmp_path / "pc")
    assert len(on_pc) == 1 + 3 * 2  # the astronaut, and two faces in each of 3 frames
    assert on_board == on_pc  # same boxes, same emotions

    done = board(folder, "fercomp_board.edge_bench", "--threads", "1", "--batch-sizes", "1,4", "--warmup", "1",
                 "--iters", "3", "--out", "board.json")
    assert done.returncode == 0, done.stderr
    rows = json.loads((folder / "board.json").read_text())["rows"]
    assert [r["batch"] for r in rows] == [1, 4] and all(set(r) == set(ROW_FIELDS) for r in rows)
    assert rows[0]["backend"] == meta["format"] and rows[0]["p50_ms"] > 0
    assert rows[0]["accuracy"] == pytest.approx(meta["reference_accuracy"]["accuracy"], abs=1e-9)
    return meta, folder


def test_rpi_ncnn_bundle_runs_without_fercomp_as_predict_does(runs, tmp_path, scene):
    pytest.importorskip("ncnn")
    meta, folder = check_bundle(runs, tmp_path, scene, "rpi", "ncnn",
                                {"model.ncnn.param", "model.ncnn.bin", "fercomp_board/edge_runtime.py",
                                 "detector.onnx", "test_images.npz", "requirements.txt", "README.md"})
    assert meta["format"] == "ncnn" and meta["precision"] == "fp32" and meta["file"] == "model.ncnn.param"
    assert "ncnn" in (folder / "requirements.txt").read_text().split()


def test_x86_openvino_bundle_runs_without_fercomp_as_predict_does(runs, tmp_path, scene):
    pytest.importorskip("openvino")
    meta, folder = check_bundle(runs, tmp_path, scene, "x86", None,
                                {"model.xml", "model.bin", "fercomp_board/edge_detect.py", "detector.onnx"})
    assert meta["format"] == "openvino" and meta["target"] == "x86"


@pytest.mark.slow  # litert-torch conversion
def test_rpi_litert_bundle_runs_without_fercomp_as_predict_does(runs, tmp_path, scene):
    pytest.importorskip("ai_edge_litert")
    meta, _ = check_bundle(runs, tmp_path, scene, "rpi", None, {"model.tflite", "fercomp_board/edge_bench.py"})
    assert meta["format"] == "litert"


@pytest.mark.parametrize("argv, expected", [
    (["--target", "rpi", "--runtime", "openvino"], "--runtime"),
    (["--target", "x86", "--precision", "fp16"], "--precision"),
    (["--target", "pi"], "--target"),
])
def test_deploy_target_mistakes_exit_2_without_a_bundle(runs, tmp_path, capsys, argv, expected):
    out = tmp_path / "b.tar.gz"
    assert main(["deploy", str(runs["float"].path), *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err and not out.exists()


def test_rpi_ncnn_of_an_int8_run_is_refused(runs, tmp_path, capsys):
    pytest.importorskip("ncnn")
    out = tmp_path / "b.tar.gz"
    assert main(["deploy", str(runs["int8"].path), "--target", "rpi", "--runtime", "ncnn", "--out", str(out)]) == 2
    assert "ncnn2int8" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("backend", ["openvino", "ncnn"])
def test_predict_video_on_an_edge_backend_gives_onnxruntimes_csv(runs, tmp_path, scene, backend):
    pytest.importorskip(backend)
    video = scene[1:]
    on_edge = pc_rows(runs["float"].path, backend, video, tmp_path / backend)
    on_ort = pc_rows(runs["float"].path, "onnxruntime", video, tmp_path / "ort")
    assert len(on_ort) == 3 * 2 and on_edge == on_ort  # same faces, same emotions, frame by frame


def test_cli_predict_ov_precision(runs, tmp_path, scene, capsys):
    pytest.importorskip("openvino")
    out = tmp_path / "f32"
    assert main(["predict", scene[0], "--model", str(runs["float"].path), "--backend", "openvino",
                 "--ov-precision", "f32", "--out", str(out), "--no-annotate", "--no-progress"]) == 0
    assert "f32" in capsys.readouterr().err  # the precision OpenVINO ran in is said
    bad = tmp_path / "bad"
    assert main(["predict", scene[0], "--model", str(runs["float"].path), "--backend", "openvino",
                 "--ov-precision", "bf8", "--out", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--ov-precision" in err and not bad.exists()
