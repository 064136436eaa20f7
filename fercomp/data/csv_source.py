"""Read the Kaggle fer2013.csv (emotion,pixels[,Usage]) with vectorised parsing.

The real file is 300 MB: 35,887 rows of 2,304 space-separated integers. Splitting that into
Python strings or tokens takes tens of seconds, so the file is parsed as one byte buffer with
numpy: line and comma positions locate the fields, and the pixel text is turned into numbers in
small row chunks (small enough to stay in the CPU cache, which makes it several times faster).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import DataError
from .classes import CLASS_NAMES
from .images import IMAGE_SIZE, resize_batch

PIXELS_PER_IMAGE = IMAGE_SIZE * IMAGE_SIZE
# Usage column -> split name (case-insensitive); the Kaggle values plus plain split names.
USAGE_SPLITS = {
    "training": "train", "train": "train",
    "publictest": "val", "val": "val", "valid": "val", "validation": "val",
    "privatetest": "test", "test": "test",
}
_CHUNK_ROWS = 128
_NEWLINE, _CR, _COMMA, _QUOTE, _SPACE, _TAB, _DIGIT0 = (ord(c) for c in "\n\r,\" \t0")
_BOM = b"\xef\xbb\xbf"


def _field_text(data: bytes, start: int, end: int) -> str:
    return data[start:end].decode("utf-8", "replace").strip().strip('"').strip()


def _locate_lines(buf: np.ndarray, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive, without \\r) byte offsets of every line."""
    newlines = np.flatnonzero(buf == _NEWLINE)
    starts = np.concatenate([[offset], newlines + 1])
    ends = np.concatenate([newlines, [len(buf)]])
    if starts[-1] == len(buf):  # file ends with a newline: no last line
        starts, ends = starts[:-1], ends[:-1]
    has_cr = (ends > starts) & (buf[np.maximum(ends - 1, 0)] == _CR)
    return starts, ends - has_cr


def _parse_pixel_rows(buf: np.ndarray, left: np.ndarray, right: np.ndarray,
                      lines: np.ndarray, data: bytes, path: Path, per_image: int = PIXELS_PER_IMAGE) -> np.ndarray:
    """Pixel fields given by byte spans [left, right) -> uint8 [rows, 2304]; errors name the line."""
    out = np.empty((len(left), per_image), dtype=np.uint8)
    for c0 in range(0, len(left), _CHUNK_ROWS):
        lo, hi = int(left[c0]), int(right[min(c0 + _CHUNK_ROWS, len(left)) - 1])
        # Two leading spaces let every token look back two bytes; one trailing space ends the last token.
        seg = np.full(hi - lo + 3, _SPACE, dtype=np.uint8)
        seg[2:-1] = buf[lo:hi]
        row_left = left[c0:c0 + _CHUNK_ROWS] - lo + 2
        row_right = right[c0:c0 + _CHUNK_ROWS] - lo + 2
        for gap_start, gap_end in zip(row_right[:-1], row_left[1:]):
            seg[gap_start:gap_end] = _SPACE  # other columns and newlines between pixel fields
        is_digit = (seg >= _DIGIT0) & (seg <= _DIGIT0 + 9)
        valid = is_digit | (seg == _SPACE) | (seg == _TAB)
        if not valid.all():
            row = c0 + int(np.searchsorted(row_right, np.flatnonzero(~valid)[0], side="right"))
            _raise_bad_token(data, int(left[row]), int(right[row]), int(lines[row]), path)
        ends = np.flatnonzero(is_digit[:-1] & ~is_digit[1:])
        counts = np.diff(np.searchsorted(ends, row_right), prepend=0)
        wrong = np.flatnonzero(counts != per_image)
        if len(wrong):
            row = c0 + int(wrong[0])
            raise DataError(
                f"{path} line {lines[row]}: expected {per_image} pixel values "
                f"({_side(per_image)}x{_side(per_image)}, as on the first row), found {int(counts[wrong[0]])}"
            )
        # Each token is read backwards from its last byte: ones, tens (if a digit), hundreds.
        ones, tens, hundreds, thousands = (seg[ends - k] for k in range(4))
        has_tens = tens >= _DIGIT0
        has_hundreds = has_tens & (hundreds >= _DIGIT0)
        values = ((ones - _DIGIT0).astype(np.uint16)
                  + np.where(has_tens, tens - _DIGIT0, 0).astype(np.uint16) * 10
                  + np.where(has_hundreds, hundreds - _DIGIT0, 0).astype(np.uint16) * 100)
        too_big = (values > 255) | (has_hundreds & (thousands >= _DIGIT0))
        if too_big.any():
            row = c0 + int(np.flatnonzero(too_big)[0] // per_image)
            raise DataError(f"{path} line {lines[row]}: pixel value out of range 0..255")
        out[c0:c0 + len(row_left)] = values.reshape(-1, per_image)
    return out


def _raise_bad_token(data: bytes, start: int, end: int, line: int, path: Path) -> None:
    # Only reached on malformed data, so a slow per-token scan is fine here.
    for token in data[start:end].decode("utf-8", "replace").split():
        if not token.isascii() or not token.isdigit():
            raise DataError(f"{path} line {line}: pixel value '{token[:20]}' is not an integer 0..255")
    raise DataError(f"{path} line {line}: pixel field holds characters other than digits and spaces")


def _require_text(data: bytes, path: Path) -> None:
    """A binary file (an image, an npz, a zip) given as a csv: say so instead of printing its bytes."""
    head = data[:65536]
    nul = head.find(b"\0")
    if nul >= 0:
        raise DataError(f"{path}: not a text CSV (binary data at byte {nul}); give fer2013.csv, an .npz or an image folder")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the 64 KiB boundary
            raise DataError(f"{path}: not a UTF-8 text CSV (byte {exc.start}); give fer2013.csv, an .npz "
                            "or an image folder") from None


def _side(pixels: int) -> int:
    return math.isqrt(pixels)


def _pixels_per_image(data: bytes, left: int, right: int, path: Path, line: int) -> int:
    """The image size every row must have: the first row's, when it is a square (48x48 for FER2013)."""
    count = len(data[left:right].split())
    if count != PIXELS_PER_IMAGE and (count == 0 or _side(count) ** 2 != count):
        raise DataError(f"{path} line {line}: {count} pixel values is not a square image; expected "
                        f"{PIXELS_PER_IMAGE} ({IMAGE_SIZE}x{IMAGE_SIZE})")
    return count


def read_fer2013_csv(path: Path) -> tuple[dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], bool, int]:
    """Parse a FER2013 csv -> ({split: (x uint8 [N,48,48], y int64 [N], csv row int64 [N])}, has_usage,
    the side of the stored images: square images of another size are resized to 48x48).

    Rows all go to train when there is no Usage column. The csv row is the 0-based data row,
    the index that fer2013new.csv (FER+) is joined on.
    """
    data = path.read_bytes()
    _require_text(data, path)
    buf = np.frombuffer(data, dtype=np.uint8)
    starts, ends = _locate_lines(buf, len(_BOM) if data.startswith(_BOM) else 0)
    if not len(starts) or ends[0] == starts[0]:
        raise DataError(f"{path}: file is empty; expected a header emotion,pixels,Usage")
    header = [h.strip().strip('"') for h in data[starts[0]:ends[0]].decode("utf-8", "replace").split(",")]
    lower = [h.lower() for h in header]
    missing = [c for c in ("emotion", "pixels") if c not in lower]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(missing)}; header found: {','.join(header)} "
            "(expected emotion,pixels,Usage)"
        )
    emotion_col, pixel_col = lower.index("emotion"), lower.index("pixels")
    usage_col = lower.index("usage") if "usage" in lower else None

    lines = np.arange(1, len(starts) + 1)[1:]
    starts, ends = starts[1:], ends[1:]
    non_blank = ends > starts
    starts, ends, lines = starts[non_blank], ends[non_blank], lines[non_blank]
    if not len(starts):
        raise DataError(f"{path}: no data rows after the header")

    # Field k of a line runs from after its k-th comma to its (k+1)-th comma.
    commas = np.flatnonzero(buf == _COMMA)
    first_comma = np.searchsorted(commas, starts)
    n_commas = np.searchsorted(commas, ends) - first_comma
    wrong = np.flatnonzero(n_commas != len(header) - 1)
    if len(wrong):
        i = int(wrong[0])
        raise DataError(f"{path} line {lines[i]}: {int(n_commas[i]) + 1} fields, but the header has {len(header)}")
    padded = np.concatenate([commas, [0]])

    def field_span(col: int) -> tuple[np.ndarray, np.ndarray]:
        left = starts if col == 0 else padded[first_comma + col - 1] + 1
        right = ends if col == len(header) - 1 else padded[first_comma + col]
        return left, right

    labels = np.empty(len(starts), dtype=np.int64)
    for i, (a, b) in enumerate(zip(*field_span(emotion_col))):
        text = _field_text(data, a, b)
        if not text.isascii() or not text.isdigit() or int(text) >= len(CLASS_NAMES):
            raise DataError(f"{path} line {lines[i]}: emotion '{text}' is not a class index 0..{len(CLASS_NAMES) - 1}")
        labels[i] = int(text)

    split_of_row = np.full(len(starts), "train", dtype=object)
    if usage_col is not None:
        for i, (a, b) in enumerate(zip(*field_span(usage_col))):
            usage = _field_text(data, a, b)
            split = USAGE_SPLITS.get(usage.lower())
            if split is None:
                raise DataError(
                    f"{path} line {lines[i]}: unknown Usage '{usage}' (expected Training, PublicTest or PrivateTest)"
                )
            split_of_row[i] = split

    left, right = field_span(pixel_col)
    # Tolerate quoted pixel fields ("70 80 ...") and stray spaces around them.
    for _ in range(2):
        left = left + ((left < right) & np.isin(buf[np.minimum(left, len(buf) - 1)], (_QUOTE, _SPACE)))
        right = right - ((right > left) & np.isin(buf[np.maximum(right - 1, 0)], (_QUOTE, _SPACE)))
    per_image = _pixels_per_image(data, int(left[0]), int(right[0]), path, int(lines[0]))
    pixels = _parse_pixel_rows(buf, left, right, lines, data, path, per_image)
    side = _side(per_image)

    result = {}
    for name in ("train", "val", "test"):
        rows = np.flatnonzero(split_of_row == name)
        if len(rows):
            images = resize_batch(pixels[rows].reshape(-1, side, side))
            result[name] = (images, labels[rows], rows.astype(np.int64))
    return result, usage_col is not None, side
