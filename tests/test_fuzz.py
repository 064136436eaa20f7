"""Property-based fuzzing of every loader of user input: a damaged file is a FercompError, never a traceback.

Each test takes one valid file, applies random byte-level damage drawn by hypothesis (flipped
bytes, a truncation, inserted garbage), and reads it through the same entry point the CLI uses.
Reading may succeed (damage inside pixel values is still valid data) or raise fercomp's own
error; any other exception is a bug at the place that reads the file.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fercomp.data import load_data
from fercomp.data.synthetic import make_synthetic
from fercomp.errors import FercompError
from fercomp.runs import Run

EXAMPLES = 40
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@st.composite
def damage(draw, size: int):
    """A list of edits to a file of `size` bytes: flips, a truncation, an insertion."""
    flips = draw(st.lists(st.tuples(st.integers(0, size - 1), st.integers(1, 255)), min_size=0, max_size=8))
    cut = draw(st.one_of(st.none(), st.integers(0, size - 1)))
    insert = draw(st.one_of(st.none(), st.tuples(st.integers(0, size), st.binary(min_size=1, max_size=16))))
    if not flips and cut is None and insert is None:
        flips = [(draw(st.integers(0, size - 1)), 0xFF)]
    return flips, cut, insert


def damaged(data: bytes, edits) -> bytes:
    flips, cut, insert = edits
    out = bytearray(data)
    for pos, mask in flips:
        out[pos] ^= mask
    if insert is not None:
        pos, extra = insert
        out[pos:pos] = extra
    if cut is not None:
        out = out[:cut]
    return bytes(out)


def only_fercomp_errors(read) -> None:
    try:
        read()
    except FercompError:
        pass


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """One valid file of every kind a user hands fercomp."""
    root = tmp_path_factory.mktemp("valid")
    x, y = make_synthetic(n_per_class=3, seed=0)
    np.savez(root / "faces.npz", x=x, y=y)
    np.savez_compressed(root / "faces_z.npz", x=x, y=y)
    lines = ["emotion,pixels,Usage"] + [f"{c},{' '.join(map(str, img.ravel()))},Training" for img, c in zip(x[:6], y[:6])]
    (root / "fer.csv").write_text("\n".join(lines) + "\n")
    from fercomp.train import TrainConfig, fit

    run = fit(TrainConfig(model="baseline_cnn", synthetic_per_class=12, epochs=1, batch_size=16,
                          out=str(root / "run")), progress=False)
    from fercomp.deploy.export import ExportConfig, export_run

    export_run(ExportConfig(run=str(run.path)), progress=False)
    run.unlock()
    import cv2

    folder = root / "folder" / "happy"
    folder.mkdir(parents=True)
    for i in range(2):
        cv2.imwrite(str(folder / f"{i}.png"), x[i])
        cv2.imwrite(str(folder / f"{i}.jpg"), x[i])
    (root / "folder" / "sad").mkdir()
    cv2.imwrite(str(root / "folder" / "sad" / "0.png"), x[3])
    return root


def fuzz_file(tmp_path, source: Path, edits, name: str | None = None) -> Path:
    target = tmp_path / (name or source.name)
    target.write_bytes(damaged(source.read_bytes(), edits))
    return target


@pytest.mark.parametrize("kind", ["faces.npz", "faces_z.npz"])
@FUZZ
@given(data=st.data())
def test_npz(files, tmp_path, kind, data):
    source = files / kind
    path = fuzz_file(tmp_path, source, data.draw(damage(source.stat().st_size)))
    only_fercomp_errors(lambda: load_data(path))


@FUZZ
@given(data=st.data())
def test_csv(files, tmp_path, data):
    source = files / "fer.csv"
    path = fuzz_file(tmp_path, source, data.draw(damage(source.stat().st_size)))
    only_fercomp_errors(lambda: load_data(path))


def folder_with_one_damaged_file(source: Path, target: Path, member: str, data, keep=None) -> Path:
    """A fresh copy of the folder `source` (only the files in `keep`, if given) with `member` damaged."""
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, ignore=None if keep is None else
                    lambda folder, names: [n for n in names if n not in keep])
    original = source / member
    fuzz_file((target / member).parent, original, data.draw(damage(original.stat().st_size)))
    return target


@pytest.mark.parametrize("image", ["0.png", "0.jpg"])
@FUZZ
@given(data=st.data())
def test_image_folder(files, tmp_path, image, data):
    folder = folder_with_one_damaged_file(files / "folder", tmp_path / "folder", f"happy/{image}", data)
    only_fercomp_errors(lambda: load_data(folder))


@pytest.mark.parametrize("member", ["manifest.json", "model.pt"])
@FUZZ
@given(data=st.data())
def test_run_folder(files, tmp_path, member, data):
    folder = folder_with_one_damaged_file(files / "run", tmp_path / "run", member, data,
                                          keep={"manifest.json", "model.pt"})
    only_fercomp_errors(lambda: Run.load(folder).load_model())


@FUZZ
@given(data=st.data())
def test_onnx_given_to_predict(files, tmp_path, data):
    from fercomp.deploy import runtime

    source = files / "run" / "model.onnx"
    path = fuzz_file(tmp_path, source, data.draw(damage(source.stat().st_size)))
    x, _ = make_synthetic(n_per_class=1, seed=2)

    def read_and_run():
        runtime.load(path).predict_proba(x)

    only_fercomp_errors(read_and_run)
