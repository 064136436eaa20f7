"""Find the faces in photos and videos on the board and classify them, both networks on TensorRT.

    python3 -m fercomp_board.detect photo.jpg clip.mp4 [--every N]

detector.engine (BlazeFace, built by build_engine.sh from detector.onnx) finds the faces; its
outputs are decoded by face_detect.py, the file fercomp tests on the PC; model.engine classifies
each face crop. One tab-separated line per face: source, frame, x, y, w, h, emotion, confidence
(a line saying so for a frame without a face or a file that cannot be read).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Iterator

import numpy as np

from .face_detect import BlazeFace, expand, options_from_json
from .trt_runtime import TrtModel, load_metadata, preprocess, softmax

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


class FaceClassifier:
    """detector engine + classifier engine: faces and their emotions in one BGR image."""

    def __init__(self, detector: TrtModel, classifier: TrtModel, detector_config: dict, meta: dict):
        self.blazeface = BlazeFace(lambda x: tuple(detector.infer_all(x)[:2]),
                                   options_from_json(detector_config["options"]))
        self.margin = float(detector_config["margin"])
        self.classifier, self.meta = classifier, meta
        self.names = meta["class_names"]

    def __call__(self, image: np.ndarray) -> list[tuple[tuple[int, int, int, int], str, float]]:
        import cv2

        faces = self.blazeface.detect(image)
        if not faces:
            return []
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        h, w = self.meta["input_size"]
        crops = []
        for x, y, fw, fh, _, _ in faces:
            cx, cy, cw, ch = expand(x, y, fw, fh, self.margin, *gray.shape[:2])
            crops.append(cv2.resize(gray[cy : cy + ch, cx : cx + cw], (w, h), interpolation=cv2.INTER_AREA))
        probs = softmax(self.classifier.infer(preprocess(np.stack(crops), self.meta)))
        return [((x, y, fw, fh), self.names[int(p.argmax())], float(p.max())) for (x, y, fw, fh, _, _), p in zip(faces, probs)]


def frames(path: str, every: int) -> Iterator[tuple[str, np.ndarray | None]]:
    """(frame label, BGR image or None when unreadable) for a photo or every `every`-th video frame."""
    import cv2

    if path.lower().endswith(VIDEO_EXTENSIONS):
        capture = cv2.VideoCapture(path)
        if not capture.isOpened():
            yield "", None
            return
        index = 0
        while True:
            ok, image = capture.read()
            if not ok:
                break
            if index % every == 0:
                yield str(index), image
            index += 1
        capture.release()
    else:
        yield "", cv2.imread(path, cv2.IMREAD_COLOR)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sources", nargs="+")
    ap.add_argument("--engine", default="model.engine")
    ap.add_argument("--meta", default="model.json")
    ap.add_argument("--detector-engine", default="detector.engine")
    ap.add_argument("--detector-meta", default="detector.json")
    ap.add_argument("--every", type=int, default=1, help="videos: every Nth frame")
    args = ap.parse_args(argv)
    if args.every < 1:
        print(f"--every must be >= 1 (got {args.every})", file=sys.stderr)
        return 2
    meta = load_metadata(args.meta)
    with open(args.detector_meta, encoding="utf-8") as fh:
        detector_config = json.load(fh)
    with TrtModel(args.detector_engine) as detector, TrtModel(args.engine) as classifier:
        print_faces(FaceClassifier(detector, classifier, detector_config, meta), args.sources, args.every)
    return 0


def print_faces(find, sources: list[str], every: int) -> None:
    """One tab-separated line per face found by `find` in each photo or video frame."""
    for path in sources:
        for frame, image in frames(path, every):
            if image is None:
                print(f"{path}\t{frame}\terror: not a readable image or video")
                continue
            faces = find(image)
            if not faces:
                print(f"{path}\t{frame}\tno face found")
            for (x, y, w, h), name, confidence in faces:
                print(f"{path}\t{frame}\t{x}\t{y}\t{w}\t{h}\t{name}\t{confidence:.3f}")


def classify_crops(model, meta: dict, paths: list[str]) -> None:
    """One line per image taken as a whole face crop: source, emotion, confidence."""
    import cv2

    names = meta["class_names"]
    for path in paths:
        image = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
        if image is None:
            print(f"{path}\terror: not a readable image")
            continue
        probs = softmax(model.infer(preprocess(image[None], meta)))[0]
        best = int(np.argmax(probs))
        print(f"{path}\t{names[best]}\t{probs[best]:.3f}")


if __name__ == "__main__":
    raise SystemExit(main())
