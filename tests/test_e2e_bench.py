"""The end-to-end benchmark's pieces: per-stage timing over a generated clip, detector scoring."""

from __future__ import annotations

import numpy as np

from fercomp.bench.e2e import STAGES, detection_quality, stage_times
from fercomp.bench.scenes import astronaut_face, background, moving_faces, paste, write_video
from fercomp.deploy.faces import Box


def test_stage_times_cover_every_stage_of_every_frame(tmp_path):
    video = tmp_path / "clip.avi"
    write_video(video, moving_faces(faces=2, frames=12, seed=3), fps=30)
    row = stage_times(video, "zoo:tiny", "blazeface", detect_every=3, threads=1)
    assert row["frames"] == 12 and row["faces_per_frame"] == 2
    assert set(row["ms"]) == set(STAGES) and all(v > 0 for v in row["ms"].values())
    assert row["total_ms"] == sum(row["ms"].values()) and row["sequential_fps"] == 1000 / row["total_ms"]


def test_detection_quality_counts_hits_misses_and_false_boxes():
    face = astronaut_face()
    rng = np.random.default_rng(0)
    samples = []
    for i, box in enumerate([Box(100, 80, 160, 175), Box(380, 200, 180, 196)]):
        canvas = background((480, 640), rng)
        paste(canvas, face, box)
        samples.append((canvas, [box], [3]))  # the astronaut smiles: happy
    # a frame whose label puts the face elsewhere: the detection is a false box and the label a miss
    canvas = background((480, 640), rng)
    paste(canvas, face, Box(60, 60, 160, 175))
    samples.append((canvas, [Box(400, 250, 160, 175)], [3]))
    result = detection_quality(samples, ["blazeface"], model="zoo:tiny")["blazeface"]
    assert (result["true_positives"], result["false_positives"], result["missed"], result["faces"]) == (2, 1, 1, 3)
    assert result["precision"] == 2 / 3 and result["recall"] == 2 / 3
    assert result["end_to_end_accuracy"] in (0.0, 1 / 3, 2 / 3)  # only the two found faces can be right
