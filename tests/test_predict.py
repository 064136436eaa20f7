"""`fercomp predict`: faces found in larger images, one CSV row per face (or per problem), videos."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from fercomp.data.synthetic import draw_face
from fercomp.deploy import runtime
from fercomp.deploy.detectors import create_detector
from fercomp.deploy.faces import Box, expand_box, find_face_crops, to_bgr, to_gray
from fercomp.deploy.predict import NO_FACE, PredictConfig, predict_sources

from test_cli import one_line_error, run_cli

# (emotion, seed) of synthetic faces the default Haar cascade finds when drawn 3x larger.
HAPPY, NEUTRAL = (3, 0), (6, 0)
FACE_PX = 144  # 48 px faces upscaled 3x: the cascade's 24 px window needs more than 48 px
BACKGROUND = 128


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A tiny trained run: predict only needs a working model, not an accurate one."""
    from fercomp.train import TrainConfig, fit

    out = tmp_path_factory.mktemp("predict") / "base"
    fit(TrainConfig(model="separable_cnn", synthetic_per_class=20, epochs=1, out=str(out)), progress=False)
    return out


def big_face(which: tuple[int, int]) -> np.ndarray:
    emotion, seed = which
    face, _ = draw_face(emotion, 48, np.random.default_rng(seed))
    return cv2.resize(face, (FACE_PX, FACE_PX), interpolation=cv2.INTER_CUBIC)


def scene(faces: dict[tuple[int, int], tuple[int, int]], size=(240, 420)) -> np.ndarray:
    """A uniform canvas with each face pasted at its (x, y)."""
    canvas = np.full(size, BACKGROUND, np.uint8)
    for which, (x, y) in faces.items():
        canvas[y : y + FACE_PX, x : x + FACE_PX] = big_face(which)
    return canvas


TWO_FACES = {HAPPY: (40, 48), NEUTRAL: (236, 48)}


def iou(a: Box, b: Box) -> float:
    ix = max(0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
    iy = max(0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
    inter = ix * iy
    return inter / (a.w * a.h + b.w * b.h - inter)


def read_rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def row_box(row) -> Box:
    return Box(*(int(row[k]) for k in "xywh"))


def row_probs(row, class_names) -> np.ndarray:
    return np.array([float(row[name]) for name in class_names])


def predict(run_dir, sources, out, **kwargs) -> tuple[dict, list[dict[str, str]]]:
    # The synthetic cartoon faces were sized for the Haar cascade; BlazeFace has tests/test_detectors.py.
    kwargs.setdefault("detector", "haar")
    summary = predict_sources(PredictConfig(sources=[str(s) for s in sources], model=str(run_dir), out=str(out),
                                            **kwargs), progress=False)
    return summary, read_rows(summary["csv"])


# ---------------------------------------------------------------------------------------------
# faces.py


def test_to_gray_handles_any_layout_and_depth():
    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[..., 2] = 255  # pure red in BGR
    assert to_gray(bgr).shape == (4, 5) and to_gray(bgr)[0, 0] == 76  # BT.601 luma of red
    bgra = np.dstack([bgr, np.zeros((4, 5), np.uint8)])
    np.testing.assert_array_equal(to_gray(bgra), to_gray(bgr))  # alpha carries no intensity
    assert to_gray(np.full((4, 5), 0x8000, np.uint16))[0, 0] == 128
    assert to_gray(np.full((4, 5, 1), 0.5, np.float32))[0, 0] == 128
    assert to_bgr(np.full((4, 5), 7, np.uint8)).shape == (4, 5, 3)


def test_expand_box_is_clamped_to_the_image():
    assert expand_box(Box(10, 10, 20, 20), 0.25, (100, 100)) == Box(5, 5, 30, 30)
    assert expand_box(Box(0, 90, 20, 10), 0.5, (100, 100)) == Box(0, 85, 30, 15)


def test_detection_finds_both_composited_faces():
    boxes, crops = find_face_crops(scene(TWO_FACES), (48, 48), create_detector("haar"))
    truth = [Box(x, y, FACE_PX, FACE_PX) for x, y in TWO_FACES.values()]
    assert len(boxes) == 2
    assert all(iou(found, true) > 0.6 for found, true in zip(boxes, truth))
    assert all(c.shape == (48, 48) and c.dtype == np.uint8 for c in crops)


def test_a_crop_at_input_size_skips_detection():
    blank = np.full((48, 48), BACKGROUND, np.uint8)  # no face a detector could find
    boxes, crops = find_face_crops(blank, (48, 48), create_detector("haar"))
    assert boxes == [Box(0, 0, 48, 48)]
    np.testing.assert_array_equal(crops[0], blank)


# ---------------------------------------------------------------------------------------------
# predict_sources


def test_predict_composited_faces_and_blank_image(run_dir, tmp_path):
    cv2.imwrite(str(tmp_path / "two.png"), scene(TWO_FACES))
    cv2.imwrite(str(tmp_path / "blank.jpg"), np.full((200, 300, 3), 90, np.uint8))
    summary, rows = predict(run_dir, [tmp_path / "two.png", tmp_path / "blank.jpg"], tmp_path / "out")

    faces = [r for r in rows if r["source"].endswith("two.png")]
    truth = [Box(x, y, FACE_PX, FACE_PX) for x, y in TWO_FACES.values()]
    assert [r["face"] for r in faces] == ["0", "1"]
    assert all(iou(row_box(r), t) > 0.6 for r, t in zip(faces, truth))
    class_names = list(summary["per_class"])
    for r in faces:
        p = row_probs(r, class_names)
        assert p.sum() == pytest.approx(1, abs=1e-4)
        assert r["predicted"] == class_names[int(p.argmax())] and float(r["confidence"]) == p.max()
        assert r["error"] == "" and r["frame"] == ""

    (blank,) = [r for r in rows if r["source"].endswith("blank.jpg")]
    assert blank["error"] == NO_FACE and blank["predicted"] == "" and blank["x"] == ""
    assert (summary["faces"], summary["no_face"], summary["errors"], summary["files"]) == (2, 1, 0, 2)
    assert sum(summary["per_class"].values()) == 2

    annotated = cv2.imread(str(tmp_path / "out" / "annotated" / "two.png"))
    assert annotated.shape[:2] == (240, 420)
    assert not np.array_equal(to_gray(annotated), scene(TWO_FACES))  # boxes and labels were drawn
    assert (tmp_path / "out" / "annotated" / "blank.jpg").exists()


def test_crop_probabilities_equal_the_model_and_no_detect_takes_whole_images(run_dir, tmp_path):
    crop = draw_face(3, 48, np.random.default_rng(5))[0]
    cv2.imwrite(str(tmp_path / "crop.png"), crop)
    cv2.imwrite(str(tmp_path / "two.png"), scene(TWO_FACES))
    summary, rows = predict(run_dir, [tmp_path / "crop.png", tmp_path / "two.png"], tmp_path / "out",
                            detect=False, annotate=False)
    assert [row_box(r) for r in rows] == [Box(0, 0, 48, 48), Box(0, 0, 420, 240)]
    expected = runtime.load(run_dir).predict_proba(crop[None])[0]
    np.testing.assert_allclose(row_probs(rows[0], list(summary["per_class"])), expected, atol=2e-6)
    assert not (tmp_path / "out" / "annotated").exists()


def test_folder_with_corrupt_and_non_image_files(run_dir, tmp_path):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    cv2.imwrite(str(folder / "sub" / "two.png"), scene(TWO_FACES))
    cv2.imwrite(str(folder / "crop.png"), draw_face(2, 48, np.random.default_rng(1))[0])
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 these are not jpeg bytes")
    (folder / "notes.txt").write_text("a shopping list")
    (folder / ".hidden.png").write_bytes(b"skipped")

    summary, rows = predict(run_dir, [folder], tmp_path / "out")
    by_file = {}
    for r in rows:
        by_file.setdefault(Path(r["source"]).relative_to(folder).as_posix(), []).append(r)
    assert list(by_file) == ["broken.jpg", "crop.png", "notes.txt", "sub/two.png"]  # sorted, hidden skipped
    for name in ("broken.jpg", "notes.txt"):
        (row,) = by_file[name]
        assert "cannot decode" in row["error"] and row["predicted"] == ""
    assert len(by_file["sub/two.png"]) == 2 and all(r["predicted"] for r in by_file["sub/two.png"])
    assert by_file["crop.png"][0]["predicted"] and by_file["crop.png"][0]["error"] == ""
    assert (summary["files"], summary["faces"], summary["errors"]) == (4, 3, 2)
    annotated = tmp_path / "out" / "annotated" / "photos"
    assert (annotated / "sub" / "two.png").exists() and (annotated / "crop.png").exists()
    assert not (annotated / "broken.jpg").exists()


def test_same_file_names_get_unique_annotations(run_dir, tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / "face.png"), draw_face(3, 48, np.random.default_rng(0))[0])
    predict(run_dir, [tmp_path / "a" / "face.png", tmp_path / "b" / "face.png"], tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out" / "annotated").iterdir()) == ["face-2.png", "face.png"]


def write_video(path: Path, frames: int) -> None:
    """An MJPG clip of one face drifting to the right."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    assert writer.isOpened()
    for i in range(frames):
        writer.write(cv2.cvtColor(scene({HAPPY: (40 + 6 * i, 48)}, size=(240, 320)), cv2.COLOR_GRAY2BGR))
    writer.release()


def test_video_every_second_frame(run_dir, tmp_path):
    write_video(tmp_path / "clip.avi", frames=10)
    summary, rows = predict(run_dir, [tmp_path / "clip.avi"], tmp_path / "out", every=2)
    assert [int(r["frame"]) for r in rows] == [0, 2, 4, 6, 8]
    assert all(r["predicted"] and r["face"] == "0" for r in rows)
    # the box follows the face as it moves
    assert all(iou(row_box(r), Box(40 + 6 * int(r["frame"]), 48, FACE_PX, FACE_PX)) > 0.6 for r in rows)
    assert (summary["files"], summary["frames"], summary["faces"]) == (1, 5, 5)

    annotated = cv2.VideoCapture(str(tmp_path / "out" / "annotated" / "clip.mp4"))
    written = 0
    while annotated.read()[0]:
        written += 1
    assert written == 5

    _, rows = predict(run_dir, [tmp_path / "clip.avi"], tmp_path / "out2", every=3, max_frames=2, annotate=False)
    assert [int(r["frame"]) for r in rows] == [0, 3]


def test_webcam_stops_at_max_frames(run_dir, tmp_path, monkeypatch):
    from fercomp.deploy import predict as predict_module

    monkeypatch.chdir(tmp_path)  # so no file named "0" can shadow the webcam index
    write_video(tmp_path / "clip.avi", frames=10)
    real_open = predict_module.open_capture
    opened = []

    def fake_camera(location):
        opened.append(location)
        return real_open(str(tmp_path / "clip.avi") if isinstance(location, int) else location)

    monkeypatch.setattr(predict_module, "open_capture", fake_camera)
    summary, rows = predict(run_dir, ["0"], tmp_path / "out", max_frames=3)
    assert opened == [0]
    assert [(r["source"], int(r["frame"])) for r in rows] == [("0", 0), ("0", 1), ("0", 2)]
    assert (summary["files"], summary["frames"]) == (0, 3)
    assert (tmp_path / "out" / "annotated" / "webcam0.mp4").exists()


def test_onnx_model_matches_torch(run_dir, tmp_path):
    from fercomp.deploy.onnx_export import export_onnx
    from fercomp.runs import Run

    model, spec = Run.load(run_dir).load_model()
    onnx_path = export_onnx(model, spec, tmp_path / "model.onnx")
    cv2.imwrite(str(tmp_path / "two.png"), scene(TWO_FACES))

    torch_summary, torch_rows = predict(run_dir, [tmp_path / "two.png"], tmp_path / "torch")
    onnx_summary, onnx_rows = predict(onnx_path, [tmp_path / "two.png"], tmp_path / "onnx")
    assert (torch_summary["backend"], onnx_summary["backend"]) == ("torch", "onnxruntime")
    class_names = list(torch_summary["per_class"])
    assert len(onnx_rows) == len(torch_rows) == 2
    for t, o in zip(torch_rows, onnx_rows):
        assert row_box(t) == row_box(o) and t["predicted"] == o["predicted"]
        np.testing.assert_allclose(row_probs(o, class_names), row_probs(t, class_names), atol=1e-4)


# ---------------------------------------------------------------------------------------------
# CLI


def test_cli_missing_source_exits_2_and_writes_nothing(run_dir, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cv2.imwrite("face.png", draw_face(3, 48, np.random.default_rng(0))[0])
    code, _, err = run_cli(capsys, "predict", "face.png", "missing.png", "--model", str(run_dir), "--no-progress")
    assert code == 2
    assert "missing.png" in one_line_error(err)
    assert not (tmp_path / "artifacts").exists()

    code, _, err = run_cli(capsys, "predict", "face.png", "--model", str(run_dir), "--every", "0", "--out", "o")
    assert code == 2 and "--every" in one_line_error(err)
    assert not (tmp_path / "o").exists()

    code, _, err = run_cli(capsys, "predict", "987", "--model", str(run_dir), "--out", "o")  # no such webcam
    assert code == 2 and "webcam 987" in one_line_error(err)
    assert not (tmp_path / "o").exists()


def test_cli_prints_summary_and_defaults_to_a_timestamped_folder(run_dir, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cv2.imwrite("two.png", scene(TWO_FACES))
    code, _, err = run_cli(capsys, "predict", "two.png", "--model", str(run_dir), "--no-progress")
    assert code == 0, err
    (out,) = (tmp_path / "artifacts" / "predict").iterdir()
    assert len(read_rows(out / "predictions.csv")) == 2
    assert f"predictions: {out.relative_to(tmp_path) / 'predictions.csv'}" in err
    assert "faces" in err and "no face found" in err
