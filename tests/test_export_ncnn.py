"""NCNN: export through pnnx (FP32 and FP16 weights), reload, parity with PyTorch on held-out images
(real FER2013 PrivateTest when ../shared/data exists), evaluate and bench rows, and the one-line
errors: an INT8 run (no ncnn2int8 in the wheels), a bad --ncnn-precision, a missing extra."""

import hashlib
import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from edge_runs import make_edge_runs
from fercomp.bench.measure import BenchConfig, bench_models
from fercomp.cli import main
from fercomp.deploy.export import ExportConfig, ParityError, export_run
from fercomp.deploy.runtime import load
from fercomp.errors import ModelError
from fercomp.runs import Run
from fercomp.train import evaluate_run
from missing_extras import hide_modules

# CI runs these (FERCOMP_ALL_TESTS=1); the quick suite leaves them out: pnnx conversions (about 4 minutes on 2 busy cores).
pytestmark = pytest.mark.slow

pytest.importorskip("ncnn", reason="the ncnn extra is in requirements.lock; make install provides it")
pytest.importorskip("pnnx", reason="the ncnn extra is in requirements.lock; make install provides it")


def _tree(path):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The float run exported to ONNX + NCNN FP32 on 1,000 held-out images, and a copy in FP16.
    One ncnn thread: ncnn splits each layer across OpenMP threads, and on a loaded 2-core machine
    every per-layer barrier waits for a time slice (measured 131 ms/image with 2 threads, 2.5 with 1)."""
    root = tmp_path_factory.mktemp("ncnn")
    runs = make_edge_runs(root)
    report = export_run(ExportConfig(run=str(runs["float"].path), data=runs["data"], threads=1,
                                     formats=("onnx", "ncnn"), parity_images=1000), progress=False)
    fp16 = root / "fp16"
    shutil.copytree(runs["float"].path, fp16)
    report16 = export_run(ExportConfig(run=str(fp16), data=runs["data"], threads=1, formats=("ncnn",),
                                       ncnn_precision="fp16", parity_images=300), progress=False)
    return runs, report, fp16, report16


def test_fp32_export_agrees_with_torch_and_is_recorded(exported):
    runs, reports, _, _ = exported
    run, report = Run.load(runs["float"].path), reports["ncnn"]
    p = report["parity"]
    assert report["precision"] == "fp32" and p["candidate"] == "ncnn"
    assert p["top1_agreement"] >= 0.999 and p["max_abs_prob_diff"] < 1e-4  # FP32: the same numbers
    assert p["accuracy"] == pytest.approx(p["reference_accuracy"], abs=1e-3)
    if runs["real"]:
        assert p["images"] == 1000 and 0.55 < p["accuracy"] < 0.75  # zoo:tiny (its card has all of PrivateTest)
    assert run.manifest["export"]["ncnn"]["parity"] == p
    for name in ("model.ncnn.param", "model.ncnn.bin", "model.ncnn.param.json"):
        assert run.manifest["files"][name] == report["files"][name]
    assert not list(run.path.glob(".export-*")) and not list(run.path.glob("*pnnx*"))  # pnnx's by-products stay behind


def test_fp16_weights_are_half_and_stay_within_the_reduced_gate(exported):
    runs, reports, fp16, report16 = exported
    r = report16["ncnn"]
    assert r["precision"] == "fp16" and r["parity"]["images"] == 300
    assert r["parity"]["top1_agreement"] >= 0.99 and r["parity"]["gate"] == {"min_top1_agreement": 0.99}
    assert r["parity"]["max_abs_prob_diff"] > 1e-6  # fp16 storage: close, not identical
    assert 0.45 < r["bytes"] / reports["ncnn"]["bytes"] < 0.55
    assert load(fp16, backend="ncnn", threads=1).precision == "fp16"


def test_reload_from_folder_and_file_any_batch(exported):
    runs, _, _, _ = exported
    images = np.random.default_rng(0).integers(0, 256, (10, 48, 48), dtype=np.uint8)
    torch_p = load(runs["float"].path, backend="torch").predict_proba(images)
    folder = load(runs["float"].path, backend="ncnn", threads=2)
    assert folder.backend == "ncnn" and folder.threads == 2
    np.testing.assert_allclose(folder.predict_proba(images), torch_p, atol=1e-5)
    small = load(runs["float"].path / "model.ncnn.param", threads=1, batch_size=3)  # by suffix; 3+3+3+1
    np.testing.assert_allclose(small.predict_proba(images), torch_p, atol=1e-5)
    assert small.predict_proba(images[:0]).shape == (0, 7)


def test_cli_evaluate_on_ncnn(exported, capsys):
    runs, _, _, _ = exported
    data = ["--data", runs["data"]] if runs["data"] else []
    assert main(["evaluate", str(runs["float"].path), "--backend", "ncnn", "--threads", "1", "--json", *data]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["backend"] == "ncnn" and report["n"] > 0
    torch_acc = evaluate_run(runs["float"].path, data=runs["data"], backend="torch", write=False)["accuracy"]
    assert report["accuracy"] == pytest.approx(torch_acc, abs=1e-3)  # the whole split, as PyTorch scores it


@pytest.mark.slow  # two worker processes
def test_bench_has_an_ncnn_row_measured_in_its_own_process(exported):
    runs, _, _, _ = exported
    cfg = BenchConfig(models=[str(runs["float"].path)], backends=("ncnn",), batch_sizes=(1, 8), threads=1,
                      warmup=2, iters=10, data=runs["data"])
    rows = bench_models(cfg, "cpu", isolate=True)
    ort = bench_models(replace(cfg, backends=("onnxruntime",), iters=2), "cpu")
    assert [r["batch"] for r in rows] == [1, 8] and all(r["status"] == "ok" for r in rows)
    assert set(rows[0]) == set(ort[0])  # the same columns as ONNX Runtime's rows
    for r, o in zip(rows, ort):
        assert r["backend"] == "ncnn" and r["precision"] == "fp32"
        assert 0 < r["p50_ms"] < 1000 and r["images_per_s"] > 0 and r["peak_rss_mb"] > 0
        assert r["file_bytes"] == (runs["float"].path / "model.ncnn.bin").stat().st_size
        # the same images as ONNX Runtime's row (all of the test split; the export's parity used 1,000)
        assert r["accuracy"] == pytest.approx(o["accuracy"], abs=1e-3)


@pytest.mark.slow  # a second export
def test_parity_failure_keeps_nothing(exported, tmp_path, monkeypatch):
    runs, _, _, _ = exported
    copy = tmp_path / "bad"
    shutil.copytree(runs["float"].path, copy)
    for name in ("model.ncnn.param", "model.ncnn.bin", "model.ncnn.param.json"):
        (copy / name).unlink()
    from fercomp.deploy import ncnn_backend

    real_forward = ncnn_backend.NCNNPredictor.forward
    monkeypatch.setattr(ncnn_backend.NCNNPredictor, "forward", lambda self, x: -real_forward(self, x))
    with pytest.raises(ParityError, match="model.ncnn.param"):
        export_run(ExportConfig(run=str(copy), data=runs["data"], parity_images=200, formats=("ncnn",)),
                   progress=False)
    assert not (copy / "model.ncnn.param").exists() and not (copy / "model.ncnn.bin").exists()
    assert not list(copy.glob(".export-*")) and (copy / "model.onnx").exists()


def test_damaged_files_are_one_clear_error(exported, tmp_path):
    runs, _, _, _ = exported
    copy = tmp_path / "damaged"
    shutil.copytree(runs["float"].path, copy)
    (copy / "model.ncnn.bin").write_bytes(b"abc")
    with pytest.raises(ModelError, match="export it again"):
        load(copy, backend="ncnn")


def test_int8_run_is_refused_before_anything_is_written(exported, capsys):
    runs, _, _, _ = exported
    before = _tree(runs["int8"].path)
    assert main(["export", str(runs["int8"].path), "--format", "ncnn", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "ncnn2int8" in err and "--format ncnn" in err
    assert _tree(runs["int8"].path) == before


def test_bad_ncnn_precision_is_one_line_exit_2(exported, capsys):
    runs, _, _, _ = exported
    before = _tree(runs["float"].path)
    assert main(["export", str(runs["float"].path), "--format", "ncnn", "--ncnn-precision", "int4"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--ncnn-precision" in err
    assert _tree(runs["float"].path) == before


@pytest.mark.parametrize("module", ["ncnn", "pnnx"])
def test_missing_ncnn_or_pnnx_names_the_extra(exported, monkeypatch, capsys, module):
    runs, _, _, _ = exported
    before = _tree(runs["float"].path)
    hide_modules(monkeypatch, module)
    assert main(["export", str(runs["float"].path), "--format", "ncnn", "--parity-images", "20"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'fercomp[ncnn]'" in err and repr(module) in err
    assert _tree(runs["float"].path) == before  # said before any work
