"""Export: every registry model to ONNX with parity, run folders (float, pruned, INT8), metadata,
the parity gate, and the TensorRT path (its settings here; its plumbing through a fake TensorRT)."""

import json
import shutil

import numpy as np
import onnx
import pytest
import torch

import fake_tensorrt
from fercomp.cli import main
from fercomp.compress import PruneConfig, prune_channels, prune_run
from fercomp.compress.quantize import QuantizeConfig, quantize_run
from fercomp.deploy import export as export_module
from fercomp.deploy.export import ExportConfig, ParityError, export_run, parity
from fercomp.deploy.onnx_export import export_onnx, read_metadata
from fercomp.deploy.runtime import OnnxPredictor, TorchPredictor, load
from fercomp.deploy.tensorrt import EngineSpec, build_settings, to_fp16_onnx, trtexec_command
from fercomp.errors import ConfigError
from fercomp.models import create, list_models
from fercomp.runs import Run, model_spec
from fercomp.train import TrainConfig, fit
from fercomp.train.evaluate import data_for_run

CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
TORCHVISION = {"mobilenet_v2", "resnet18", "resnet50", "vgg16"}


def random_faces(n=24, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 48, 48), dtype=np.uint8)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in ("vgg16", "resnet50") else n
                                  for n in list_models()])  # the two largest run in CI only (see Makefile)
def test_every_registry_model_exports_with_parity(name, tmp_path):
    torch.manual_seed(0)
    model = create(name).eval()
    spec = model_spec(name, {}, CLASSES, model)
    export_onnx(model, spec, tmp_path / "m.onnx")
    onnx.checker.check_model(str(tmp_path / "m.onnx"))
    result = parity(TorchPredictor(model, spec), OnnxPredictor(tmp_path / "m.onnx"), random_faces())
    assert result["top1_agreement"] == 1.0 and result["max_abs_prob_diff"] < 1e-5
    if name in TORCHVISION - {"resnet18"}:
        return  # pruned torchvision exports cost a minute; resnet18 stands for them
    prune_channels(model, 0.5)
    model.eval()
    spec = model_spec(name, {}, CLASSES, model)
    export_onnx(model, spec, tmp_path / "p.onnx")
    result = parity(TorchPredictor(model, spec), OnnxPredictor(tmp_path / "p.onnx"), random_faces())
    assert result["top1_agreement"] == 1.0 and result["max_abs_prob_diff"] < 1e-5


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    """base -> p50 (structured) -> p50-int8 (PTQ), and base -> s24 (2:4), on synthetic faces."""
    root = tmp_path_factory.mktemp("family")
    base = fit(TrainConfig(model="separable_cnn", synthetic_per_class=40, epochs=2, out=str(root / "base")),
               progress=False)
    p50 = prune_run(PruneConfig(parent=str(base.path), ratio=0.5, finetune_epochs=1, out=str(root / "p50")),
                    progress=False)
    int8 = quantize_run(QuantizeConfig(parent=str(p50.path), calib=64, out=str(root / "p50-int8")), progress=False)
    s24 = prune_run(PruneConfig(parent=str(base.path), pattern="2:4", finetune_epochs=0, out=str(root / "s24")),
                    progress=False)
    int8s = quantize_run(QuantizeConfig(parent=str(p50.path), calib=64, activations="s8-sym",
                                        out=str(root / "p50-int8s")), progress=False)
    return {"base": base, "p50": p50, "int8": int8, "s24": s24, "int8s": int8s}


def copy_run(run: Run, tmp_path) -> Run:
    target = tmp_path / run.name
    shutil.copytree(run.path, target)
    return Run.load(target)


@pytest.mark.parametrize("which", ["base", "p50", "s24"])
def test_float_runs_export_with_parity_on_their_test_images(family, which, tmp_path):
    run = copy_run(family[which], tmp_path)
    report = export_run(ExportConfig(run=str(run.path)), progress=False)
    p = report["parity"]
    assert p["top1_agreement"] >= 0.999 and p["max_abs_prob_diff"] < 1e-4
    assert p["images"] == len(data_for_run(run, None).split("test").x) > 0  # the whole test split
    meta = read_metadata(run.path / "model.onnx")
    _, spec = run.load_model()
    assert meta["class_names"] == spec["class_names"] and meta["input_size"] == spec["input_size"]
    assert meta["normalization"] == spec["normalization"] and meta["source_run"] == str(run.path.resolve())
    manifest = Run.load(run.path).manifest
    assert manifest["export"]["parity"]["top1_agreement"] == p["top1_agreement"]
    assert json.loads((run.path / "export.json").read_text())["onnx"]["sha256"] == manifest["files"]["model.onnx"]
    # the ONNX predictor over the run folder computes what torch computes
    x = random_faces(8)
    np.testing.assert_allclose(load(run.path, backend="onnxruntime").predict_proba(x),
                               load(run.path).predict_proba(x), atol=1e-5)


def test_int8_run_is_checked_against_its_float_parent(family, tmp_path):
    run = copy_run(family["int8"], tmp_path)
    report = export_run(ExportConfig(run=str(run.path)), progress=False)
    p = report["parity"]
    assert p["gate"] is None and p["against"] == "float parent p50"
    assert 0.5 < p["top1_agreement"] <= 1.0 and p["max_abs_prob_diff"] > 0  # INT8 differs a little, not a lot
    assert read_metadata(run.path / "model.onnx")["precision"] == "int8"


def test_static_batch_export_pads_to_its_batch(family, tmp_path):
    run = copy_run(family["base"], tmp_path)
    export_run(ExportConfig(run=str(run.path), dynamic_batch=False, static_batch=4, parity_images=5), progress=False)
    predictor = OnnxPredictor(run.path / "model.onnx")
    assert predictor.fixed_batch == 4
    x = random_faces(7)  # one full batch of 4, then 3 padded to 4
    np.testing.assert_allclose(predictor.predict_proba(x), load(run.path).predict_proba(x), atol=1e-5)


def test_parity_failure_writes_nothing(family, tmp_path, monkeypatch, capsys):
    run = copy_run(family["base"], tmp_path)

    def export_a_different_model(model, spec, path, **kw):
        torch.manual_seed(123)
        return export_onnx(create("separable_cnn").eval(), spec, path, **kw)

    monkeypatch.setattr(export_module, "export_onnx", export_a_different_model)
    with pytest.raises(ParityError, match="agrees with PyTorch on only"):
        export_run(ExportConfig(run=str(run.path)), progress=False)
    assert not (run.path / "model.onnx").exists() and not (run.path / "export.json").exists()
    assert not list(run.path.glob(".model.onnx*"))  # no temporary left either
    code = main(["export", str(run.path), "--no-progress"])
    assert code == 2 and "agrees with PyTorch on only" in capsys.readouterr().err


def test_trt_without_tensorrt_keeps_the_onnx_and_says_how_to_build(family, tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # importing it now raises ImportError
    run = copy_run(family["base"], tmp_path)
    code = main(["export", str(run.path), "--trt", "--fp16", "--no-progress"])
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1
    assert "TensorRT is not installed" in err and "fercomp deploy" in err
    assert (run.path / "model.onnx").is_file() and not (run.path / "model.engine").exists()
    assert Run.load(run.path).manifest["export"]["parity"]["top1_agreement"] >= 0.999


@pytest.mark.parametrize("argv, expected", [
    (["--fp16"], "add --trt"),
    (["--trt", "--int8"], "quantize the run first"),
    (["--trt", "--fp16", "--int8"], "pick one"),
    (["--opset", "3"], "--opset"),
    (["--parity-images", "0"], "--parity-images"),
    (["--trt", "--max-batch", "0"], "--max-batch"),
    (["--trt", "--workspace", "8"], "--workspace"),
])
def test_export_flag_mistakes_exit_2_and_write_nothing(family, tmp_path, capsys, argv, expected):
    run = copy_run(family["base"], tmp_path)
    code = main(["export", str(run.path), "--no-progress", *argv])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1
    assert not (run.path / "model.onnx").exists()


def test_fp16_engine_of_an_int8_run_is_refused(family, tmp_path, capsys):
    run = copy_run(family["int8"], tmp_path)
    assert main(["export", str(run.path), "--trt", "--fp16", "--no-progress"]) == 2
    assert "--int8" in capsys.readouterr().err


# -- TensorRT settings: pure functions ------------------------------------------------------------------------

def test_build_settings_map_precision_sparsity_and_profile():
    spec = EngineSpec(input_name="input", input_shape=(1, 48, 48), precision="fp16", sparse=True, opt_batch=32,
                      max_batch=128, workspace_mib=512)
    s = build_settings(spec, 10)
    assert s.builder_flags == ("FP16", "SPARSE_WEIGHTS") and s.network_flags == ()
    assert s.profile == {"min": (1, 1, 48, 48), "opt": (32, 1, 48, 48), "max": (128, 1, 48, 48)}
    assert s.workspace_bytes == 512 << 20
    int8 = build_settings(EngineSpec(input_name="input", input_shape=(1, 48, 48), precision="int8"), 10)
    assert int8.network_flags == ("STRONGLY_TYPED",) and int8.builder_flags == ()
    assert build_settings(EngineSpec("input", (1, 48, 48), dynamic_batch=False)).profile is None
    assert not s.fp16_onnx
    # TensorRT 11: no weak typing, so fp16 comes from an fp16 ONNX and no precision flag is set
    s11 = build_settings(spec, 11)
    assert s11.builder_flags == ("SPARSE_WEIGHTS",) and s11.network_flags == () and s11.fp16_onnx
    int8_11 = build_settings(EngineSpec(input_name="input", input_shape=(1, 48, 48), precision="int8"), 11)
    assert int8_11.network_flags == () and int8_11.builder_flags == () and not int8_11.fp16_onnx
    with pytest.raises(ConfigError, match="min <= opt <= max"):
        build_settings(EngineSpec("input", (1, 48, 48), opt_batch=512, max_batch=256))


def test_trtexec_command_matches_the_python_builder():
    cmd = trtexec_command(EngineSpec("input", (1, 48, 48), precision="int8", sparse=True, opt_batch=16, max_batch=64))
    assert cmd[0] == "trtexec" and "--onnx=model.onnx" in cmd and "--saveEngine=model.engine" in cmd
    assert "--stronglyTyped" in cmd and "--sparsity=enable" in cmd and "--fp16" not in cmd
    assert "--minShapes=input:1x1x48x48" in cmd and "--optShapes=input:16x1x48x48" in cmd
    assert "--maxShapes=input:64x1x48x48" in cmd and "--memPoolSize=workspace:1024" in cmd
    static = trtexec_command(EngineSpec("x", (1, 48, 48), precision="fp16", dynamic_batch=False))
    assert "--fp16" in static and not any(a.startswith("--minShapes") for a in static)


def test_trtexec_command_for_tensorrt_11_has_no_weak_typing_flags():
    fp16 = trtexec_command(EngineSpec("input", (1, 48, 48), precision="fp16", sparse=True), tensorrt_major=11)
    assert "--onnx=model_fp16.onnx" in fp16 and "--sparsity=enable" in fp16
    assert not {"--fp16", "--int8", "--stronglyTyped"} & set(fp16)
    int8 = trtexec_command(EngineSpec("input", (1, 48, 48), precision="int8"), tensorrt_major=11)
    assert "--onnx=model.onnx" in int8 and not {"--fp16", "--int8", "--stronglyTyped"} & set(int8)


def test_fp16_copy_of_an_onnx_computes_what_the_fp32_one_does(family, tmp_path):
    import onnxruntime as ort

    run = copy_run(family["base"], tmp_path)
    export_run(ExportConfig(run=str(run.path), parity_images=5), progress=False)
    fp32 = onnx.load(str(run.path / "model.onnx"))
    before = fp32.SerializeToString()
    fp16 = to_fp16_onnx(fp32)
    assert fp32.SerializeToString() == before  # the caller's model is untouched
    floats = [t for t in fp16.graph.initializer if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)]
    assert floats and all(t.data_type == onnx.TensorProto.FLOAT16 for t in floats)
    assert fp16.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert fp16.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert read_metadata(fp16) == read_metadata(fp32)
    x = np.random.default_rng(0).standard_normal((16, 1, 48, 48)).astype(np.float32)
    y32 = ort.InferenceSession(before, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    y16 = ort.InferenceSession(fp16.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"input": x.astype(np.float16)})[0]
    assert y16.dtype == np.float16 and np.abs(y16.astype(np.float32) - y32).max() < 0.05
    assert (y16.argmax(1) == y32.argmax(1)).mean() >= 0.9


# -- TensorRT plumbing through a fake TensorRT -----------------------------------------------------------------

def test_export_trt_builds_verifies_and_loads_an_engine(family, tmp_path, monkeypatch):
    trt, cuda = fake_tensorrt.install(monkeypatch)
    run = copy_run(family["base"], tmp_path)
    report = export_run(ExportConfig(run=str(run.path), trt=True, precision="fp16", max_batch=64, opt_batch=16),
                        progress=False)
    assert cuda.opened == cuda.closed == 1 and cuda.memory == {}  # the parity check closed its engine
    (what, record), = trt.calls
    assert record["flags"] == ["FP16"] and not record["strongly_typed"]
    assert record["profiles"] == [{"input": [[1, 1, 48, 48], [16, 1, 48, 48], [64, 1, 48, 48]]}]
    assert record["pools"] == {"WORKSPACE": 1024 << 20} and record["cache_in"] == "fresh-cache"
    t = report["tensorrt"]
    assert t["parity"]["top1_agreement"] == 1.0 and t["parity"]["max_abs_prob_diff"] < 1e-6
    assert t["builder_flags"] == ["FP16"]
    assert (run.path / "timing.cache").read_bytes() == b"fresh-cache+1"
    assert "fake build done" in (run.path / "trt_build.log").read_text()
    assert "verbose noise" not in (run.path / "trt_build.log").read_text()
    meta = json.loads((run.path / "model.json").read_text())
    assert meta["precision"] == "fp16" and meta["class_names"] == CLASSES
    assert Run.load(run.path).manifest["files"]["model.engine"]
    # the engine serves through the same predictor interface, in chunks of the profile's max batch
    x = random_faces(150)
    engine = load(run.path, backend="tensorrt")
    assert engine.backend == "tensorrt" and engine.model.max_batch == 64
    np.testing.assert_allclose(engine.predict_proba(x), load(run.path).predict_proba(x), atol=1e-5)
    with load(run.path / "model.engine") as again:
        np.testing.assert_allclose(again.predict_proba(x[:3]), engine.predict_proba(x[:3]), atol=1e-7)
    engine.close()
    engine.close()  # twice is harmless
    assert cuda.opened == cuda.closed and cuda.memory == {}
    # a shape outside the profile is refused the way TensorRT refuses it: set_input_shape answers False
    with load(run.path, backend="tensorrt") as engine:
        assert engine.model.context.set_input_shape("input", (65, 1, 48, 48)) is False
        with pytest.raises(RuntimeError, match="outside its optimization profile"):
            engine.model._run(np.zeros((65, 1, 48, 48), np.float32))
    # a second build reuses the timing cache it wrote
    export_run(ExportConfig(run=str(run.path), trt=True, precision="fp16", parity_images=10), progress=False)
    assert trt.calls[-1][1]["cache_in"] == "fresh-cache+1"


def test_int8_engine_is_strongly_typed_from_the_qdq_onnx(family, tmp_path, monkeypatch):
    trt, _ = fake_tensorrt.install(monkeypatch)
    run = copy_run(family["int8s"], tmp_path)
    report = export_run(ExportConfig(run=str(run.path), trt=True), progress=False)  # precision follows the run
    record = trt.calls[-1][1]
    assert record["strongly_typed"] and record["flags"] == []
    assert report["tensorrt"]["spec"]["precision"] == "int8"
    assert json.loads((run.path / "model.json").read_text())["precision"] == "int8"
    assert report["tensorrt"]["parity"]["top1_agreement"] == 1.0


def test_sparse_engine_of_a_2to4_run(family, tmp_path, monkeypatch):
    trt, _ = fake_tensorrt.install(monkeypatch)
    run = copy_run(family["s24"], tmp_path)
    export_run(ExportConfig(run=str(run.path), trt=True, sparse=True, parity_images=20), progress=False)
    assert trt.calls[-1][1]["flags"] == ["SPARSE_WEIGHTS"]


def test_static_batch_engine_pads_the_last_chunk(family, tmp_path, monkeypatch):
    fake_tensorrt.install(monkeypatch)
    run = copy_run(family["base"], tmp_path)
    export_run(ExportConfig(run=str(run.path), dynamic_batch=False, static_batch=4, trt=True, parity_images=7),
               progress=False)
    engine = load(run.path, backend="tensorrt")
    assert not engine.model.dynamic_batch and engine.model.max_batch == 4
    x = random_faces(6)
    np.testing.assert_allclose(engine.predict_proba(x), load(run.path).predict_proba(x), atol=1e-5)


def test_uint8_qdq_is_refused_for_tensorrt_before_building(family, tmp_path, monkeypatch, capsys):
    trt, _ = fake_tensorrt.install(monkeypatch)
    run = copy_run(family["int8"], tmp_path)  # u8-asym: ONNX Runtime's fast encoding, not TensorRT's
    assert main(["export", str(run.path), "--trt", "--no-progress", "--parity-images", "5"]) == 2
    err = capsys.readouterr().err
    assert "zero point 0" in err and "--activations s8-sym" in err and not trt.calls
    assert not (run.path / "model.engine").exists()


@pytest.mark.parametrize("which, version, argv, corruption", [
    ("base", "10.3.0", [], True),  # every answer wrong
    ("base", "10.3.0", ["--fp16"], 4.0),  # noisy logits: some answers wrong, below the 99% gate
    ("base", "11.4.0", ["--fp16"], 4.0),
    ("int8s", "10.3.0", [], 4.0),
])
def test_an_engine_that_disagrees_is_not_kept(family, tmp_path, monkeypatch, capsys, which, version, argv, corruption):
    trt, cuda = fake_tensorrt.install(monkeypatch, version=version)
    trt.corrupt_outputs = corruption
    run = copy_run(family[which], tmp_path)
    assert main(["export", str(run.path), "--trt", "--no-progress", *argv]) == 2
    err = capsys.readouterr().err
    assert "engine not kept" in err and "agrees with ONNX Runtime on only" in err
    assert trt.calls  # it was built, then refused
    assert not (run.path / "model.engine").exists() and not (run.path / "model.json").exists()
    assert not list(run.path.glob(".model.engine*")) and (run.path / "model.onnx").is_file()
    assert "model.engine" not in Run.load(run.path).manifest["files"]
    assert cuda.opened == cuda.closed == 1 and cuda.memory == {}  # closed on the failure path too
    # the same export with a correct engine passes: the gate, not the setup, refused it
    trt.corrupt_outputs = False
    assert main(["export", str(run.path), "--trt", "--no-progress", *argv]) == 0
    assert (run.path / "model.engine").is_file()


def test_reexport_removes_an_engine_built_from_the_old_onnx(family, tmp_path, monkeypatch):
    fake_tensorrt.install(monkeypatch)
    run = copy_run(family["base"], tmp_path)
    export_run(ExportConfig(run=str(run.path), trt=True, parity_images=10), progress=False)
    assert (run.path / "model.engine").is_file()
    export_run(ExportConfig(run=str(run.path), dynamic_batch=False, parity_images=10), progress=False)
    assert not (run.path / "model.engine").exists() and not (run.path / "model.json").exists()
    assert "model.engine" not in Run.load(run.path).manifest["files"]


def test_tensorrt_11_fp16_engine_is_built_from_an_fp16_onnx(family, tmp_path, monkeypatch):
    trt, cuda = fake_tensorrt.install(monkeypatch, version="11.4.0")
    assert not hasattr(trt.BuilderFlag, "FP16") and not hasattr(trt.BuilderFlag, "INT8")  # really TensorRT 11
    run = copy_run(family["base"], tmp_path)
    report = export_run(ExportConfig(run=str(run.path), trt=True, precision="fp16"), progress=False)
    record = trt.calls[-1][1]
    assert record["flags"] == [] and record["strongly_typed"] and record["input_type"] == "FLOAT16"
    t = report["tensorrt"]
    assert t["builder_flags"] == [] and t["network_flags"] == [] and t["onnx_precision"] == "fp16"
    assert t["parity"]["top1_agreement"] >= 0.99 and t["parity"]["max_abs_prob_diff"] < 0.05
    assert not list(run.path.glob("*fp16*"))  # the fp16 copy lived in a temporary folder
    assert cuda.opened == cuda.closed and cuda.memory == {}
    x = random_faces(10)
    with load(run.path, backend="tensorrt") as engine:  # float16 in and out; float32 logits for callers
        assert engine.model.input_dtype == np.float16 and engine.model.output_dtype == np.float16
        logits = engine.forward(np.random.default_rng(0).standard_normal((3, 1, 48, 48)).astype(np.float32))
        assert logits.dtype == np.float32 and logits.shape == (3, 7)
        np.testing.assert_allclose(engine.predict_proba(x), load(run.path).predict_proba(x), atol=0.05)


def test_tensorrt_11_int8_engine_is_strongly_typed_without_flags(family, tmp_path, monkeypatch):
    trt, _ = fake_tensorrt.install(monkeypatch, version="11.4.0")
    run = copy_run(family["int8s"], tmp_path)
    report = export_run(ExportConfig(run=str(run.path), trt=True, parity_images=50), progress=False)
    record = trt.calls[-1][1]
    assert record["strongly_typed"] and record["flags"] == [] and record["input_type"] == "FLOAT"
    assert report["tensorrt"]["network_flags"] == [] and report["tensorrt"]["parity"]["top1_agreement"] == 1.0


def _real_tensorrt() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available()


@pytest.mark.tensorrt
@pytest.mark.skipif(not _real_tensorrt(), reason="needs TensorRT and an NVIDIA GPU")
@pytest.mark.parametrize("which, precision", [("base", "fp32"), ("base", "fp16"), ("int8s", "int8")])
def test_real_tensorrt_engine_agrees_with_onnxruntime(family, which, precision, tmp_path):
    """On a TensorRT host: build a real engine, reload it, and compare it with ONNX Runtime."""
    run = copy_run(family[which], tmp_path)
    report = export_run(ExportConfig(run=str(run.path), trt=True, precision=precision), progress=False)
    t = report["tensorrt"]
    assert (run.path / "model.engine").stat().st_size > 0 and t["parity"]["images"] > 0
    assert t["parity"]["top1_agreement"] >= (0.999 if precision == "fp32" else 0.97)
    x = random_faces(5)
    probs = load(run.path / "model.engine").predict_proba(x)
    assert probs.shape == (5, 7) and np.allclose(probs.sum(1), 1, atol=1e-4)
