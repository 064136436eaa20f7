"""Classify face crops on the board with the TensorRT engine: one line per image.

    python3 -m fercomp_board.classify face1.png face2.jpg

Images are read as grayscale and resized to the model's input; they should be face crops
(the board has no face detector here: run one upstream, or use `fercomp predict` on a PC).
"""

from __future__ import annotations

import argparse

from .detect import classify_crops
from .trt_runtime import TrtModel, load_metadata


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", nargs="+")
    ap.add_argument("--engine", default="model.engine")
    ap.add_argument("--meta", default="model.json")
    args = ap.parse_args(argv)
    meta = load_metadata(args.meta)
    with TrtModel(args.engine) as model:  # frees the CUDA stream and buffers however this ends
        classify_crops(model, meta, args.images)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
