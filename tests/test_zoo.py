"""The model zoo shipped in the package: verified files, one name everywhere, figures that match the cards."""

from __future__ import annotations

import csv
import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from fercomp import zoo
from fercomp.deploy import runtime
from fercomp.errors import ModelError, RunError
from fercomp.runs import MANIFEST, MODEL_FILE, ONNX_FILE, Run, writable_copy

from test_cli import one_line_error, run_cli

REPO = Path(__file__).resolve().parents[1]
PHOTO = REPO / "examples" / "astronaut.jpg"
NAMES = zoo.names()

pytestmark = pytest.mark.skipif(not NAMES, reason="this checkout ships no zoo model yet")


@pytest.fixture
def corrupt_zoo(tmp_path, monkeypatch):
    """A copy of the zoo in which the default model's weights lost a byte (the installed zoo stays intact)."""
    copy = tmp_path / "zoo"
    shutil.copytree(zoo.MODELS_DIR, copy / "models")
    shutil.copy2(zoo.INDEX_FILE, copy / "index.json")
    entry = zoo.card(zoo.default_name())
    victim = copy / "models" / entry["folder"] / (MODEL_FILE if MODEL_FILE in entry["files"] else ONNX_FILE)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    monkeypatch.setattr(zoo, "MODELS_DIR", copy / "models")
    monkeypatch.setattr(zoo, "INDEX_FILE", copy / "index.json")
    zoo.forget()
    yield victim
    zoo.forget()


@pytest.mark.parametrize("name", NAMES)
def test_entry_loads_weights_only_and_matches_its_card(name):
    card = zoo.card(name)
    folder = zoo.resolve(f"zoo:{name}")
    for file, digest in card["files"].items():  # resolve verified them; check the card lists every shipped file
        assert (folder / file).is_file()
    assert sorted(p.name for p in folder.iterdir()) == sorted(card["files"])
    run = Run.load(f"zoo:{name}")
    assert run.is_zoo and run.ref == f"zoo:{name}" and run.manifest["status"] == "complete"
    assert card["params"] <= {"tiny": 60_000, "compact": 250_000}.get(card["tier"], 2_000_000)
    if (folder / MODEL_FILE).exists():
        state = torch.load(folder / MODEL_FILE, map_location="cpu", weights_only=True)
        assert state["format"] == "fercomp-model/1"
        model, spec = run.load_model()
        assert sum(p.numel() for p in model.parameters()) == card["params"]
        assert spec["class_names"] == card["class_names"]


# An entry may ship its checkpoint only (the 25 MB budget): `fercomp export zoo:NAME` makes its ONNX.
@pytest.mark.parametrize("name", [n for n in NAMES if zoo.card(n)["precision"] == "fp32" and ONNX_FILE in zoo.card(n)["files"]])
def test_onnx_agrees_with_the_checkpoint(name):
    from fercomp.data.synthetic import make_synthetic

    x, _ = make_synthetic(n_per_class=30, seed=3)
    torch_probs = runtime.load(f"zoo:{name}", backend="torch").predict_proba(x)
    onnx_probs = runtime.load(f"zoo:{name}", backend="onnxruntime").predict_proba(x)
    assert (torch_probs.argmax(1) == onnx_probs.argmax(1)).mean() >= 0.999
    assert np.abs(torch_probs - onnx_probs).max() < 1e-4


@pytest.mark.parametrize("split", ["test", pytest.param("val", marks=pytest.mark.slow)])  # PublicTest in CI only
@pytest.mark.parametrize("name", NAMES)
def test_accuracy_on_real_data_equals_the_card(name, split, fer2013_npz):
    from fercomp.train import evaluate_run

    card = zoo.card(name)
    report = evaluate_run(f"zoo:{name}", data=str(fer2013_npz), split=split, threads=2, write=False)
    assert report["n"] == card[split]["images"]  # 3,589 with FER2013's labels; fewer under FER+'s majority rule
    assert abs(report["accuracy"] - card[split]["accuracy"]) <= 0.001, (split, report["accuracy"])


def test_bare_name_resolves_unless_a_folder_has_that_name(tmp_path, monkeypatch):
    name = NAMES[0]
    monkeypatch.chdir(tmp_path)
    assert zoo.resolve(name) == zoo.resolve(f"zoo:{name}")
    (tmp_path / name).mkdir()
    assert zoo.resolve(name) == Path(name)  # the user's own folder wins over the zoo
    with pytest.raises(ModelError, match="unknown zoo model zoo:nope"):
        zoo.resolve("zoo:nope")


def test_zoo_runs_are_read_only_and_derived_runs_go_to_artifacts(tmp_path, monkeypatch):
    name = NAMES[0]
    run = Run.load(f"zoo:{name}")
    with pytest.raises(RunError, match="read-only"):
        run.update(status="running")
    assert run.home == Path("artifacts")


def test_predict_without_model_uses_the_default_zoo_model_on_a_photo(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "predict", str(PHOTO), "--out", "pred", "--no-progress")
    assert code == 0, err
    assert f"zoo:{zoo.default_name()}" in out + err
    with open(tmp_path / "pred" / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 1 and rows[0]["error"] == ""  # one face, the astronaut's
    probs = [float(rows[0][c]) for c in zoo.card(zoo.default_name())["class_names"]]
    assert abs(sum(probs) - 1) < 1e-3
    assert (tmp_path / "pred" / "annotated" / "astronaut.jpg").stat().st_size > 10_000


def test_every_stage_takes_a_zoo_name(tmp_path, capsys, monkeypatch):
    """evaluate, predict, export, quantize, prune, deploy, bench, ensemble, explain and a training's --teacher resolve
    zoo:NAME; results go to artifacts/, never into the package."""
    from fercomp.data.synthetic import make_synthetic

    monkeypatch.chdir(tmp_path)
    name = zoo.default_name()
    before = {p.name: p.stat().st_mtime_ns for p in zoo.resolve(name).iterdir()}
    x, y = make_synthetic(n_per_class=10, seed=1)
    np.savez(tmp_path / "faces.npz", x=x, y=y)

    def ok(*argv):
        code, out, err = run_cli(capsys, *argv)
        assert code == 0, err
        return out + err

    ok("evaluate", f"zoo:{name}", "--data", "faces.npz", "--json")
    ok("predict", str(PHOTO), "--model", name, "--out", "p2", "--no-progress")
    assert "read-only; exporting its copy in artifacts" in ok("export", f"zoo:{name}", "--data", "faces.npz")
    copy = Run.load(tmp_path / "artifacts" / name)
    assert copy.manifest["copied_from"] == f"zoo:{name}" and (copy.path / ONNX_FILE).is_file()
    ok("quantize", f"zoo:{name}", "--data", "faces.npz", "--calib", "64", "--no-progress")
    int8 = Run.load(tmp_path / "artifacts" / f"{name}-ptq-int8")
    assert int8.manifest["parent"] == f"zoo:{name}" and int8.parent.is_zoo
    ok("prune", f"zoo:{name}", "--data", "faces.npz", "--ratio", "0.3", "--finetune-epochs", "1", "--out", "pruned",
       "--no-progress")
    pruned = Run.load(tmp_path / "pruned")
    assert pruned.manifest["parent"] == f"zoo:{name}" and pruned.manifest["config"]["data"].endswith("faces.npz")
    assert pruned.manifest["params"] < zoo.card(name)["params"]
    ok("deploy", f"zoo:{name}", "--data", "faces.npz", "--out", "jetson.tar.gz", "--no-progress")
    with tarfile.open(tmp_path / "jetson.tar.gz") as tar:
        board = json.load(tar.extractfile(next(m for m in tar.getmembers() if m.name.endswith("/model.json"))))
        shipped = np.load(io.BytesIO(tar.extractfile(next(m for m in tar.getmembers()
                                                          if m.name.endswith("/test_images.npz"))).read()))
    assert board["reference_accuracy"]["data"].endswith("faces.npz test") and len(shipped["y"]) == len(y) // 10
    ok("bench", f"zoo:{name}", "--backends", "onnxruntime", "--batch-sizes", "1", "--iters", "5", "--warmup", "1",
       "--no-peak", "--data", "faces.npz", "--out", "bench", "--no-progress")
    report = json.loads((tmp_path / "bench" / "report.json").read_text())
    assert [r["run"] for r in report["rows"] if r["status"] == "ok"] == [name]
    ok("train", "--model", "baseline_cnn", "--synthetic-per-class", "20", "--epochs", "1", "--teacher", f"zoo:{name}",
       "--out", "student", "--no-progress")
    ok("ensemble", "student", f"zoo:{name}", "--out", "duo")  # evaluated on the first member's data
    explained = ok("explain", f"zoo:{name}", str(PHOTO), "--out", "cam", "--no-progress")
    assert (tmp_path / "cam").is_dir(), explained
    after = {p.name: p.stat().st_mtime_ns for p in zoo.resolve(name).iterdir()}
    assert after == before  # the package is never written


def test_corrupted_zoo_file_is_one_line_and_exit_2(corrupt_zoo, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, "predict", str(PHOTO), "--no-progress")
    assert code == 2
    line = one_line_error(err)
    assert "corrupted" in line and corrupt_zoo.name in line
    assert not (tmp_path / "artifacts").exists()


def test_a_path_into_the_zoo_is_verified_like_its_name(corrupt_zoo):
    for path in (corrupt_zoo, corrupt_zoo.parent):
        with pytest.raises(ModelError, match="corrupted"):
            zoo.resolve(path)


def test_another_file_under_the_zoo_models_data_name_is_refused(tmp_path, capsys, monkeypatch):
    """A zoo manifest names its data file without folders: a different file of that name here is not it."""
    monkeypatch.chdir(tmp_path)
    name = NAMES[0]
    (tmp_path / zoo.card(name)["data"]["file"]).write_bytes(b"some other data")
    code, _, err = run_cli(capsys, "evaluate", f"zoo:{name}")
    assert code == 2
    line = one_line_error(err)
    assert f"not the {zoo.card(name)['data']['file']} that zoo:{name} was trained on" in line


@pytest.mark.parametrize("name", [n for n in NAMES if zoo.card(n)["precision"] == "int8"])
def test_an_int8_entry_was_quantized_from_the_float_entry_it_names(name):
    """Re-packaging zoo:X without its INT8 would leave zoo:X-int8 describing another model."""
    manifest = Run.load(f"zoo:{name}").manifest
    parent = zoo.card(manifest["parent"].removeprefix(zoo.PREFIX))
    fp32_onnx = manifest["quantize"]["accuracy"]["fp32_onnx"]["test"]
    assert fp32_onnx == pytest.approx(parent["test"]["accuracy"], abs=2.5 / 3589)  # ONNX Runtime vs torch: 2 images


def test_zoo_model_without_its_data_says_pass_data(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, "evaluate", f"zoo:{NAMES[0]}")
    assert code == 2
    line = one_line_error(err)
    assert "is not on this machine; pass --data" in line and zoo.card(NAMES[0])["data"]["file"] in line


def test_cards_say_which_labels_their_accuracy_is_against():
    from fercomp.data.ferplus import FERPLUS8_CLASS_NAMES

    ferplus = {"data": {"labels": "ferplus8-soft"}, "class_names": list(FERPLUS8_CLASS_NAMES)}
    assert zoo.labels_of(ferplus) == "FER+ (8)"
    for name in NAMES:
        card = zoo.card(name)
        expected = "FER+" if card["data"]["labels"].startswith("ferplus") else "FER2013"
        assert zoo.labels_of(card) == f"{expected} ({len(card['class_names'])})"


def test_the_shipped_zoo_stays_within_its_25_mb_budget():
    shipped = sum(p.stat().st_size for p in zoo.ZOO_DIR.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    assert shipped <= 25_000_000, f"fercomp/zoo holds {shipped / 1e6:.1f} MB"


@pytest.mark.slow  # exports a 1.6M-parameter model
@pytest.mark.parametrize("name", [n for n in NAMES if ONNX_FILE not in zoo.card(n)["files"] and MODEL_FILE in zoo.card(n)["files"]])
def test_checkpoint_only_entry_exports_its_onnx_and_predicts_its_own_classes(name, fer2013_npz, tmp_path, capsys,
                                                                            monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "export", f"zoo:{name}", "--data", str(fer2013_npz), "--parity-images", "300")
    assert code == 0, err
    copy = Run.load(tmp_path / "artifacts" / name)
    parity = copy.manifest["export"]["parity"]
    assert parity["images"] == 300 and parity["top1_agreement"] >= 0.999
    code, _, err = run_cli(capsys, "predict", str(PHOTO), "--model", str(copy.path), "--backend", "onnxruntime",
                           "--out", "pred", "--no-progress")
    assert code == 0, err
    with open(tmp_path / "pred" / "predictions.csv") as f:
        header = next(csv.reader(f))
    assert [c for c in zoo.card(name)["class_names"] if c not in header] == []


def test_a_run_made_from_a_zoo_model_refuses_a_changed_zoo_parent(tmp_path):
    """An update may ship another model under the same zoo name: a derived run, or a copy of an INT8
    entry, must not silently take the new model as the one it was made from."""
    int8 = next((n for n in NAMES if zoo.card(n)["precision"] == "int8"), None)
    if int8 is None:
        pytest.skip("no INT8 zoo entry")
    copy = writable_copy(Run.load(f"zoo:{int8}"), tmp_path / "copy")
    parent_ref = copy.manifest["parent"]
    assert parent_ref.startswith("zoo:") and copy.parent.ref == parent_ref  # unchanged: resolves
    derived = Run.create(tmp_path / "derived", "quantize", parent=Run.load(parent_ref))
    assert derived.parent.ref == parent_ref
    for run in (copy, derived):  # as if the parent's files had been another model's when the run was made
        run.manifest["parent_files"] = {"model.pt": "0" * 64}
        with pytest.raises(RunError, match=f"earlier {parent_ref}"):
            run.parent
