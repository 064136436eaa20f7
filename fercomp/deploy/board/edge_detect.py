"""Find the faces in photos and videos on a CPU board and classify them: BlazeFace (`detector.onnx`,
ONNX Runtime or OpenVINO) and the bundle's classifier (LiteRT, NCNN or OpenVINO).

    python3 -m fercomp_board.edge_detect photo.jpg clip.mp4 [--every N] [--threads N]
    python3 -m fercomp_board.edge_detect face1.png face2.png --no-detect   # each image is one face crop

One tab-separated line per face: source, frame, x, y, w, h, emotion, confidence (as the Jetson's
`fercomp_board.detect`, whose face cropping and frame reading this reuses); with --no-detect:
source, emotion, confidence.
"""

from __future__ import annotations

import argparse
import json
import sys

from .detect import FaceClassifier, classify_crops, print_faces
from .edge_runtime import EdgeModel, OnnxDetector
from .trt_runtime import load_metadata


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sources", nargs="+")
    ap.add_argument("--meta", default="model.json")
    ap.add_argument("--model", default=None, help="classifier file (default: the one model.json names)")
    ap.add_argument("--detector", default="detector.onnx")
    ap.add_argument("--detector-meta", default="detector.json")
    ap.add_argument("--every", type=int, default=1, help="videos: every Nth frame")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-detect", action="store_true", help="each image is already one face crop")
    args = ap.parse_args(argv)
    if args.every < 1:
        print(f"--every must be >= 1 (got {args.every})", file=sys.stderr)
        return 2
    meta = load_metadata(args.meta)
    model = EdgeModel(args.model or meta["file"], meta, threads=args.threads)
    if args.no_detect:
        classify_crops(model, meta, args.sources)
        return 0
    with open(args.detector_meta, encoding="utf-8") as fh:
        detector_config = json.load(fh)
    print_faces(FaceClassifier(OnnxDetector(args.detector, threads=args.threads), model, detector_config, meta),
                args.sources, args.every)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
