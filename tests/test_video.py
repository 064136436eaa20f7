"""Video through `predict`: the pipelined path writes what the sequential one does, faces keep their
track ids with `--detect-every`, `--smooth` averages a track's probabilities, bad inputs are rows."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fercomp.bench.scenes import moving_faces, write_video
from fercomp.deploy.faces import Box, expand_box
from fercomp.deploy.predict import PredictConfig, predict_sources
from fercomp.deploy.tracking import box_iou

MODEL = "zoo:tiny"  # a real trained model from the package: no training in these tests


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[Path, list[list[Box]]]:
    """Two faces crossing a 640x480 frame in opposite directions, 24 frames."""
    path = tmp_path_factory.mktemp("video") / "two_faces.avi"
    truth = write_video(path, moving_faces(faces=2, frames=24, seed=2), fps=24)
    return path, truth


def predict(sources, out: Path, **kwargs) -> tuple[dict, list[dict[str, str]]]:
    summary = predict_sources(PredictConfig(sources=[str(s) for s in sources], model=MODEL, out=str(out), **kwargs),
                              progress=False)
    with open(summary["csv"], newline="") as fh:
        return summary, list(csv.DictReader(fh))


def row_box(row) -> Box:
    return Box(*(int(row[k]) for k in "xywh"))


def probs(rows, summary) -> np.ndarray:
    return np.array([[float(r[name]) for name in summary["per_class"]] for r in rows])


def test_pipelined_csv_equals_sequential(clip, tmp_path):
    path, truth = clip
    piped_summary, piped = predict([path], tmp_path / "piped", pipeline=True, annotate=False)
    seq_summary, seq = predict([path], tmp_path / "seq", pipeline=False, annotate=False)
    key = ["source", "frame", "face", "track", "x", "y", "w", "h", "predicted", "error"]
    assert [[r[k] for k in key] for r in piped] == [[r[k] for k in key] for r in seq]
    # classification batches differ between the paths: probabilities agree to float rounding
    np.testing.assert_allclose(probs(piped, piped_summary), probs(seq, seq_summary), atol=2e-5)
    assert piped_summary["frames"] == seq_summary["frames"] == 24
    assert piped_summary["faces"] == 48 and piped_summary["stream_fps"] > 0


def test_detect_every_tracks_faces_with_stable_ids(clip, tmp_path):
    path, truth = clip
    summary, rows = predict([path], tmp_path / "out", detect_every=4)
    assert summary["faces"] == 48 and summary["no_face"] == 0
    by_frame: dict[int, dict[str, Box]] = {}
    for r in rows:
        by_frame.setdefault(int(r["frame"]), {})[r["track"]] = row_box(r)
    assert all(set(faces) == {"0", "1"} for faces in by_frame.values())  # one id per face, all along
    # each id stays on its own face; once the tracker knows a face's speed (after its second
    # detection) the crops it predicts between detections frame the true face
    first = {track: max(range(2), key=lambda i: box_iou(box, truth[0][i])) for track, box in by_frame[0].items()}
    for frame, faces in by_frame.items():
        for track, box in faces.items():
            nearest = max(range(2), key=lambda i: box_iou(box, truth[frame][i]))
            assert nearest == first[track], (frame, track)
            if frame >= 4:
                assert box_iou(expand_box(box, 0.1, (480, 640)), truth[frame][first[track]]) >= 0.5, (frame, track)
    annotated = Path(summary["annotated_dir"]) / "two_faces.mp4"
    import cv2

    capture = cv2.VideoCapture(str(annotated))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(24, abs=0.01)  # the input's frame rate
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 24
    capture.release()


def test_smooth_averages_each_track_over_its_last_frames(clip, tmp_path):
    path, _ = clip
    raw_summary, raw = predict([path], tmp_path / "raw", annotate=False)
    smooth_summary, smooth = predict([path], tmp_path / "smooth", annotate=False, smooth=3)
    for track in ("0", "1"):
        p = probs([r for r in raw if r["track"] == track], raw_summary)
        q = probs([r for r in smooth if r["track"] == track], smooth_summary)
        expected = np.array([p[max(0, i - 2) : i + 1].mean(0) for i in range(len(p))])
        np.testing.assert_allclose(q, expected, atol=2e-6)
        assert not np.allclose(p, q)  # the faces' expressions do change the probabilities somewhat


def test_bad_inputs_are_rows_and_the_rest_is_processed(clip, tmp_path):
    path, _ = clip
    folder = tmp_path / "in"
    folder.mkdir()
    Image.new("L", (1, 1), 128).save(folder / "one_pixel.png")
    Image.new("1", (20000, 20000)).save(folder / "huge.png")  # 400 MP, a few KB on disk
    jpeg = (Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video at all")
    Image.new("RGB", (320, 240), (90, 120, 200)).save(folder / "no_face.png")
    summary, rows = predict([folder, path], tmp_path / "out", max_frames=3, annotate=False)
    by_name = {}
    for r in rows:
        by_name.setdefault(Path(r["source"]).name, []).append(r)
    assert "too large" in by_name["huge.png"][0]["error"] and "20000x20000" in by_name["huge.png"][0]["error"]
    assert "cannot open video" in by_name["broken.mp4"][0]["error"]
    assert by_name["one_pixel.png"][0]["error"] == "no face found"
    assert by_name["no_face.png"][0]["error"] == "no face found"
    # a truncated JPEG: one row, an error or (where a decoder fills the missing part) a prediction
    (truncated,) = by_name["truncated.jpg"]
    assert "cannot decode" in truncated["error"] or truncated["predicted"]
    assert len(by_name["two_faces.avi"]) == 6 and all(r["predicted"] for r in by_name["two_faces.avi"])
    assert summary["errors"] == 2 + bool(truncated["error"])


def test_nothing_readable_exits_2_with_one_line(tmp_path, capsys):
    from test_cli import one_line_error, run_cli

    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not jpeg")
    code, _, err = run_cli(capsys, "predict", str(tmp_path / "broken.jpg"), "--model", MODEL,
                           "--out", str(tmp_path / "out"), "--no-progress")
    assert code == 2 and "broken.jpg" in one_line_error(err)
    assert not (tmp_path / "out").exists()
