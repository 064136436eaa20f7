"""LiteRT: FP32 export of a float run and full-integer INT8 of a quantized run's float parent
(calibrated on training images), reloaded through the LiteRT interpreter (XNNPACK), with parity on
held-out images (real FER2013 PrivateTest when ../shared/data exists), bench rows, and the
one-line error of a missing extra."""

import shutil

import numpy as np
import pytest

from edge_runs import make_edge_runs
from fercomp.bench.measure import BenchConfig, bench_models
from fercomp.cli import main
from missing_extras import hide_modules
from fercomp.deploy.export import ExportConfig, export_run
from fercomp.deploy.runtime import load
from fercomp.runs import Run

pytest.importorskip("ai_edge_litert", reason="the litert extra is in requirements.lock; make install provides it")
pytest.importorskip("litert_torch", reason="the litert extra is in requirements.lock; make install provides it")

# Converting twice with litert-torch (its first import alone is seconds) costs minutes on 2 cores: these
# run in CI (FERCOMP_ALL_TESTS=1), not in the quick `make test`.
pytestmark = pytest.mark.slow

PARITY_IMAGES = 1000  # the batch-1 models are checked on the first 1,000 held-out images


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    runs = make_edge_runs(tmp_path_factory.mktemp("litert"))
    reports = {kind: export_run(ExportConfig(run=str(runs[kind].path), data=runs["data"], threads=2,
                                             parity_images=PARITY_IMAGES, formats=("onnx", "litert")), progress=False)
               for kind in ("float", "int8")}
    return runs, reports


def test_fp32_litert_agrees_with_torch_and_is_recorded(exported):
    runs, reports = exported
    report, run = reports["float"]["litert"], Run.load(runs["float"].path)
    p = report["parity"]
    assert report["precision"] == "fp32" and report["batch"] == 1
    assert p["top1_agreement"] >= 0.999 and p["max_abs_prob_diff"] < 1e-4
    assert p["images"] == min(PARITY_IMAGES, p["images"]) > 0
    assert run.manifest["export"]["litert"]["parity"] == p
    assert run.manifest["files"]["model.tflite"] == report["files"]["model.tflite"]
    assert run.manifest["export"]["onnx"]  # the ONNX export is still recorded beside it


def test_int8_litert_is_full_integer_and_within_a_point(exported):
    runs, reports = exported
    report = reports["int8"]["litert"]
    p = report["parity"]
    assert report["precision"] == "int8" and report["calibration_images"] > 0
    assert p["reference_accuracy"] - p["accuracy"] <= 0.01
    assert 0.8 < p["top1_agreement"] <= 1.0 and p["max_abs_prob_diff"] > 1e-4  # close to its parent, not identical
    predictor = load(runs["int8"].path, backend="litert", threads=2)
    assert predictor.input["dtype"] == np.int8 and predictor.output["dtype"] == np.int8  # int8 in and out
    if runs["real"]:
        assert p["accuracy"] > 0.6


def test_batches_larger_than_the_model_run_image_by_image(exported):
    runs, _ = exported
    images = np.random.default_rng(0).integers(0, 256, (7, 48, 48), dtype=np.uint8)
    lite = load(runs["float"].path / "model.tflite", threads=2)
    assert lite.fixed_batch == 1
    np.testing.assert_allclose(lite.predict_proba(images), load(runs["float"].path, backend="torch").predict_proba(images),
                               atol=1e-5)
    np.testing.assert_allclose(lite.predict_proba(images[3:4])[0], lite.predict_proba(images)[3], atol=1e-6)


def test_bench_rows_for_litert(exported):
    runs, _ = exported
    rows = bench_models(BenchConfig(models=[str(runs["int8"].path)], backends=("litert",), batch_sizes=(1, 4),
                                    threads=2, warmup=2, iters=10, accuracy=False), "cpu", isolate=True)
    assert [r["batch"] for r in rows] == [1, 4] and all(r["status"] == "ok" for r in rows)
    for r in rows:
        assert r["backend"] == "litert" and r["precision"] == "int8"
        assert 0 < r["p50_ms"] < 1000 and r["images_per_s"] > 0
        assert r["file_bytes"] == (runs["int8"].path / "model.tflite").stat().st_size


def test_missing_litert_names_the_extra(exported, monkeypatch, capsys, tmp_path):
    runs, _ = exported
    copy = tmp_path / "no-extra"
    shutil.copytree(runs["float"].path, copy)
    hide_modules(monkeypatch, "litert_torch", "ai_edge_litert")
    assert main(["export", str(copy), "--format", "litert"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'fercomp[litert]'" in err
    rows = bench_models(BenchConfig(models=[str(copy)], backends=("litert",), batch_sizes=(1,), threads=2,
                                    warmup=1, iters=2, accuracy=False), "cpu")
    assert rows[0]["status"] == "unavailable" and "fercomp[litert]" in rows[0]["reason"]
