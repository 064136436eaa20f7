"""INT8 quantization: QDQ placement ONNX Runtime fuses, accuracy measured in ONNX Runtime, errors."""

import numpy as np
import onnx
import pytest

from fercomp.cli import main
from fercomp.compress.quantize import QuantizeConfig, optimized_op_counts, quantize_run
from fercomp.deploy.runtime import OnnxPredictor, load
from fercomp.train import TrainConfig, evaluate_run, fit


@pytest.fixture(scope="module")
def trained(trained_synthetic):
    return trained_synthetic


@pytest.fixture(scope="module")
def int8(trained, tmp_path_factory):
    return quantize_run(QuantizeConfig(parent=str(trained.path), calib=256,
                                       out=str(tmp_path_factory.mktemp("q") / "int8")), progress=False)


@pytest.fixture(scope="module")
def se_int8(tmp_path_factory):
    """Residual adds, SE blocks (mul, sigmoid) and pools: every kind of op the placement must cover."""
    root = tmp_path_factory.mktemp("se")
    base = fit(TrainConfig(model="se_resnet", model_kwargs={"width": 16}, synthetic_per_class=20, epochs=1,
                           batch_size=32, out=str(root / "base")), progress=False)
    return quantize_run(QuantizeConfig(parent=str(base.path), calib=64, out=str(root / "int8")), progress=False)


@pytest.mark.parametrize("which", ["int8", "se_int8"])
def test_every_conv_and_add_is_fused_by_onnxruntime(which, request):
    run = request.getfixturevalue(which)
    path = run.path / "model.onnx"
    graph = onnx.load(str(path)).graph
    convs = sum(n.op_type == "Conv" for n in graph.node)
    adds = sum(n.op_type == "Add" for n in graph.node)
    assert convs >= 10 and adds >= 3
    ops = optimized_op_counts(path)
    assert ops["QLinearConv"] == convs  # every conv runs in INT8
    assert ops.get("Conv", 0) == 0 and ops.get("FusedConv", 0) == 0
    assert ops["QLinearAdd"] == adds  # and every residual add
    assert run.manifest["quantize"]["fusion"]["qlinear_conv"] == convs


def test_int8_agrees_with_fp32_in_onnxruntime(int8, trained):
    from fercomp.train.evaluate import data_for_run

    data = data_for_run(trained, None)
    x = data.split("test").x
    p32 = OnnxPredictor(int8.path / "model_fp32.onnx").predict_proba(x)
    p8 = OnnxPredictor(int8.path / "model.onnx").predict_proba(x)
    torch_probs = load(trained.path).predict_proba(x)
    assert np.abs(p32 - torch_probs).max() < 1e-4  # the FP32 export computes what torch computed
    assert (p8.argmax(1) == p32.argmax(1)).mean() >= 0.97
    acc = int8.manifest["quantize"]["accuracy"]
    assert abs(acc["int8_onnx"]["test"] - acc["fp32_onnx"]["test"]) <= 0.03
    assert acc["fp32_onnx"]["test"] == pytest.approx(trained.manifest["metrics"]["test_acc"])


def test_quantized_run_evaluates_through_onnxruntime(int8):
    report = evaluate_run(int8.path, split="test", write=False)
    assert report["backend"] == "onnxruntime"
    assert report["accuracy"] == pytest.approx(int8.manifest["metrics"]["test_acc"])
    meta_precision = OnnxPredictor(int8.path / "model.onnx").precision
    assert meta_precision == "int8"
    assert [r.name for r in int8.lineage()] == ["base", "int8"]


def test_s8_symmetric_activations_have_zero_zero_points(trained, tmp_path):
    """The TensorRT encoding: every activation zero point is INT8 zero."""
    run = quantize_run(QuantizeConfig(parent=str(trained.path), calib=64, activations="s8-sym",
                                      out=str(tmp_path / "sym")), progress=False)
    model = onnx.load(str(run.path / "model.onnx"))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    zero_points = [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    assert zero_points and all(zp.dtype == np.int8 and not zp.any() for zp in zero_points)


@pytest.mark.parametrize("argv, expected", [
    (["--mode", "fp4"], "--mode"),
    (["--calib", "0"], "--calib"),
    (["--calib-method", "magic"], "--calib-method"),
    (["--activations", "u4"], "--activations"),
    (["--weight-range", "huge"], "--weight-range"),
])
def test_quantize_cli_errors(capsys, trained, tmp_path, argv, expected):
    code = main(["quantize", str(trained.path), "--out", str(tmp_path / "x"), "--no-progress", *argv])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_quantizing_a_quantized_run_is_refused(capsys, int8, tmp_path):
    code = main(["quantize", str(int8.path), "--out", str(tmp_path / "again"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "already quantized" in err
    assert not (tmp_path / "again").exists()


@pytest.fixture(scope="module")
def qat(trained, tmp_path_factory):
    return quantize_run(QuantizeConfig(parent=str(trained.path), mode="qat", epochs=2,
                                       out=str(tmp_path_factory.mktemp("qat") / "qat")), progress=False)


@pytest.mark.slow  # a QAT fine-tune in its fixture (about a minute on 2 cores)
def test_qat_exports_fully_fused_int8_that_matches_its_fake_quant_model(qat, trained):
    m = qat.manifest
    assert m["stage"] == "quantize" and m["status"] == "complete"
    graph = onnx.load(str(qat.path / "model.onnx")).graph
    convs = sum(n.op_type == "Conv" for n in graph.node)
    ops = optimized_op_counts(qat.path / "model.onnx")
    assert convs >= 10 and ops["QLinearConv"] == convs and ops.get("Add", 0) == 0
    # ONNX Runtime's INT8 computes what the torch fake-quant model computed
    assert m["quantize"]["ort_vs_fake_quant_top1_agreement_test"] >= 0.99
    assert m["quantize"]["max_abs_weight"] <= 64 and m["quantize"]["exact_on_non_vnni_x86"]  # QAT learns the 7-bit grid
    acc = m["quantize"]["accuracy"]
    assert abs(acc["int8_onnx"]["test"] - trained.manifest["metrics"]["test_acc"]) <= 0.05
    assert evaluate_run(qat.path, split="test", write=False)["accuracy"] == pytest.approx(m["metrics"]["test_acc"])
    assert not (qat.path / "last.pt").exists()


@pytest.fixture(scope="module")
def qat_s8(trained, tmp_path_factory):
    return quantize_run(QuantizeConfig(parent=str(trained.path), mode="qat", epochs=2, activations="s8-sym",
                                       out=str(tmp_path_factory.mktemp("qat8") / "qat8")), progress=False)


@pytest.mark.slow  # a QAT fine-tune in its fixture (about a minute on 2 cores)
def test_s8_symmetric_qat_exports_tensorrt_ready_int8_that_stays_accurate(qat_s8, trained, tmp_path, monkeypatch):
    """--mode qat --activations s8-sym: signed INT8, zero points 0, so TensorRT (and a Jetson) takes it."""
    import fake_tensorrt
    from fercomp.deploy.tensorrt import EngineSpec, build_engine, tensorrt_qdq_problems

    m = qat_s8.manifest
    assert m["status"] == "complete" and m["quantize"]["activations"] == "per-tensor s8-sym"
    model = onnx.load(str(qat_s8.path / "model.onnx"))
    assert tensorrt_qdq_problems(model) == []
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    zero_points = [inits[n.input[2]] for n in model.graph.node
                   if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2 and n.input[2] in inits]
    assert len(zero_points) >= 20 and all(zp.dtype == np.int8 and not zp.any() for zp in zero_points)
    assert sum(n.op_type == "QuantizeLinear" for n in model.graph.node) >= 10  # activations really quantized
    # as accurate as the u8 QAT test asks, and ONNX Runtime computes what the fake-quant model computed
    assert m["quantize"]["ort_vs_fake_quant_top1_agreement_test"] >= 0.99
    assert abs(m["quantize"]["accuracy"]["int8_onnx"]["test"] - trained.manifest["metrics"]["test_acc"]) <= 0.05
    # TensorRT's parser (the fake's checks: int8, zero point 0) accepts it and builds strongly typed
    trt, _ = fake_tensorrt.install(monkeypatch)
    build_engine(qat_s8.path / "model.onnx", EngineSpec("input", (1, 48, 48), precision="int8"))
    assert trt.calls[-1][1]["strongly_typed"]


@pytest.mark.slow  # runs in CI (FERCOMP_ALL_TESTS=1); left out of the quick `make test`
def test_qat_resumes_after_interruption(trained, tmp_path, monkeypatch):
    from fercomp.compress import qat as qat_module
    from fercomp.runs import Run

    original = qat_module.QatRecipe.on_epoch_start

    def stop_at_epoch_2(self, model, epoch):
        if epoch == 2:
            raise KeyboardInterrupt
        original(self, model, epoch)

    monkeypatch.setattr(qat_module.QatRecipe, "on_epoch_start", stop_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        quantize_run(QuantizeConfig(parent=str(trained.path), mode="qat", epochs=2, out=str(tmp_path / "q")),
                     progress=False)
    monkeypatch.setattr(qat_module.QatRecipe, "on_epoch_start", original)
    assert Run.load(tmp_path / "q").manifest["status"] == "interrupted"
    code = main(["train", "--resume", str(tmp_path / "q"), "--no-progress"])
    assert code == 0
    run = Run.load(tmp_path / "q")
    assert run.manifest["status"] == "complete" and run.manifest["metrics"]["epochs_run"] == 2
    assert (run.path / "model.onnx").exists()
