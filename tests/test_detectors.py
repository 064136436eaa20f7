"""Face detectors: BlazeFace's anchors, decoding and NMS against hand-computed values, the shipped
networks on a real photograph and on faces composited at known boxes, the tracker."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from fercomp.bench.scenes import ASTRONAUT, ASTRONAUT_FACE, astronaut_face, background, paste
from fercomp.deploy.board import face_detect as ssd
from fercomp.deploy.detectors import DETECTORS, create_detector
from fercomp.deploy.faces import Box, expand_box
from fercomp.deploy.tracking import Smoother, Tracker, box_iou
from fercomp.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
FER2013 = ROOT.parent / "shared" / "data" / "fer2013.npz"


# ---------------------------------------------------------------------------------------------
# SSD post-processing (numpy), checked by hand


def test_short_range_anchors_follow_mediapipes_layout():
    anchors = ssd.ssd_anchors(ssd.SHORT_RANGE)
    assert anchors.shape == (896, 2)  # 16x16 cells x 2 anchors + 8x8 cells x 6 anchors
    # stride 8: two anchors per cell, cells row by row
    np.testing.assert_allclose(anchors[:4], [[0.5 / 16, 0.5 / 16]] * 2 + [[1.5 / 16, 0.5 / 16]] * 2)
    np.testing.assert_allclose(anchors[32], [0.5 / 16, 1.5 / 16])  # row 1 starts after 16 cells x 2
    # the three stride-16 layers share one 8x8 map: six anchors per cell
    np.testing.assert_allclose(anchors[512:518], [[0.5 / 8, 0.5 / 8]] * 6)
    np.testing.assert_allclose(anchors[-1], [7.5 / 8, 7.5 / 8])


def test_full_range_anchors_one_per_cell():
    anchors = ssd.ssd_anchors(ssd.FULL_RANGE)
    assert anchors.shape == (2304, 2)
    np.testing.assert_allclose(anchors[[0, 1, 48]], [[0.5 / 48, 0.5 / 48], [1.5 / 48, 0.5 / 48], [0.5 / 48, 1.5 / 48]])


def test_decode_hand_computed_box_and_keypoint():
    anchors = ssd.ssd_anchors(ssd.SHORT_RANGE)
    regressors = np.zeros((896, 16), np.float32)
    logits = np.full(896, -10.0, np.float32)
    regressors[512, :6] = [12.8, -6.4, 32.0, 25.6, 6.4, 12.8]  # input pixels of the 128x128 input
    logits[512] = 2.0
    boxes, keypoints, scores = ssd.decode(regressors, logits, anchors, ssd.SHORT_RANGE)
    # anchor 512 is centred at (1/16, 1/16); centre moves by (0.1, -0.05); size 0.25 x 0.2
    np.testing.assert_allclose(boxes, [[0.0375, -0.0875, 0.2875, 0.1125]], atol=1e-6)
    np.testing.assert_allclose(keypoints[0, 0], [0.1125, 0.1625], atol=1e-6)
    np.testing.assert_allclose(scores, [1 / (1 + np.exp(-2.0))], rtol=1e-6)


def test_weighted_nms_merges_overlaps_by_score_and_keeps_separate_faces():
    boxes = np.array([[0.0, 0.0, 1.0, 1.0], [0.1, 0.0, 1.1, 1.0], [3.0, 3.0, 4.0, 4.0]], np.float32)
    keypoints = np.zeros((3, 6, 2), np.float32)
    keypoints[1] += 1.0
    scores = np.array([0.6, 0.9, 0.7], np.float32)
    faces = ssd.weighted_nms(boxes, keypoints, scores, threshold=0.3)
    assert [round(score, 6) for *_, score in faces] == [0.9, 0.7]
    # the first two overlap (IoU 0.9/1.1): merged with weights 0.9/1.5 and 0.6/1.5
    np.testing.assert_allclose(faces[0][0], [0.06, 0.0, 1.06, 1.0], atol=1e-6)
    np.testing.assert_allclose(faces[0][1], np.full((6, 2), 0.6), atol=1e-6)
    np.testing.assert_allclose(faces[1][0], boxes[2])


def test_letterbox_maps_input_fractions_back_to_pixels():
    geometry = ssd.letterbox_geometry(480, 640, 128)
    assert (geometry.width, geometry.height, geometry.pad_x, geometry.pad_y) == (128, 96, 0, 16)
    np.testing.assert_allclose(geometry.to_image([[0.5, 0.5], [0.0, 0.125]]), [[320, 240], [0, 0]], atol=1e-4)
    tensor = ssd.to_input(np.full((96, 128, 3), 255, np.uint8), geometry)
    assert tensor.shape == (1, 3, 128, 128)
    assert tensor[0, :, :16].max() == -1.0 and tensor[0, :, 16:112].min() == 1.0  # black padding, white image


# ---------------------------------------------------------------------------------------------
# The shipped networks


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    image = cv2.imread(str(ASTRONAUT))
    assert image is not None
    return image


@pytest.mark.parametrize("name", DETECTORS)
def test_every_detector_finds_the_astronaut(photo, name):
    detector = create_detector(name)
    faces = detector.detect(photo)
    assert len(faces) == 1
    assert box_iou(faces[0].box, ASTRONAUT_FACE) >= 0.6
    if name.startswith("blazeface"):
        right_eye, left_eye, nose = faces[0].keypoints[:3]
        assert right_eye[0] < nose[0] < left_eye[0]  # the subject's right eye is on the image's left
        assert abs(right_eye[1] - left_eye[1]) < 15 and nose[1] > right_eye[1]
        box = faces[0].box
        assert all(box.x <= x <= box.x + box.w and box.y <= y <= box.y + box.h for x, y in faces[0].keypoints[:4])


def test_gray_and_bgra_images_are_detected_too(photo):
    detector = create_detector("blazeface")
    gray = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
    bgra = cv2.cvtColor(photo, cv2.COLOR_BGR2BGRA)
    for image in (gray, bgra):
        (face,) = detector.detect(image)
        assert box_iou(face.box, ASTRONAUT_FACE) >= 0.6


def composite(face: np.ndarray, boxes: list[Box], shape=(480, 640), seed=0) -> np.ndarray:
    """`face` pasted (resized) at each box on a smooth procedural background."""
    canvas = background(shape, np.random.default_rng(seed))
    for box in boxes:
        paste(canvas, face, box)
    return canvas


def test_blazeface_finds_composited_faces_at_known_boxes(photo):
    face = astronaut_face()  # the photograph's face framed as in FER2013 (labelled box + 10%)
    truth = [Box(30, 60, 150, 163), Box(300, 40, 110, 120), Box(420, 250, 180, 196)]
    detector = create_detector("blazeface")
    faces = detector.detect(composite(face, truth))
    assert len(faces) == 3
    for found, true in zip(sorted(faces, key=lambda f: f.box.x), truth):
        # the crop fercomp classifies (box + the detector's margin) frames the face as pasted
        assert box_iou(expand_box(found.box, detector.margin, (480, 640)), true) >= 0.5


def test_no_face_in_noise_and_tiny_images():
    detector = create_detector("blazeface")
    assert detector.detect(composite(np.zeros((1, 1, 3), np.uint8), [])) == []
    assert detector.detect(np.zeros((1, 1, 3), np.uint8)) == []


@pytest.mark.skipif(not FER2013.exists(), reason="needs ../shared/data/fer2013.npz")
def test_blazeface_recall_on_fer2013_faces_at_least_haars():
    x = np.load(FER2013)["test_x"]
    rng = np.random.default_rng(7)
    hits = {"blazeface": [], "haar": []}
    for _ in range(60):
        side = int(rng.integers(130, 240))
        true = Box(int(rng.integers(0, 640 - side)), int(rng.integers(0, 480 - side)), side, side)
        image = composite(cv2.cvtColor(x[rng.integers(len(x))], cv2.COLOR_GRAY2BGR), [true], seed=int(rng.integers(1 << 30)))
        for name in hits:
            detector = create_detector(name)
            found = [box_iou(expand_box(f.box, detector.margin, image.shape), true) for f in detector.detect(image)]
            hits[name].append(max(found, default=0.0) >= 0.5)
    assert np.mean(hits["blazeface"]) >= np.mean(hits["haar"]) - 0.05
    assert np.mean(hits["blazeface"]) >= 0.7


def test_unknown_detector_is_a_config_error():
    with pytest.raises(ConfigError, match="--detector"):
        create_detector("yolo")


# ---------------------------------------------------------------------------------------------
# Tracking


def test_tracker_keeps_one_id_per_face_and_predicts_between_detections():
    tracker = Tracker((480, 640))

    def truth(frame):  # two faces moving towards each other and passing
        return [Box(40 + 10 * frame, 100, 80, 80), Box(520 - 10 * frame, 140, 80, 80)]

    ids_seen = []
    for frame in range(0, 40):
        if frame % 4 == 0:
            tracked = tracker.update(frame, sorted(truth(frame), key=lambda b: b.x))  # detector order: left to right
        else:
            tracked = tracker.predict(frame)
        by_id = dict(tracked)
        ids_seen.append(set(by_id))
        if frame >= 4:  # once a velocity is known, predictions follow the linear motion exactly
            assert by_id[0] == truth(frame)[0] and by_id[1] == truth(frame)[1]
    assert all(ids == {0, 1} for ids in ids_seen)


def test_tracker_drops_a_face_gone_for_several_rounds_and_gives_new_faces_new_ids():
    tracker = Tracker()
    assert [i for i, _ in tracker.update(0, [Box(0, 0, 50, 50)])] == [0]
    for frame in (1, 2, 3):
        assert tracker.update(frame, []) == []
    assert [i for i, _ in tracker.update(4, [Box(0, 0, 50, 50)])] == [1]
    assert [i for i, _ in tracker.update(5, [Box(2, 0, 50, 50), Box(300, 300, 50, 50)])] == [1, 2]


def test_smoother_averages_each_track_over_its_window():
    smooth = Smoother(2)
    a, b, c = np.array([1.0, 0.0]), np.array([0.0, 1.0]), np.array([0.5, 0.5])
    np.testing.assert_allclose(smooth(("v", 0), a), a)
    np.testing.assert_allclose(smooth(("v", 1), b), b)  # another track starts its own history
    np.testing.assert_allclose(smooth(("v", 0), b), [0.5, 0.5])
    np.testing.assert_allclose(smooth(("v", 0), c), [0.25, 0.75])  # a left the window
    np.testing.assert_allclose(Smoother(1)(("v", 0), a), a)


def test_levelling_turns_a_tilted_face_back_upright(photo):
    """The photograph turned by 20 degrees about the face: its levelled crop is much closer to the
    levelled crop of the untouched photograph than the crop as detected is."""
    from fercomp.deploy.faces import crop_face, level_crop, to_gray

    def eye_angle(face):
        (rx, ry), (lx, ly) = face.keypoints[:2]
        return np.degrees(np.arctan2(ly - ry, lx - rx))

    detector = create_detector("blazeface")
    (upright,) = detector.detect(photo)
    centre = (upright.box.x + upright.box.w / 2, upright.box.y + upright.box.h / 2)
    tilted = cv2.warpAffine(photo, cv2.getRotationMatrix2D(centre, 20, 1.0), photo.shape[1::-1],
                            borderMode=cv2.BORDER_REPLICATE)
    (face,) = detector.detect(tilted)
    assert eye_angle(face) == pytest.approx(eye_angle(upright) - 20, abs=6)  # the keypoints see the turn
    reference = level_crop(to_gray(photo), upright.box, 0.1, (48, 48), upright.keypoints).astype(float)
    as_detected = crop_face(to_gray(tilted), face.box, 0.1, (48, 48)).astype(float)
    levelled = level_crop(to_gray(tilted), face.box, 0.1, (48, 48), face.keypoints).astype(float)
    assert np.abs(levelled - reference).mean() < 0.6 * np.abs(as_detected - reference).mean()
