"""Writing committed results without this machine's paths (paths relative to the repository).

Every benchmark script writes its `benchmarks/results/` files through these two functions, which
rewrite absolute paths: the checkout becomes the repository root (`artifacts/...`), the folder
beside it `../shared/...`, and the home folder `~`. The same result file then reads the same on
every machine, and says where to find its inputs from the repository.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path("..") / "shared" / "data" / "fer2013.npz"  # relative to the repository


def portable(text: str) -> str:
    """`text` with the repository's, its parent's and the home folder's absolute paths made relative."""
    for folder, replacement in ((REPO, ""), (REPO.parent, "../"), (Path.home(), "~/")):
        for spelling in {str(folder), os.path.realpath(folder)}:
            text = text.replace(spelling + "/", replacement)
    return text


def write_result_json(path: Path, obj: Any) -> None:
    from fercomp.io import write_text

    write_text(path, portable(json.dumps(obj, indent=2, default=str)) + "\n")


def write_result_text(path: Path, text: str) -> None:
    from fercomp.io import write_text

    write_text(path, portable(text))
