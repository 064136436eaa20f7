"""FER+ relabelling: read fer2013new.csv votes and turn them into hard and soft labels.

Votes are int [N, 10] in FER+ column order (FERPLUS_COLUMNS); a row of all -1 means the image
could not be linked to a FER+ row. Two ways to read them:

- `ferplus_labels` (7 classes, FER2013 order): the plurality over the 7 basic emotions. Rows FER+
  marks as non-faces are dropped: unknown rows, rows with no vote on any of the 7 basic emotions,
  and rows where NF has at least as many votes as the most-voted emotion.
- `ferplus_majority_labels` (8 classes, FER2013 order + contempt): Barsoum et al. 2016's
  "majority" protocol, the one FER+ accuracies are reported under: single votes are discarded as
  outliers, and a row is kept only when one of the 8 emotions has more than half of the remaining
  votes (unknown and NF included in the count).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..errors import DataError
from .classes import CLASS_NAMES

FERPLUS_COLUMNS = (
    "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF",
)
# For each canonical class (angry, disgust, fear, happy, sad, surprise, neutral): its FER+ column.
FERPLUS_COLUMN_OF_CLASS = np.array([4, 5, 6, 1, 3, 2, 0])
NF_COLUMN = 9
# FER+'s own class list: the 7 FER2013 classes in canonical order, then contempt.
FERPLUS8_CLASS_NAMES = (*CLASS_NAMES, "contempt")
FERPLUS8_COLUMN_OF_CLASS = np.array([*FERPLUS_COLUMN_OF_CLASS, 7])
# fer2013new.csv Usage -> split name.
USAGE_SPLIT = {"training": "train", "publictest": "val", "privatetest": "test"}


def read_ferplus_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read fer2013new.csv -> (votes int16 [R,10] in FERPLUS_COLUMNS order, split name per row)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file or directory (FER+ votes, fer2013new.csv)")
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise DataError(f"{path}: file is empty; expected fer2013new.csv with a header")
    header = [h.strip() for h in rows[0]]
    lower = [h.lower() for h in header]
    missing = [c for c in ("usage", *(c.lower() for c in FERPLUS_COLUMNS)) if c not in lower]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(missing)}; header found: {','.join(header)} "
            f"(expected Usage,Image name,{','.join(FERPLUS_COLUMNS)})"
        )
    vote_cols = [lower.index(c.lower()) for c in FERPLUS_COLUMNS]
    usage_col = lower.index("usage")
    body = [r for r in rows[1:] if r]
    votes = np.empty((len(body), len(FERPLUS_COLUMNS)), dtype=np.int16)
    usage = np.empty(len(body), dtype=object)
    for i, row in enumerate(body):
        line = i + 2
        try:
            votes[i] = [int(row[c]) for c in vote_cols]
        except (ValueError, IndexError):
            raise DataError(f"{path} line {line}: vote counts must be integers in every vote column") from None
        usage[i] = USAGE_SPLIT.get(row[usage_col].strip().lower(), "")
    if (votes < 0).any():
        line = int(np.flatnonzero((votes < 0).any(axis=1))[0]) + 2
        raise DataError(f"{path} line {line}: negative vote count")
    return votes, usage


def ferplus_labels(votes: np.ndarray, fer_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Votes [N,10] -> (keep mask [N], hard labels [N], soft float32 [N,7]) in canonical class order.

    The hard label is the most-voted basic emotion; ties go to the FER2013 label when it is
    among the tied classes, else to the lowest canonical index. Labels of dropped rows are
    meaningless and must be masked with `keep`.
    """
    votes = np.asarray(votes)
    unknown = (votes < 0).all(axis=1)
    emotion_votes = np.clip(votes[:, FERPLUS_COLUMN_OF_CLASS], 0, None).astype(np.float32)
    top = emotion_votes.max(axis=1)
    nonface = unknown | (top == 0) | (votes[:, NF_COLUMN] >= top)
    tied = emotion_votes == top[:, None]
    fer_labels = np.asarray(fer_labels, dtype=np.int64)
    fer_is_tied = (fer_labels >= 0) & (fer_labels < len(CLASS_NAMES))
    fer_is_tied[fer_is_tied] = tied[fer_is_tied, fer_labels[fer_is_tied]]
    hard = np.where(fer_is_tied, fer_labels, tied.argmax(axis=1)).astype(np.int64)
    soft = emotion_votes / np.maximum(emotion_votes.sum(axis=1, keepdims=True), 1.0)
    return ~nonface, hard, soft.astype(np.float32)


def ferplus_majority_labels(votes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Votes [N,10] -> (keep mask [N], hard labels [N], soft float32 [N,8]) in FERPLUS8_CLASS_NAMES order.

    Barsoum et al.'s majority rule: votes of 1 are dropped as outliers; a row is kept when one
    emotion holds more than half of what remains (a majority of unknown or NF drops the row). Soft
    targets are the remaining emotion votes, normalised. Labels of dropped rows are meaningless.
    """
    votes = np.asarray(votes).astype(np.float32)
    unknown = (votes < 0).all(axis=1)
    kept_votes = np.where(votes > 1, votes, 0.0)
    emotions = kept_votes[:, FERPLUS8_COLUMN_OF_CLASS]
    hard = emotions.argmax(axis=1).astype(np.int64)
    top = emotions.max(axis=1)
    keep = ~unknown & (top > 0.5 * kept_votes.sum(axis=1))
    soft = emotions / np.maximum(emotions.sum(axis=1, keepdims=True), 1.0)
    return keep, hard, soft.astype(np.float32)


def votes_for_rows(
    rows: np.ndarray, votes: np.ndarray, usage: np.ndarray, split: str, where: str, votes_path: Path
) -> np.ndarray:
    """Look up FER+ votes by 0-based FER2013 row (-1 = unknown -> all -1), checking the rows line up."""
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) and rows.max() >= len(votes):
        raise DataError(
            f"{where}: refers to FER2013 row {int(rows.max())} but {votes_path} has only {len(votes)} rows; "
            "use the fer2013new.csv that matches this data"
        )
    known = rows >= 0
    out = np.full((len(rows), votes.shape[1]), -1, dtype=np.int16)
    out[known] = votes[rows[known]]
    mismatched = known & (usage[np.where(known, rows, 0)] != split)
    if mismatched.any():
        row = int(rows[np.flatnonzero(mismatched)[0]])
        raise DataError(
            f"{votes_path} line {row + 2}: FER2013 row {row} is in split '{usage[row] or 'unknown'}' there but in "
            f"'{split}' in {where}; the two files must list the same rows in the same order"
        )
    return out
