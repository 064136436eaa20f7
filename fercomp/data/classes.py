"""The canonical FER2013 class order and the folder-name synonyms users bring."""

from __future__ import annotations

from ..errors import DataError

# Canonical FER2013 label order (the Kaggle csv's `emotion` column).
CLASS_NAMES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

# Folder names seen in the wild for each canonical class (matched case-insensitively).
SYNONYMS: dict[str, str] = {
    "angry": "angry", "anger": "angry", "mad": "angry",
    "disgust": "disgust", "disgusted": "disgust", "disgusting": "disgust",
    "fear": "fear", "fearful": "fear", "afraid": "fear", "scared": "fear",
    "happy": "happy", "happiness": "happy", "joy": "happy",
    "sad": "sad", "sadness": "sad",
    "surprise": "surprise", "surprised": "surprise",
    "neutral": "neutral", "calm": "neutral",
}


def canonical_class(name: str, where: str = "") -> str:
    """Map a folder or label name to its canonical class name, or raise a DataError listing the known ones."""
    key = name.strip().lower()
    if key in SYNONYMS:
        return SYNONYMS[key]
    known = ", ".join(sorted(SYNONYMS))
    place = f"{where}: " if where else ""
    raise DataError(
        f"{place}unknown class folder '{name}'; known names are: {known}"
        " (use --class-map to map other names)"
    )
