"""What a source reader returns before labels, class maps and carving are applied."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class RawSplit:
    """Images uint8 [N,48,48], source labels int64 [N], and what FER+ relabelling may need:
    the 0-based FER2013 csv row of each image (-1 unknown) and embedded FER+ votes [N,10]."""

    x: np.ndarray
    y: np.ndarray
    rows: np.ndarray | None = None
    votes: np.ndarray | None = None
    resized: str | None = None  # what was resized to 48x48, said to the user and kept in the manifest
