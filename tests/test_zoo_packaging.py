"""benchmarks/zoo.py, which packages runs into the zoo: bad flags change nothing, teachers are described
as they were when they taught, and an entry is measured before it replaces the shipped one."""

from __future__ import annotations

import hashlib
import importlib
import json
import shutil
import sys
from pathlib import Path

import pytest

from fercomp import zoo
from fercomp.runs import MANIFEST, MODEL_FILE, ONNX_FILE, Run, writable_copy

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
packaging = importlib.import_module("zoo")  # benchmarks/zoo.py

pytestmark = pytest.mark.skipif(not zoo.names(), reason="this checkout ships no zoo model yet")


@pytest.fixture
def zoo_copy(tmp_path, monkeypatch):
    """A writable copy of the installed zoo, which the packaging writes instead."""
    copy = tmp_path / "zoo"
    shutil.copytree(zoo.MODELS_DIR, copy / "models")
    shutil.copy2(zoo.INDEX_FILE, copy / "index.json")
    monkeypatch.setattr(zoo, "MODELS_DIR", copy / "models")
    monkeypatch.setattr(zoo, "INDEX_FILE", copy / "index.json")
    monkeypatch.setattr(packaging, "RESULTS", tmp_path / "results")
    zoo.forget()
    yield copy
    zoo.forget()


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_bad_flags_are_one_line_exit_2_and_change_nothing(zoo_copy, tmp_path, monkeypatch, capsys):
    not_a_run = tmp_path / "not-a-run"
    not_a_run.mkdir()
    before = snapshot(zoo_copy)
    for argv, words in [(["--add", "tiny"], "expected NAME=RUN_FOLDER"),
                        (["--add", f"huge={not_a_run}"], "tier 'huge' is not one of"),
                        (["--add", f"tiny={not_a_run}"], "is not a run folder"),
                        (["--default", "nope"], "--default nope: not in the zoo")]:
        monkeypatch.setattr(sys, "argv", ["zoo.py", *argv])
        with pytest.raises(SystemExit) as exc:
            packaging.main()
        assert exc.value.code == 2, argv
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], (argv, lines)
    assert snapshot(zoo_copy) == before and not (tmp_path / "results").exists()


def test_replacing_a_float_entry_without_its_int8_is_refused(zoo_copy, tmp_path):
    int8 = next((n for n in zoo.names() if zoo.card(n)["precision"] == "int8"), None)
    if int8 is None:
        pytest.skip("no INT8 zoo entry")
    parent = int8.removesuffix("-int8")
    run = writable_copy(Run.load(f"zoo:{parent}"), tmp_path / "run")
    with pytest.raises(packaging.UsageError, match="pass --int8"):
        packaging.add_entry(parent, run.path, zoo.card(parent)["tier"], "", int8=False, data=tmp_path / "d.npz",
                            threads=1, onnx_too=False)


def finished(path: Path, **fields) -> Run:
    run = Run.create(path, "train")
    run.update(status="complete", **fields)
    return run


def test_teachers_are_described_as_they_taught_even_when_their_folder_is_gone(tmp_path):
    teacher = finished(tmp_path / "teacher", command=f"fercomp train --out {tmp_path}/teacher",
                       metrics={"test_acc": 0.7})
    refs = ["zoo:tiny", str(teacher.path), "/gone/old-teacher"]
    student = finished(tmp_path / "student", distillation={
        "teachers": refs, "weights_sha256": ["a" * 64, "b" * 64, "c" * 64],
        # a run from before folder teachers were recorded: zoo teachers only, and the folder read now
        "zoo_cards": {"zoo:tiny": {"test_acc": 0.6, "recipe": ["fercomp train --out /elsewhere/tiny-run"]}}})
    assert packaging.teacher_recipes(Run.load(student.path)) == [
        {"ref": "zoo:tiny", "weights_sha256": "a" * 64, "test_acc": 0.6, "recipe": ["fercomp train --out tiny-run"]},
        {"ref": "teacher", "weights_sha256": "b" * 64, "test_acc": 0.7, "recipe": ["fercomp train --out teacher"]},
        {"ref": "old-teacher", "weights_sha256": "c" * 64},
    ]
    card = dict(zoo.card("tiny"), teachers=packaging.teacher_recipes(Run.load(student.path)))
    text = packaging.render({"models": {"tiny": card}, "default": None})
    assert "teacher teacher (70.00% PrivateTest then), weights sha256 bbbbbbbbbbbb: `fercomp train --out teacher`" in text
    assert "teacher old-teacher, weights sha256 cccccccccccc: recipe not recorded" in text


def test_an_int8_entry_is_pinned_to_the_float_entry_it_was_quantized_from(zoo_copy):
    int8 = next((n for n in zoo.names() if zoo.card(n)["precision"] == "int8"), None)
    if int8 is None:
        pytest.skip("no INT8 zoo entry")
    source = Run.load(f"zoo:{int8}")
    parent = source.manifest["parent"]
    staged = packaging.stage(source, int8, parent, {ONNX_FILE: source.path / ONNX_FILE})
    manifest = json.loads((staged / MANIFEST).read_text())
    assert manifest["parent_files"] == Run.load(parent).manifest["files"]
    assert manifest["files"] == {ONNX_FILE: zoo.card(int8)["files"][ONNX_FILE]}


def test_an_entry_is_measured_before_it_replaces_the_shipped_one(zoo_copy, tmp_path, monkeypatch):
    run = writable_copy(Run.load("zoo:tiny"), tmp_path / "run")
    data = tmp_path / "fer2013.npz"
    data.write_bytes(b"stand-in data file: only its name and digest go on the card")
    shipped = snapshot(zoo_copy)

    def broken(folder, data, threads):
        raise RuntimeError("evaluation failed")

    monkeypatch.setattr(packaging, "measure", broken)
    with pytest.raises(RuntimeError):
        packaging.add_entry("tiny", run.path, "tiny", "again", int8=False, data=data, threads=1, onnx_too=False)
    assert snapshot(zoo_copy) == shipped  # the old entry, its files and the index as they were

    scores = {"accuracy": 0.5, "macro_f1": 0.4, "images": 10, "backend": "torch"}
    monkeypatch.setattr(packaging, "measure", lambda folder, data, threads: {
        "scores": {"val": scores, "test": scores}, "latency": {}, "host": {"cpu": "test"}, "threads": threads})
    packaging.add_entry("tiny", run.path, "tiny", "again", int8=False, data=data, threads=1, onnx_too=False)
    card = json.loads(zoo.INDEX_FILE.read_text())["models"]["tiny"]
    folder = zoo.MODELS_DIR / "tiny"
    assert card["folder"] == "tiny" and card["summary"] == "again" and card["test"] == scores
    assert sorted(p.name for p in folder.iterdir()) == sorted([MANIFEST, MODEL_FILE])
    assert zoo.verify("tiny") is None  # every file matches the new card
    assert not [p for p in zoo.MODELS_DIR.iterdir() if p.name.startswith(".")]  # no staging or old folder left


def test_an_onnx_older_than_its_weights_is_exported_again(tmp_path):
    import os

    run = writable_copy(Run.load("zoo:tiny"), tmp_path / "run")
    exported = (run.path / ONNX_FILE).stat().st_mtime
    os.utime(run.model_path, (exported - 60, exported - 60))
    assert packaging.onnx_is_current(run)
    os.utime(run.model_path, (exported + 60, exported + 60))  # the weights were written again after the export
    assert not packaging.onnx_is_current(run)
    (run.path / ONNX_FILE).unlink()
    assert not packaging.onnx_is_current(run)


def test_commands_lose_this_machines_folders_but_keep_every_teacher():
    command = ("fercomp train --data /work/shared/data/fer2013.npz --teacher zoo:standard,/root/.cache/fercomp/a-1,"
               "~/.cache/fercomp/b-2 --out ../runs/std")
    assert packaging.without_folders(command) == ("fercomp train --data fer2013.npz --teacher zoo:standard,a-1,b-2 "
                                                  "--out std")
