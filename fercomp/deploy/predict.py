"""Predict emotions on images, folders, videos and webcams: a CSV, annotated copies, a summary.

Every source becomes a stream of frames (a still image is one frame). Faces are found in each
frame by a detector (`detectors`, BlazeFace by default), their crops are queued and classified in
batches across frames and files, and each frame's rows and annotation are written once its batch
is back, in input order. In videos and webcams faces are tracked (`tracking`): each keeps an id,
the detector may run only every Nth frame (`--detect-every`), probabilities may be averaged over a
face's last frames (`--smooth`), and decoding, detection and classification run in three threads
that overlap (`--no-pipeline` runs them one after another, with the same CSV). A file that cannot be read is a CSV row with the reason and the rest still runs; what the
user must fix (a source that does not exist, a webcam that does not open, a model that cannot be
loaded, a bad flag) stops the command before anything is written.
"""

from __future__ import annotations

import csv
import datetime as _dt
import math
import os
import io
import queue
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import cv2
import numpy as np
from rich.markup import escape

from ..errors import ConfigError
from ..data.images import opencv_quiet
from ..io import atomic_path, write_bytes
from ..ui import console, make_progress
from . import runtime
from .detectors import DEFAULT_DETECTOR, DETECTORS, Detector, create_detector
from .faces import Box, find_face_crops, to_bgr, to_gray
from .tracking import Smoother, StreamFaces

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"})
# Annotated images keep their format when OpenCV can write it, PNG otherwise (e.g. GIF).
WRITABLE_IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
CSV_NAME = "predictions.csv"
ANNOTATED_DIR = "annotated"
NO_FACE = "no face found"
# Frames wait for their batch with their image (for the annotation); bound how many so a folder
# of large photos with one face each does not hold hundreds of them in memory.
MAX_PENDING_FRAMES = 32
# Small images (48x48 crops) are enlarged before drawing so the label is legible.
MIN_ANNOTATED_SIDE = 240
ANNOTATED_VIDEO_FOURCC = "mp4v"
FALLBACK_FPS = 25.0
# A 150 MP grayscale+BGR decode needs ~0.6 GB; beyond it a photo is more likely a mistake (or a
# decompression bomb) than a face to classify.
MAX_IMAGE_PIXELS = 150_000_000


@dataclass
class PredictConfig:
    sources: list[str]
    model: str
    out: str | None = None
    backend: str | None = None  # default: the model's own (see runtime.load)
    every: int = 1
    detect: bool = True
    detector: str = DEFAULT_DETECTOR
    margin: float | None = None  # default: the detector's own (see detectors)
    detect_every: int = 1
    smooth: int = 1
    pipeline: bool = True
    level: bool = True  # turn BlazeFace's faces upright by their eyes before classifying
    threads: int | None = None
    batch_size: int = 64
    annotate: bool = True
    max_frames: int | None = None
    device: str | None = None  # the torch backend's --device (auto: CUDA, then MPS, else CPU)
    ov_precision: str = "auto"  # OpenVINO's inference precision: auto (bf16 where the CPU has it) | f32

    def validate(self) -> None:
        def need(cond: bool, flag: str, rule: str, value: Any) -> None:
            if not cond:
                raise ConfigError(f"{flag} must be {rule} (got {value!r})")

        need(len(self.sources) > 0, "SOURCE", "at least one image, folder, video or webcam index", self.sources)
        need(self.every >= 1, "--every", ">= 1", self.every)
        need(self.margin is None or 0 <= self.margin <= 1, "--margin", "in [0, 1]", self.margin)
        need(self.detector in DETECTORS, "--detector", f"one of {', '.join(DETECTORS)}", self.detector)
        need(self.detect_every >= 1, "--detect-every", ">= 1", self.detect_every)
        need(self.smooth >= 1, "--smooth", ">= 1 frames", self.smooth)
        need(self.batch_size >= 1, "--batch-size", ">= 1", self.batch_size)
        need(self.threads is None or self.threads >= 1, "--threads", ">= 1", self.threads)
        need(self.max_frames is None or self.max_frames >= 1, "--max-frames", ">= 1", self.max_frames)
        need(self.ov_precision in ("auto", "f32"), "--ov-precision", "auto or f32", self.ov_precision)


@dataclass
class Source:
    """One thing to read: a still image, a video file or a webcam."""

    kind: str  # "image" | "video" | "webcam"
    location: str  # what the CSV's `source` column says: the path, or the webcam index
    annotated_name: Path  # where its annotated copy goes, relative to out/annotated


# ---------------------------------------------------------------------------------------------
# Sources


def is_webcam(text: str) -> bool:
    """An all-digit SOURCE is a webcam index unless a file of that name exists."""
    return text.isdigit() and not Path(text).exists()


def resolve_sources(texts: list[str], exclude: Path | None = None) -> list[Source]:
    """Every SOURCE as a list of Sources, or a ConfigError naming the first that does not exist.

    Folders are walked recursively in sorted order; hidden files and anything under `exclude`
    (the output folder, should it sit inside an input folder) are skipped.
    """
    for text in texts:
        if not is_webcam(text) and not Path(text).exists():
            raise ConfigError(f"{text}: no such file or folder")
    namer = _UniqueNames()
    sources: list[Source] = []
    for text in texts:
        if is_webcam(text):
            sources.append(Source("webcam", text, namer.take(Path(f"webcam{text}.mp4"))))
        elif Path(text).is_dir():
            sources.extend(_folder_sources(Path(text), exclude, namer))
        else:
            sources.append(_file_source(Path(text), Path(Path(text).name), namer))
    return sources


def _folder_sources(folder: Path, exclude: Path | None, namer: "_UniqueNames") -> list[Source]:
    top = Path(folder.resolve().name or "root")  # mirrors the folder itself, so two folders cannot collide
    files = [path for path in sorted(folder.rglob("*")) if path.is_file() and _wanted(path, folder, exclude)]
    if not files:
        raise ConfigError(f"{folder}: no files in this folder")
    return [_file_source(path, top / path.relative_to(folder), namer) for path in files]


def _wanted(path: Path, root: Path, exclude: Path | None) -> bool:
    if any(part.startswith(".") for part in path.relative_to(root).parts):
        return False
    return exclude is None or not path.resolve().is_relative_to(exclude)


def _file_source(path: Path, relative: Path, namer: "_UniqueNames") -> Source:
    suffix = path.suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return Source("video", str(path), namer.take(relative.with_suffix(".mp4")))
    if suffix not in WRITABLE_IMAGE_EXTENSIONS:
        relative = relative.with_suffix(relative.suffix + ".png")
    return Source("image", str(path), namer.take(relative))


class _UniqueNames:
    """Annotated file names: a second `a.png` (from another folder or source) becomes `a-2.png`."""

    def __init__(self) -> None:
        self.taken: set[str] = set()

    def take(self, name: Path) -> Path:
        candidate, n = name, 1
        while str(candidate).lower() in self.taken:
            n += 1
            candidate = name.with_name(f"{name.stem}-{n}{name.suffix}")
        self.taken.add(str(candidate).lower())
        return candidate


class UnreadableSource(Exception):
    """A file that cannot be decoded; its message becomes the CSV row's `error`."""


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file at its own depth and channels (colour kept for the annotation)."""
    try:
        raw = np.fromfile(path, dtype=np.uint8)  # + imdecode: imread cannot open non-ASCII paths on Windows
    except OSError as err:
        raise UnreadableSource(f"cannot read file ({err.strerror or err})") from err
    if raw.size == 0:
        raise UnreadableSource("empty file")
    _refuse_huge(raw)
    # ANYDEPTH|ANYCOLOR keeps 16-bit and colour yet, unlike IMREAD_UNCHANGED, applies EXIF rotation.
    with opencv_quiet():
        image = cv2.imdecode(raw, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    if image is None:
        image = _decode_with_pil(path)
    if image is None or image.size == 0:
        raise UnreadableSource("cannot decode image (corrupt file or not an image)")
    return image


def _refuse_huge(raw: np.ndarray) -> None:
    """Refuse, from its header, an image whose decoded pixels would not fit a sensible memory budget."""
    from PIL import Image, UnidentifiedImageError

    bomb_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # we judge the size ourselves
    try:
        with Image.open(io.BytesIO(raw.tobytes())) as img:  # the header only: nothing is decoded
            width, height = img.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return  # not PIL's to judge: OpenCV decides below
    finally:
        Image.MAX_IMAGE_PIXELS = bomb_limit
    if width * height > MAX_IMAGE_PIXELS:
        raise UnreadableSource(f"image too large: {width}x{height} pixels, over {MAX_IMAGE_PIXELS / 1e6:.0f} MP; "
                               "downscale it")


def _decode_with_pil(path: str | Path) -> np.ndarray | None:
    """Formats OpenCV's build cannot read (GIF): first frame, as BGR."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.seek(0)
            return np.asarray(img.convert("RGB"))[..., ::-1].copy()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None


def read_frames(capture: cv2.VideoCapture, every: int, max_frames: int | None) -> Iterator[tuple[int, np.ndarray]]:
    """(frame index, frame) for every `every`-th frame, at most `max_frames` of them."""
    index = analysed = 0
    while max_frames is None or analysed < max_frames:
        wanted = index % every == 0
        # grab() skips decoding the frames --every leaves out.
        ok, frame = capture.read() if wanted else (capture.grab(), None)
        if not ok:
            return
        if wanted:
            analysed += 1
            yield index, frame
        index += 1


# ---------------------------------------------------------------------------------------------
# Output


def default_out_dir(root: Path = Path("artifacts/predict")) -> Path:
    """artifacts/predict/<timestamp>, with -2, -3... when two runs start in the same second."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate, n = root / stamp, 1
    while candidate.exists():
        n += 1
        candidate = root / f"{stamp}-{n}"
    return candidate


def csv_header(class_names: list[str]) -> list[str]:
    return ["source", "frame", "face", "track", "x", "y", "w", "h", "predicted", "confidence", *class_names, "error"]


def annotate(image: np.ndarray, boxes: list[Box], labels: list[str]) -> np.ndarray:
    """A BGR copy of `image` with a box and a label per face ("no face found" when there are none)."""
    canvas = to_bgr(image)
    zoom = max(1, math.ceil(MIN_ANNOTATED_SIDE / min(canvas.shape[:2])))
    if zoom > 1:
        canvas = cv2.resize(canvas, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
    else:
        canvas = canvas.copy()
    font_scale = max(0.4, min(canvas.shape[:2]) / 700)
    thickness = max(1, round(font_scale * 2))
    if not boxes:
        _draw_label(canvas, NO_FACE, (4, 4), (40, 40, 220), font_scale, thickness)
    for box, label in zip(boxes, labels):
        x, y, w, h = (v * zoom for v in box)
        cv2.rectangle(canvas, (x, y), (x + w - 1, y + h - 1), (0, 200, 0), thickness + 1)
        _draw_label(canvas, label, (x, y), (0, 200, 0), font_scale, thickness, above=True)
    return canvas


def _draw_label(canvas, text, corner, color, font_scale, thickness, above: bool = False) -> None:
    """Text on a filled background at `corner`: above the box when it fits, inside it otherwise."""
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
    x, y = corner
    top = y - th - base - 4 if above and y - th - base - 4 >= 0 else y
    cv2.rectangle(canvas, (x, top), (x + tw + 4, top + th + base + 4), color, -1)
    cv2.putText(canvas, text, (x + 2, top + th + 2), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), thickness,
                cv2.LINE_AA)


def save_image(path: Path, image: np.ndarray) -> None:
    ok, encoded = cv2.imencode(path.suffix, image)
    if not ok:
        raise OSError(f"{path}: OpenCV cannot encode {path.suffix}")
    write_bytes(path, encoded.tobytes())


class VideoSink:
    """An annotated video, opened at its first frame, renamed into place when complete."""

    def __init__(self, path: Path, fps: float):
        self.path = path
        self.partial = path.with_name(f".{path.stem}.partial{path.suffix}")
        self.fps = fps if fps and math.isfinite(fps) and fps > 0 else FALLBACK_FPS
        self.writer: cv2.VideoWriter | None = None
        self.failed = False

    def write(self, frame: np.ndarray) -> None:
        if self.writer is None and not self.failed:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            height, width = frame.shape[:2]
            fourcc = cv2.VideoWriter_fourcc(*ANNOTATED_VIDEO_FOURCC)
            self.writer = cv2.VideoWriter(str(self.partial), fourcc, self.fps, (width, height))
            if not self.writer.isOpened():
                self.failed, self.writer = True, None
                console.print(f"warning: cannot write {self.path} (no {ANNOTATED_VIDEO_FOURCC} encoder)",
                              markup=False, highlight=False)
        if self.writer is not None:
            self.writer.write(frame)

    def close(self, complete: bool = True) -> None:
        if self.writer is None:
            return
        self.writer.release()
        self.writer = None
        if complete:
            os.replace(self.partial, self.path)
        else:
            self.partial.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# Batched prediction


@dataclass
class _Frame:
    source: Source
    index: int | None  # frame number in a video or webcam stream; None for a still image
    boxes: list[Box] = field(default_factory=list)
    crops: list[np.ndarray] = field(default_factory=list)
    tracks: list[int] | None = None  # each face's track id (streams only)
    error: str = ""
    image: np.ndarray | None = None  # kept only while waiting, to be annotated
    sink: Callable[[np.ndarray], None] | None = None


class _Classifier:
    """Queues frames, classifies their crops in batches, then writes rows and annotations in order."""

    def __init__(self, predictor: runtime.Predictor, rows: Any, batch_size: int, summary: dict[str, Any],
                 smooth: int = 1):
        self.predictor = predictor
        self.class_names = list(predictor.class_names)
        self.rows = rows
        self.batch_size = batch_size
        self.summary = summary
        self.smoother = Smoother(smooth)
        self.pending: list[_Frame] = []
        self.pending_crops = 0
        self.readable = 0  # frames that decoded, with or without a face
        self.first_error: str | None = None

    def add(self, frame: _Frame) -> None:
        self.pending.append(frame)
        self.pending_crops += len(frame.crops)
        if self.pending_crops >= self.batch_size or len(self.pending) >= MAX_PENDING_FRAMES:
            self.flush()

    def flush(self) -> None:
        self.classify(self.pending)
        self.pending, self.pending_crops = [], 0

    def classify(self, frames: list[_Frame]) -> None:
        crops = [crop for frame in frames for crop in frame.crops]
        probs = self.predictor.predict_proba(np.stack(crops)) if crops else np.zeros((0, len(self.class_names)))
        start = 0
        for frame in frames:
            self._record(frame, probs[start : start + len(frame.crops)])
            start += len(frame.crops)

    def _record(self, frame: _Frame, probs: np.ndarray) -> None:
        where = [frame.source.location, "" if frame.index is None else frame.index]
        blank_probs = [""] * len(self.class_names)
        if frame.error:
            self.summary["errors"] += 1
            self.first_error = self.first_error or f"{frame.source.location}: {frame.error}"
            self.rows.writerow([*where, "", "", "", "", "", "", "", "", *blank_probs, frame.error])
            return
        self.readable += 1
        if not frame.boxes:
            self.summary["no_face"] += 1
            self.rows.writerow([*where, "", "", "", "", "", "", "", "", *blank_probs, NO_FACE])
        labels = []
        tracks = frame.tracks if frame.tracks is not None else [""] * len(frame.boxes)
        for face, (box, track, p) in enumerate(zip(frame.boxes, tracks, probs)):
            if track != "":
                p = self.smoother((frame.source.location, track), p)
            best = int(np.argmax(p))
            name = self.class_names[best]
            self.summary["faces"] += 1
            self.summary["per_class"][name] += 1
            labels.append(f"{name} {p[best]:.0%}" if track == "" else f"#{track} {name} {p[best]:.0%}")
            self.rows.writerow([*where, face, track, *box, name, f"{p[best]:.6f}", *(f"{v:.6f}" for v in p), ""])
        if frame.sink is not None and frame.image is not None:
            frame.sink(annotate(frame.image, frame.boxes, labels))
            self.summary["annotated"] += 1


class _Worker:
    """A daemon thread draining a bounded queue; its first error is raised again in the caller."""

    END = object()

    def __init__(self, name: str, handle: Callable[[Any], None], depth: int):
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.handle = handle
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            item = self.queue.get()
            if item is self.END:
                return
            if self.error is None:
                try:
                    self.handle(item)
                except BaseException as err:  # re-raised in the producer's thread
                    self.error = err

    def put(self, item: Any) -> None:
        self.check()
        self.queue.put(item)

    def close(self) -> None:
        self.queue.put(self.END)
        self.thread.join()
        self.check()

    def check(self) -> None:
        if self.error is not None:
            raise self.error


class _PipelinedClassifier:
    """The classifier in its own thread: frames are classified while the next ones are decoded and
    detected; whatever has queued up meanwhile is classified as one batch (across frames)."""

    def __init__(self, classifier: _Classifier):
        self.classifier = classifier
        self.worker = _Worker("fercomp-classify", self._classify, depth=MAX_PENDING_FRAMES)

    def _classify(self, first: _Frame) -> None:
        frames, crops = [first], len(first.crops)
        while crops < self.classifier.batch_size:
            try:
                more = self.worker.queue.get_nowait()
            except queue.Empty:
                break
            if more is _Worker.END:
                self.worker.queue.put(more)  # seen again by the loop, which stops
                break
            frames.append(more)
            crops += len(more.crops)
        self.classifier.classify(frames)

    @property
    def summary(self) -> dict[str, Any]:
        return self.classifier.summary

    def add(self, frame: _Frame) -> None:
        self.worker.put(frame)

    def close(self) -> None:
        self.worker.close()


# ---------------------------------------------------------------------------------------------
# The command


def predict_sources(config: PredictConfig, progress: bool = True) -> dict[str, Any]:
    """Predict on every source; returns the summary (counts, CSV path, output folder)."""
    config.validate()
    out = Path(config.out) if config.out else default_out_dir()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: a file is in the way; name a folder")
    # Everything that can fail on user input happens before the output folder exists.
    sources = resolve_sources(config.sources, exclude=out.resolve())
    predictor = runtime.load(config.model, backend=config.backend, threads=config.threads,
                             batch_size=config.batch_size, device=config.device, ov_precision=config.ov_precision)
    detector = create_detector(config.detector) if config.detect else None
    if config.threads:
        cv2.setNumThreads(config.threads)
    captures = {s.location: _open_webcam(s.location) for s in sources if s.kind == "webcam"}

    class_names = list(predictor.class_names)
    summary: dict[str, Any] = {
        "model": str(config.model), "backend": predictor.backend,
        "inference_precision": getattr(predictor, "inference_precision", None),
        "detector": detector.name if detector else None, "device": str(getattr(predictor, "device", "cpu")),
        "sources": len(config.sources),
        "files": 0, "frames": 0, "faces": 0, "no_face": 0, "errors": 0, "annotated": 0,
        "per_class": {name: 0 for name in class_names},
        "csv": str(out / CSV_NAME), "out": str(out),
        "annotated_dir": str(out / ANNOTATED_DIR) if config.annotate else None,
        "stream_seconds": 0.0,
    }
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(out / CSV_NAME) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
            rows = csv.writer(fh)
            rows.writerow(csv_header(class_names))
            classifier = _Classifier(predictor, rows, config.batch_size, summary, config.smooth)
            _run_sources(sources, captures, classifier, detector, config, out / ANNOTATED_DIR, progress)
            classifier.flush()
    finally:
        for capture in captures.values():
            capture.release()
    if classifier.readable == 0 and classifier.first_error:
        # Nothing could be read: a user error, not a result; leave nothing behind.
        (out / CSV_NAME).unlink(missing_ok=True)
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise ConfigError(f"nothing could be read: {classifier.first_error}")
    seconds = summary.pop("stream_seconds")
    summary["stream_fps"] = summary["frames"] / seconds if summary["frames"] and seconds > 0 else None
    return summary


def open_capture(location: str | int) -> cv2.VideoCapture:
    with opencv_quiet():
        return cv2.VideoCapture(location)


def _open_webcam(index: str) -> cv2.VideoCapture:
    capture = open_capture(int(index))
    if not capture.isOpened():
        raise ConfigError(f"webcam {index}: cannot open this camera (is it connected and free?)")
    return capture


def _run_sources(sources, captures, classifier: _Classifier, detector: Detector | None, config: PredictConfig,
                 annotated_dir: Path, progress: bool) -> None:
    input_size = tuple(classifier.predictor.spec["input_size"])
    with make_progress(progress, "{task.fields[item]}") as bar:
        overall = bar.add_task("predict", total=len(sources), item="")
        for source in sources:
            bar.update(overall, item=escape(Path(source.location).name or source.location))
            target = annotated_dir / source.annotated_name if config.annotate else None
            if source.kind == "image":
                classifier.add(_image_frame(source, input_size, detector, config, target))
            else:
                capture = captures[source.location] if source.kind == "webcam" else open_capture(source.location)
                _run_stream(source, capture, classifier, _FaceFinder(detector, input_size, config), config, target, bar)
            classifier.summary["files"] += int(source.kind != "webcam")
            bar.advance(overall)


def _image_frame(source: Source, input_size, detector: Detector | None, config: PredictConfig,
                 target: Path | None) -> _Frame:
    try:
        image = read_image(source.location)
    except UnreadableSource as err:
        return _Frame(source, None, error=str(err))
    boxes, crops = find_face_crops(image, input_size, detector, margin=config.margin, level=config.level)
    sink = (lambda img: save_image(target, img)) if target else None
    return _Frame(source, None, boxes, crops, image=image if sink else None, sink=sink)


class _FaceFinder:
    """One stream's frames -> _Frames: its faces found and tracked (`tracking.StreamFaces`), cropped."""

    def __init__(self, detector: Detector | None, input_size, config: PredictConfig):
        self.input_size = input_size
        self.margin = config.margin if config.margin is not None or detector is None else detector.margin
        self.level = config.level
        self.faces = StreamFaces(detector, config.detect_every) if detector is not None else None

    def __call__(self, source: Source, index: int, image: np.ndarray, sink) -> _Frame:
        gray = to_gray(image)
        if self.faces is None:
            boxes, crops = find_face_crops(gray, self.input_size)
            return _Frame(source, index, boxes, crops, image=image if sink else None, sink=sink)
        tracked = self.faces.locate(index, image)
        crops = self.faces.crops(gray, tracked, self.margin, self.input_size, self.level)
        return _Frame(source, index, [b for _, b in tracked], crops, [t for t, _ in tracked],
                      image=image if sink else None, sink=sink)


def _run_stream(source: Source, capture: cv2.VideoCapture, classifier: _Classifier, find: _FaceFinder,
                config: PredictConfig, target: Path | None, bar) -> None:
    """A video file or webcam, frame by frame; its annotated video is kept only if it completes."""
    if not capture.isOpened():
        classifier.add(_Frame(source, None, error="cannot open video (corrupt file or unsupported codec)"))
        return
    sink = VideoSink(target, capture.get(cv2.CAP_PROP_FPS) / config.every) if target else None
    name = escape(Path(source.location).name)
    task = bar.add_task("  frames", total=_expected_frames(capture, source, config), item=name)
    complete = False
    classifier.flush()  # earlier sources' rows come first
    started = time.perf_counter()
    try:
        def advance(seen: int) -> None:
            elapsed = time.perf_counter() - started
            bar.update(task, advance=1, item=f"{name} {seen / elapsed:.0f} fps" if elapsed > 0 else name)

        if config.pipeline:
            seen = _feed_pipelined(source, capture, classifier, find, config, sink, advance)
        else:
            seen = _feed_frames(source, read_frames(capture, config.every, config.max_frames), classifier, find,
                                sink, advance)
            classifier.flush()  # the stream's last frames reach its sink before the file is closed
        if seen == 0:
            classifier.add(_Frame(source, None, error="no frames could be decoded"))
            classifier.flush()
        complete = True
    finally:
        classifier.summary["stream_seconds"] += time.perf_counter() - started
        bar.remove_task(task)
        if source.kind == "video":
            capture.release()
        if sink is not None:
            sink.close(complete)


def _feed_frames(source: Source, frames, classifier, find: _FaceFinder, sink: VideoSink | None,
                 advance: Callable[[int], None]) -> int:
    """Queue the stream's frames; returns how many. Ctrl-C ends a webcam and keeps what it saw."""
    seen = 0
    try:
        for index, frame in frames:
            classifier.add(find(source, index, frame, sink.write if sink else None))
            classifier.summary["frames"] += 1
            seen += 1
            advance(seen)
    except KeyboardInterrupt:
        if source.kind != "webcam":
            raise
        console.print(f"webcam {source.location}: stopped after {seen} frames", highlight=False)
    return seen


def _feed_pipelined(source: Source, capture, classifier: _Classifier, find: _FaceFinder, config: PredictConfig,
                    sink: VideoSink | None, advance: Callable[[int], None]) -> int:
    """Decode in one thread, detect and track in this one, classify and write in a third."""
    decoded: queue.Queue = queue.Queue(maxsize=8)
    stop = threading.Event()

    def offer(item) -> bool:
        """Put unless the consumer has stopped (then the queue may never drain)."""
        while not stop.is_set():
            try:
                decoded.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def decode() -> None:
        try:
            for item in read_frames(capture, config.every, config.max_frames):
                if not offer(item):
                    return
        except BaseException as err:  # handed to the consumer, which raises it
            offer(err)
            return
        offer(None)

    def frames():
        while (item := decoded.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item

    decoder = threading.Thread(target=decode, name="fercomp-decode", daemon=True)
    decoder.start()
    pipelined = _PipelinedClassifier(classifier)
    try:
        seen = _feed_frames(source, frames(), pipelined, find, sink, advance)
    finally:
        stop.set()
        decoder.join()
        pipelined.close()  # the stream's last frames are written before its sink is closed
    return seen


def _expected_frames(capture: cv2.VideoCapture, source: Source, config: PredictConfig) -> int | None:
    """Frames the bar should count to: from the container's frame count, None when unknown (webcam)."""
    count = capture.get(cv2.CAP_PROP_FRAME_COUNT) if source.kind == "video" else 0
    total = math.ceil(count / config.every) if count and count > 0 else None
    if config.max_frames is not None:
        total = config.max_frames if total is None else min(total, config.max_frames)
    return total
