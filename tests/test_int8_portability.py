"""INT8 weights in [-64, 64]: the same integers on every x86 CPU, VNNI or not (weight_range.py)."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from fercomp.compress.quantize import QuantizeConfig, quantize_run
from fercomp.compress.weight_range import max_abs_weight, saturation_free
from fercomp.deploy.runtime import OnnxPredictor, preprocess
from fercomp.train.evaluate import data_for_run

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ptq(trained_synthetic, tmp_path_factory):
    root = tmp_path_factory.mktemp("ranges")
    return {r: quantize_run(QuantizeConfig(parent=str(trained_synthetic.path), calib=64, weight_range=r,
                                           out=str(root / r)), progress=False) for r in ("reduced", "full")}


def test_pair_sums_of_reduced_weights_fit_in_int16_and_full_ones_do_not():
    assert saturation_free(64) and 2 * 255 * 64 <= 32767
    assert not saturation_free(65) and not saturation_free(127)


def test_default_ptq_weights_cannot_saturate_and_full_range_ones_can(ptq):
    reduced, full = ptq["reduced"], ptq["full"]
    assert QuantizeConfig(parent="x").weight_range == "reduced"  # the default is the portable one
    r_max = max_abs_weight(onnx.load(str(reduced.path / "model.onnx")))
    f_max = max_abs_weight(onnx.load(str(full.path / "model.onnx")))
    assert 32 < r_max <= 64 and f_max == 127  # per-channel symmetric: each channel's largest weight uses the range
    assert reduced.manifest["quantize"]["max_abs_weight"] == r_max and reduced.manifest["quantize"]["exact_on_non_vnni_x86"]
    assert not full.manifest["quantize"]["exact_on_non_vnni_x86"]
    assert reduced.manifest["quantize"]["weights"] == "int8 per-channel symmetric, integers in [-64, 64]"
    # a 7-bit weight grid costs the synthetic faces little
    acc = {r: run.manifest["quantize"]["accuracy"]["int8_onnx"]["test"] for r, run in ptq.items()}
    assert acc["reduced"] >= acc["full"] - 0.03, acc


@pytest.mark.skipif(shutil.which("qemu-x86_64") is None, reason="needs qemu-user (apt-get install qemu-user)")
def test_reduced_range_int8_logits_are_identical_on_an_emulated_cpu_without_vnni(ptq, trained_synthetic, tmp_path):
    """QEMU's TCG emulates AVX2 without AVX-512 or VNNI: ONNX Runtime takes its saturating kernels there."""
    images = data_for_run(trained_synthetic, None).split("test").x[:64]
    npz = tmp_path / "images.npz"
    np.savez(npz, test_x=images, test_y=np.zeros(len(images), np.int64))
    onnx_path = ptq["reduced"].path / "model.onnx"
    out = tmp_path / "emulated.npy"
    subprocess.run(["qemu-x86_64", "-cpu", "max", sys.executable, str(REPO / "benchmarks" / "int8_portability.py"),
                    "--worker", str(onnx_path), str(npz), str(len(images)), str(out)], check=True, timeout=600)
    predictor = OnnxPredictor(onnx_path, threads=1)
    native = predictor.forward(preprocess(images, predictor.spec))
    assert np.array_equal(np.load(out), native)  # the same integers, so the very same floats
