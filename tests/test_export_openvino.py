"""OpenVINO: export from float and QDQ INT8 ONNX, reload, parity with PyTorch on held-out images
(real FER2013 PrivateTest when ../shared/data exists), the precision it ran in, bench rows, and
the one-line errors for a bad --format or a missing package."""

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from edge_runs import make_edge_runs
from fercomp.bench.measure import BenchConfig, bench_models
from fercomp.cli import main
from missing_extras import hide_modules
from fercomp.deploy.export import ExportConfig, ParityError, export_run
from fercomp.deploy.runtime import load
from fercomp import zoo
from fercomp.runs import Run

pytest.importorskip("openvino", reason="the openvino extra is in requirements.lock; make install provides it")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Both runs exported to ONNX + OpenVINO once (f32 inference, so the FP32 gate is the strict one)."""
    runs = make_edge_runs(tmp_path_factory.mktemp("ov"))
    reports = {kind: export_run(ExportConfig(run=str(runs[kind].path), data=runs["data"], threads=2,
                                             formats=("onnx", "openvino"), ov_precision="f32"), progress=False)
               for kind in ("float", "int8")}
    return runs, reports


def test_float_export_agrees_with_torch_and_is_recorded(exported):
    runs, reports = exported
    run, report = Run.load(runs["float"].path), reports["float"]["openvino"]
    p = report["parity"]
    assert report["inference_precision"] == "f32" and report["precision"] == "fp32"
    assert p["top1_agreement"] >= 0.999 and p["max_abs_prob_diff"] < 1e-3
    if runs["real"]:
        assert p["images"] == 3589 and abs(p["accuracy"] - zoo.card("tiny")["test"]["accuracy"]) < 0.01  # OpenVINO f32 scores what the card says
    assert run.manifest["export"]["openvino"]["parity"] == p
    for name in ("model.xml", "model.bin", "model.xml.json"):
        assert run.manifest["files"][name] == report["files"][name]
    assert not list(run.path.glob(".export-*"))  # the staging folder is gone


def test_int8_export_stays_within_a_point_of_its_float_parent(exported):
    runs, reports = exported
    p = reports["int8"]["openvino"]["parity"]
    assert reports["int8"]["openvino"]["precision"] == "int8"
    assert p["reference_accuracy"] - p["accuracy"] <= 0.01
    assert 0.9 < p["top1_agreement"] <= 1.0 and p["max_abs_prob_diff"] > 1e-4  # INT8: close to its parent, not identical
    # OpenVINO runs the same QDQ model ONNX Runtime runs: same accuracy within a few images
    x = (Run.load(runs["int8"].path))
    ov = load(x.path, backend="openvino", threads=2)
    assert ov.backend == "openvino" and ov.precision == "int8"
    ort_acc = reports["int8"]["parity"]["top1_agreement"]
    assert abs(p["top1_agreement"] - ort_acc) <= max(0.02, 3 / p["images"])  # a few images on a small split


def test_reload_from_folder_and_file_and_precision_choice(exported):
    runs, _ = exported
    images = np.random.default_rng(0).integers(0, 256, (10, 48, 48), dtype=np.uint8)
    torch_p = load(runs["float"].path, backend="torch").predict_proba(images)
    f32 = load(runs["float"].path / "model.xml", ov_precision="f32", threads=2)
    assert f32.inference_precision == "f32"
    np.testing.assert_allclose(f32.predict_proba(images), torch_p, atol=1e-4)
    auto = load(runs["float"].path, backend="openvino", threads=2)
    assert auto.inference_precision in ("f32", "bf16", "f16")  # what this CPU picked, read back


def test_cli_evaluate_on_openvino(exported, capsys):
    runs, _ = exported
    data = ["--data", runs["data"]] if runs["data"] else []
    assert main(["evaluate", str(runs["float"].path), "--backend", "openvino", "--ov-precision", "f32",
                 "--threads", "2", "--json", *data]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["backend"] == "openvino" and report["n"] > 0
    assert report["accuracy"] == pytest.approx(Run.load(runs["float"].path).manifest["export"]["openvino"]["parity"]
                                               ["accuracy"], abs=2e-3)


def test_bench_has_an_openvino_row_measured_in_its_own_process(exported):
    runs, _ = exported
    cfg = BenchConfig(models=[str(runs["float"].path)], backends=("openvino",), batch_sizes=(1, 8),
                      threads=2, warmup=2, iters=10, data=runs["data"], ov_precision="f32")
    rows = bench_models(cfg, "cpu", isolate=True)
    ort = bench_models(replace(cfg, backends=("onnxruntime",), accuracy=False, iters=2), "cpu")
    assert [r["batch"] for r in rows] == [1, 8] and all(r["status"] == "ok" for r in rows)
    assert set(rows[0]) == set(ort[0])  # the same columns as ONNX Runtime's rows
    recorded = Run.load(runs["float"].path).manifest["export"]["openvino"]["parity"]["accuracy"]
    for r in rows:
        assert r["backend"] == "openvino" and r["precision"] == "fp32"
        assert 0 < r["p50_ms"] < 1000 and r["images_per_s"] > 0 and r["peak_rss_mb"] > 0
        assert r["file_bytes"] == (runs["float"].path / "model.bin").stat().st_size
        assert r["accuracy"] == pytest.approx(recorded, abs=2e-3)  # same images as the export's check


def test_bench_row_is_unavailable_without_an_export(exported, tmp_path):
    runs, _ = exported
    copy = tmp_path / "no-ov"
    shutil.copytree(runs["float"].path, copy)
    for name in ("model.xml", "model.bin"):
        (copy / name).unlink()
    rows = bench_models(BenchConfig(models=[str(copy)], backends=("openvino",), batch_sizes=(1,), threads=2,
                                    warmup=1, iters=2, accuracy=False), "cpu")
    assert rows[0]["status"] == "unavailable" and "--format openvino" in rows[0]["reason"]


def test_reexporting_the_onnx_drops_stale_conversions(exported, tmp_path):
    runs, _ = exported
    copy = tmp_path / "again"
    shutil.copytree(runs["float"].path, copy)
    export_run(ExportConfig(run=str(copy), data=runs["data"], parity_images=50), progress=False)
    manifest = Run.load(copy).manifest
    assert not (copy / "model.xml").exists() and "openvino" not in manifest["export"]
    assert "model.bin" not in manifest["files"]


def test_reexporting_an_int8_run_keeps_its_conversions_and_records_them(exported, tmp_path):
    """An INT8 run's ONNX is not made again, so its OpenVINO files stay valid: exporting it once more
    (here with no edge format, then with OpenVINO) keeps them in the manifest instead of failing."""
    runs, reports = exported
    copy = tmp_path / "int8-again"
    shutil.copytree(runs["int8"].path, copy)
    export_run(ExportConfig(run=str(copy), data=runs["data"], parity_images=50), progress=False)
    assert Run.load(copy).manifest["export"]["openvino"] == reports["int8"]["openvino"]
    again = export_run(ExportConfig(run=str(copy), data=runs["data"], threads=2, formats=("onnx", "openvino"),
                                    parity_images=50), progress=False)
    manifest = Run.load(copy).manifest
    assert manifest["export"]["openvino"] == again["openvino"] and again["openvino"]["precision"] == "int8"
    assert all(manifest["files"][f] == d for f, d in again["openvino"]["files"].items())


def test_parity_failure_keeps_nothing(exported, tmp_path, monkeypatch):
    runs, _ = exported
    copy = tmp_path / "bad"
    shutil.copytree(runs["float"].path, copy)
    from fercomp.deploy import openvino_backend

    real_forward = openvino_backend.OpenVINOPredictor.forward
    monkeypatch.setattr(openvino_backend.OpenVINOPredictor, "forward", lambda self, x: -real_forward(self, x))
    with pytest.raises(ParityError, match="model.xml"):
        export_run(ExportConfig(run=str(copy), data=runs["data"], parity_images=200, formats=("openvino",),
                                ov_precision="f32"), progress=False)
    assert not (copy / "model.xml").exists() and not (copy / "model.bin").exists()
    assert not list(copy.glob(".export-*")) and (copy / "model.onnx").exists()


def test_bad_format_is_one_line_exit_2(capsys):
    assert main(["export", "zoo:tiny", "--format", "onnx,coreml"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--format" in err and "openvino" in err


def test_bad_ov_precision_is_one_line_exit_2(exported, capsys):
    runs, _ = exported
    assert main(["evaluate", str(runs["float"].path), "--backend", "openvino", "--ov-precision", "fp8"]) == 2
    assert "--ov-precision" in capsys.readouterr().err


def test_missing_openvino_names_the_extra(exported, monkeypatch, capsys, tmp_path):
    runs, _ = exported
    copy = tmp_path / "no-extra"
    shutil.copytree(runs["float"].path, copy)
    hide_modules(monkeypatch, "openvino")
    assert main(["export", str(copy), "--format", "openvino", "--parity-images", "20",
                 *(["--data", runs["data"]] if runs["data"] else [])]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'fercomp[openvino]'" in err
    assert (copy / "model.xml").exists()  # said before any work: the earlier export is untouched


def test_cli_export_table_lists_openvino_and_a_format_not_built_here_is_refused(exported, capsys, tmp_path):
    runs, _ = exported
    copy = tmp_path / "cli"
    shutil.copytree(runs["float"].path, copy)
    data = ["--data", runs["data"]] if runs["data"] else []
    assert main(["export", str(copy), "--format", "onnx,openvino", "--ov-precision", "f32", "--parity-images", "100",
                 "--no-progress", *data]) == 0
    shown = capsys.readouterr()
    assert "model.xml" in shown.out + shown.err  # the export table (fercomp's console writes to stderr)
    assert main(["export", str(copy), "--format", "onnx,coreml"]) == 2  # not a format here: refused, not skipped
    assert "--format" in capsys.readouterr().err
