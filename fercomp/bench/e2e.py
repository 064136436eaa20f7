"""End to end on video: where each frame's time goes, how many frames per second `predict` makes,
and how well each detector finds faces at known boxes.

- `stage_times`: the frames run one after another, each stage timed on its own (decode, detect or
  track, crop + preprocess, classify, annotate), so the table says which stage to shrink next.
- `predict_fps`: `fercomp predict` itself (pipelined threads, batching across frames) in a fresh
  process, which reports its frames per second and its peak memory.
- `detection_quality`: precision and recall of each detector against boxes that were pasted, and
  the emotion accuracy of detect + crop + classify on those frames.
"""

from __future__ import annotations

import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterable

import cv2
import numpy as np

from ..deploy import runtime
from ..deploy.detectors import create_detector
from ..deploy.faces import Box, expand_box, level_crop, to_gray
from ..deploy.tracking import StreamFaces, box_iou

STAGES = ("decode", "detect", "crop", "classify", "annotate")
MATCH_IOU = 0.5  # a detection is right when its crop (box + margin) overlaps the true face this much


def stage_times(video: str | Path, model: str, detector_name: str, *, backend: str | None = None,
                detect_every: int = 1, annotate: bool = True, threads: int = 2, max_frames: int | None = None
                ) -> dict[str, Any]:
    """Median milliseconds per frame of each stage, over the video's frames, run sequentially."""
    from ..deploy.predict import annotate as draw

    cv2.setNumThreads(threads)
    predictor = runtime.load(model, backend=backend, threads=threads, batch_size=16)
    detector = create_detector(detector_name)
    size = tuple(predictor.spec["input_size"])
    capture = cv2.VideoCapture(str(video))
    faces_in_stream = StreamFaces(detector, detect_every)
    times = {stage: [] for stage in STAGES}
    faces = frames = 0
    try:
        while max_frames is None or frames < max_frames:
            t0 = time.perf_counter()
            ok, image = capture.read()
            if not ok:
                break
            t1 = time.perf_counter()
            tracked = faces_in_stream.locate(frames, image)
            t2 = time.perf_counter()
            gray = to_gray(image)
            boxes = [box for _, box in tracked]
            crops = faces_in_stream.crops(gray, tracked, detector.margin, size)
            batch = runtime.preprocess(np.stack(crops), predictor.spec) if boxes else None
            t3 = time.perf_counter()
            logits = predictor.forward(batch) if batch is not None else np.zeros((0, len(predictor.class_names)))
            t4 = time.perf_counter()
            if annotate:
                draw(image, boxes, [predictor.class_names[int(i)] for i in logits.argmax(1)])
            t5 = time.perf_counter()
            for stage, (a, b) in zip(STAGES, ((t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5))):
                times[stage].append((b - a) * 1000)
            faces += len(boxes)
            frames += 1
    finally:
        capture.release()
    if not frames:
        raise ValueError(f"{video}: no frame could be decoded")
    # medians: a frame that waited on another process says nothing about the pipeline
    per_stage = {stage: float(np.median(values)) for stage, values in times.items()}
    total = sum(per_stage.values())
    return {"frames": frames, "faces_per_frame": faces / frames, "ms": per_stage, "total_ms": total,
            "sequential_fps": 1000.0 / total, "backend": predictor.backend, "detector": detector_name,
            "detect_every": detect_every, "annotate": annotate}


def _predict_in_child(kwargs: dict[str, Any]) -> dict[str, Any]:
    from ..deploy.predict import PredictConfig, predict_sources

    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        summary = predict_sources(PredictConfig(out=out, **kwargs), progress=False)
        wall = time.perf_counter() - started
    return {"frames": summary["frames"], "faces": summary["faces"], "stream_fps": summary["stream_fps"],
            "wall_s": wall, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def predict_fps(video: str | Path, model: str, detector: str, *, backend: str | None = None, detect_every: int = 1,
                annotate: bool = False, threads: int = 2, pipeline: bool = True) -> dict[str, Any]:
    """`predict` on the video in a fresh process: its frames per second and the process's peak memory."""
    kwargs = dict(sources=[str(video)], model=model, backend=backend, detector=detector, detect_every=detect_every,
                  annotate=annotate, threads=threads, pipeline=pipeline)
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(_predict_in_child, kwargs).result()


def detection_quality(samples: Iterable[tuple[np.ndarray, list[Box], list[int]]], detectors: list[str],
                      model: str | None = None) -> dict[str, dict[str, Any]]:
    """Per detector: precision, recall, and (with a model) the share of true faces classified right
    (crops levelled by the eyes where the detector gives them, as `predict` does)."""
    samples = list(samples)
    predictor = runtime.load(model) if model else None
    results = {}
    for name in detectors:
        detector = create_detector(name)
        results[name] = score_detector(samples, detector.detect, detector.margin, predictor, level=True)
    return results


def score_detector(samples: list[tuple[np.ndarray, list[Box], list[int]]], detect: Callable[[np.ndarray], list],
                   margin: float, predictor=None, level: bool = False) -> dict[str, Any]:
    """Precision, recall and (with a predictor) end-to-end accuracy of `detect` on labelled frames.

    `samples` are (BGR image, true face boxes, true class per face). A detection is a true
    positive when its crop region (box + margin) overlaps an unmatched true box with IoU >= MATCH_IOU.
    `level` rotates each crop so the eyes are level (BlazeFace's keypoints) before classifying.
    """
    tp = fp = fn = right = faces = 0
    detect_s = 0.0
    for image, truth, labels in samples:
        started = time.perf_counter()
        detected = detect(image)
        detect_s += time.perf_counter() - started
        unmatched = set(range(len(truth)))
        matched: dict[int, Any] = {}
        for face in detected:
            box = expand_box(face.box, margin, image.shape)
            best = max(unmatched, key=lambda i: box_iou(box, truth[i]), default=None)
            if best is not None and box_iou(box, truth[best]) >= MATCH_IOU:
                unmatched.discard(best)
                matched[best] = face
                tp += 1
            else:
                fp += 1
        fn += len(unmatched)
        faces += len(truth)
        if predictor is not None and matched:
            gray = to_gray(image)
            size = tuple(predictor.spec["input_size"])
            crops = np.stack([level_crop(gray, f.box, margin, size, f.keypoints if level else None)
                              for f in matched.values()])
            predicted = predictor.predict_proba(crops).argmax(1)
            right += int(sum(p == labels[i] for p, i in zip(predicted, matched)))
    result = {"precision": tp / (tp + fp) if tp + fp else None, "recall": tp / faces if faces else None,
              "true_positives": tp, "false_positives": fp, "missed": fn, "faces": faces, "images": len(samples),
              "detect_ms_per_image": detect_s * 1000 / max(1, len(samples))}
    if predictor is not None:
        # a missed face counts as wrong: this is what a user pointing the camera gets
        result["end_to_end_accuracy"] = right / faces if faces else None
    return result
