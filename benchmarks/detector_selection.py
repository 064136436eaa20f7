"""How the detectors' settings were chosen, on FER2013 PublicTest (never PrivateTest): BlazeFace's
score threshold, the crop margin per detector, and whether levelling the eyes helps.

    python benchmarks/detector_selection.py      # writes benchmarks/results/detector_selection.{json,md}

Frames: 640x480 procedural backgrounds with one PublicTest face pasted at a known box (130 to
240 px, or 80 to 260 px for the threshold sweep, which also needs small faces); for the levelling
test each face is first turned by a random angle up to +-15 or +-30 degrees. The classifier is
zoo:tiny. The settings chosen here are the defaults in fercomp/deploy/detectors.py; e2e.py reports
them on PrivateTest.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_io import DEFAULT_DATA, REPO, write_result_json, write_result_text  # noqa: E402

from fercomp.bench.e2e import score_detector  # noqa: E402
from fercomp.bench.scenes import background, paste  # noqa: E402
from fercomp.deploy import runtime  # noqa: E402
from fercomp.deploy.board import face_detect as ssd  # noqa: E402
from fercomp.deploy.detectors import Face, create_detector  # noqa: E402
from fercomp.deploy.faces import Box  # noqa: E402

THRESHOLDS = (0.2, 0.3, 0.4, 0.45, 0.5, 0.55, 0.6)
MARGINS = (0.0, 0.05, 0.1, 0.15, 0.2)


def public_test_frames(data: Path, count: int, sides: tuple[int, int], max_angle: float = 0.0, seed: int = 0):
    npz = np.load(data)
    x, y = npz["val_x"], npz["val_y"]
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        canvas = background((480, 640), rng)
        side = int(rng.integers(*sides))
        box = Box(int(rng.integers(0, 640 - side)), int(rng.integers(0, 480 - side)), side, side)
        k = int(rng.integers(len(x)))
        face = cv2.resize(x[k], (side, side), interpolation=cv2.INTER_CUBIC)
        if max_angle:
            turn = cv2.getRotationMatrix2D((side / 2, side / 2), float(rng.uniform(-max_angle, max_angle)), 1.0)
            face = cv2.warpAffine(face, turn, (side, side), borderMode=cv2.BORDER_REPLICATE)
        paste(canvas, face, box)
        frames.append((canvas, [box], [int(y[k])]))
    return frames


def with_threshold(name: str, threshold: float):
    """`name`'s detect function with another score threshold (same network, same decoding)."""
    detector = create_detector(name)
    blazeface = ssd.BlazeFace(detector.blazeface.network, dataclasses.replace(detector.options, min_score=threshold))
    return lambda image: [Face(Box(x, y, w, h), s, k) for x, y, w, h, s, k in blazeface.detect(image)]


def at_least_as_precise(rows: dict, name: str, precision: float) -> float | None:
    """The threshold with the highest recall among those whose precision is at least `precision`."""
    fits = [(row["recall"], -t) for t in THRESHOLDS if (row := rows[f"{name}@{t}"])["precision"] >= precision]
    return -max(fits)[1] if fits else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO / DEFAULT_DATA))
    ap.add_argument("--frames", type=int, default=300)
    args = ap.parse_args()
    data = Path(args.data)
    predictor = runtime.load("zoo:tiny")
    report = {"data": str(data), "split": "PublicTest", "frames": args.frames, "model": "zoo:tiny"}
    lines = ["# Choosing the detectors' settings on FER2013 PublicTest", "",
             f"Command: `python benchmarks/detector_selection.py --frames {args.frames}`; classifier zoo:tiny; "
             "one face per 640x480 frame.", ""]

    frames = public_test_frames(data, args.frames, (80, 261), seed=1)
    report["thresholds"] = {}
    lines += ["## Score threshold (faces 80 to 260 px)", "", "| detector | min score | precision | recall | false boxes |",
              "|---|---:|---:|---:|---:|"]
    haar = score_detector(frames, create_detector("haar").detect, create_detector("haar").margin)
    report["thresholds"]["haar"] = haar
    lines.append(f"| haar | - | {haar['precision']:.3f} | {haar['recall']:.3f} | {haar['false_positives']} |")
    report["chosen_threshold"] = {}
    for name in ("blazeface", "blazeface-full"):
        for threshold in THRESHOLDS:
            row = score_detector(frames, with_threshold(name, threshold), create_detector(name).margin)
            report["thresholds"][f"{name}@{threshold}"] = row
            lines.append(f"| {name} | {threshold} | {row['precision']:.3f} | {row['recall']:.3f} | {row['false_positives']} |")
            print(lines[-1], flush=True)
        report["chosen_threshold"][name] = at_least_as_precise(report["thresholds"], name, haar["precision"])
    lines += ["", "Chosen (the highest recall at a precision no worse than Haar's on these frames): " + ", ".join(
        f"{name} {threshold}" for name, threshold in report["chosen_threshold"].items()) + "."]

    frames = public_test_frames(data, args.frames, (130, 241), seed=2)
    report["margins"] = {}
    lines += ["", "## Crop margin (faces 130 to 240 px; a miss counts as wrong)", "",
              "| detector | margin | recall | end-to-end accuracy |", "|---|---:|---:|---:|"]
    for name in ("blazeface", "haar"):
        detector = create_detector(name)
        for margin in MARGINS:
            row = score_detector(frames, detector.detect, margin, predictor)
            report["margins"][f"{name}@{margin}"] = row
            lines.append(f"| {name} | {margin} | {row['recall']:.3f} | {row['end_to_end_accuracy']:.2%} |")
            print(lines[-1], flush=True)

    report["levelling"] = {}
    lines += ["", "## Levelling the eyes before cropping (blazeface, faces turned by up to +-angle)", "",
              "| max angle | recall | accuracy, crop as detected | accuracy, eyes levelled |", "|---:|---:|---:|---:|"]
    detector = create_detector("blazeface")
    for angle in (0, 15, 30):
        frames = public_test_frames(data, args.frames, (130, 241), max_angle=angle, seed=3)
        plain = score_detector(frames, detector.detect, detector.margin, predictor)
        level = score_detector(frames, detector.detect, detector.margin, predictor, level=True)
        report["levelling"][str(angle)] = {"plain": plain, "levelled": level}
        lines.append(f"| {angle} | {plain['recall']:.3f} | {plain['end_to_end_accuracy']:.2%} | "
                     f"{level['end_to_end_accuracy']:.2%} |")
        print(lines[-1], flush=True)

    text = "\n".join(lines) + "\n"
    print(text)
    results = REPO / "benchmarks" / "results"
    write_result_json(results / "detector_selection.json", report)
    write_result_text(results / "detector_selection.md", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
