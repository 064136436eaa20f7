"""The model zoo: trained models shipped inside the package, one name away.

A zoo entry is a read-only run folder under `fercomp/zoo/models/<name>/` (manifest, weights-only
`model.pt`, `model.onnx`), listed in `index.json` with its card: recipe, accuracy, latency, data
terms and the sha256 of every file. `zoo:NAME` (or the bare NAME where no file or folder has that
name) resolves to that folder, so every stage that takes a run takes a zoo model the same way, as
every timm call takes `pretrained=True`. Nothing is ever downloaded.

    >>> from fercomp import zoo
    >>> zoo.names(), zoo.default_name()
    >>> zoo.resolve("zoo:tiny")          # -> Path of the packaged run folder, files verified
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import ModelError
from ..io import sha256_file

PREFIX = "zoo:"
ZOO_DIR = Path(__file__).resolve().parent
MODELS_DIR = ZOO_DIR / "models"
INDEX_FILE = ZOO_DIR / "index.json"
INDEX_FORMAT = "fercomp-zoo/1"


@lru_cache(maxsize=1)
def index() -> dict[str, Any]:
    """The parsed `index.json` ({"format", "default", "models": {name: card}}); empty when none ships."""
    if not INDEX_FILE.is_file():
        return {"format": INDEX_FORMAT, "default": None, "models": {}}
    try:
        data = json.loads(INDEX_FILE.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{INDEX_FILE}: corrupt zoo index ({exc.__class__.__name__}); reinstall fercomp") from None
    if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT or not isinstance(data.get("models"), dict):
        raise ModelError(f"{INDEX_FILE}: not a fercomp zoo index (expected format {INDEX_FORMAT}); reinstall fercomp")
    return data


def names() -> list[str]:
    return list(index()["models"])


def default_name() -> str:
    """The zoo model `predict` uses without --model."""
    name = index().get("default")
    if not name:
        raise ModelError("this fercomp install ships no zoo model; pass --model RUN_FOLDER_OR_FILE")
    return name


def card(name: str) -> dict[str, Any]:
    """The registry entry of a zoo model: what it is, how it was trained, what it scores."""
    models = index()["models"]
    if name not in models:
        available = ", ".join(f"{PREFIX}{n}" for n in models) or "none in this install"
        raise ModelError(f"unknown zoo model {PREFIX}{name} (available: {available})")
    return models[name]


def label_source(entry: dict[str, Any]) -> str:
    """Whose labels a card's accuracy is measured against: "FER2013" or "FER+" (majority vote)."""
    return "FER+" if entry.get("data", {}).get("labels", "fer2013").startswith("ferplus") else "FER2013"


def labels_of(entry: dict[str, Any]) -> str:
    """What a card's accuracy is measured against, with the number of classes: "FER2013 (7)", "FER+ (8)"."""
    return f"{label_source(entry)} ({len(entry['class_names'])})"


def zoo_name(ref: str | Path) -> str | None:
    """The zoo model a reference names: `zoo:NAME`, or a bare NAME that is no file or folder here."""
    text = str(ref)
    if text.startswith(PREFIX):
        return text[len(PREFIX):]
    if isinstance(ref, str) and "/" not in text and not Path(text).exists() and text in index()["models"]:
        return text
    return None


def resolve(ref: str | Path) -> Path:
    """The folder a model reference means: a zoo model's packaged (and verified) run folder, or `ref` itself."""
    name = zoo_name(ref)
    if name is None:
        path = Path(ref).expanduser()  # the shell leaves `~` alone after a comma: --teacher ~/a,~/b
        if is_zoo_folder(path) and (shipped := name_of_folder(path)):  # a path into the zoo: checked all the same
            verify(shipped)
        return path
    entry = card(name)
    folder = MODELS_DIR / entry["folder"]
    verify(name)
    return folder


@lru_cache(maxsize=None)
def verify(name: str) -> None:
    """Every file of the entry exists and has its recorded sha256 (once per process)."""
    entry = card(name)
    folder = MODELS_DIR / entry["folder"]
    for file, digest in entry["files"].items():
        path = folder / file
        if not path.is_file():
            raise ModelError(f"{PREFIX}{name}: {path} is missing; reinstall fercomp")
        if sha256_file(path) != digest:
            raise ModelError(f"{PREFIX}{name}: {path} is corrupted (sha256 differs from the zoo index); "
                             "reinstall fercomp")


def forget() -> None:
    """Drop the cached index and verifications (after the index was rewritten, e.g. by benchmarks/zoo.py)."""
    index.cache_clear()
    verify.cache_clear()


def is_zoo_folder(path: str | Path) -> bool:
    """Whether a folder is a packaged zoo model (read-only: stages write their results elsewhere)."""
    try:
        return Path(path).resolve().is_relative_to(MODELS_DIR)
    except OSError:
        return False


def name_of_folder(path: str | Path) -> str | None:
    """The zoo name of a packaged run folder or of a file in one (its reference in a child's lineage)."""
    folder = Path(path).resolve()
    folder = folder.parent if folder.is_file() else folder
    for name, entry in index()["models"].items():
        if (MODELS_DIR / entry["folder"]).resolve() == folder:
            return name
    return None
