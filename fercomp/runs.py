"""Run folders: the single currency of the pipeline.

A run folder holds `manifest.json` (what the run is: stage, parent, model spec, data, config,
metrics, versions) and `model.pt` (a weights-only checkpoint). Every stage reads a run and
writes a new one; lineage lives in the `parent` field of the manifests.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shutil
from contextlib import contextmanager
import shlex
import sys
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from . import __version__, runlock, zoo
from .errors import RunError
from .io import save_torch, sha256_file, write_json

MANIFEST = "manifest.json"
MODEL_FILE = "model.pt"
RESUME_FILE = "last.pt"
ONNX_FILE = "model.onnx"
CHECKPOINT_FORMAT = "fercomp-model/1"
MANIFEST_SCHEMA = 1

# Construction kwargs that only matter when first building a model (the weights are in model.pt).
_BUILD_ONLY_KWARGS = ("pretrained", "weights", "freeze")

# Normalisation applied to uint8 pixels before the network: (x / 255 - mean) / std.
DEFAULT_NORMALIZATION = {"mean": 0.5, "std": 0.25}


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def invoking_command() -> str:
    """The command line that created a run, with the fercomp entry point shown as `fercomp`."""
    argv = list(sys.argv)
    if argv and (argv[0].endswith(("cli.py", "/fercomp")) or argv[0] == "fercomp"):
        argv[0] = "fercomp"
    return shlex.join(argv)


def library_versions() -> dict[str, str]:
    import numpy
    import torchvision

    return {
        "fercomp": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
    }


def model_spec(
    name: str,
    kwargs: dict[str, Any],
    class_names: list[str] | tuple[str, ...],
    model: nn.Module,
    normalization: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Everything needed to rebuild a model from the registry and preprocess its input."""
    return {
        "name": name,
        "kwargs": {k: v for k, v in kwargs.items() if k not in _BUILD_ONLY_KWARGS},
        "num_classes": len(class_names),
        "class_names": list(class_names),
        "input_size": list(getattr(model, "input_size", (48, 48))),
        "in_chans": int(getattr(model, "in_chans", 1)),
        "normalization": dict(normalization or DEFAULT_NORMALIZATION),
    }


def save_checkpoint(path: str | Path, model: nn.Module, spec: dict[str, Any]) -> None:
    """Write a weights-only checkpoint: tensors plus a plain-data spec, never pickled code."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    save_torch(path, {"format": CHECKPOINT_FORMAT, "spec": spec, "state_dict": state})


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of a checkpoint (layer widths follow the saved tensors, so pruned models load)."""
    from .models import create, fit_to_state_dict
    from .models.ensemble import ENSEMBLE, build_ensemble

    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path}: no such checkpoint")
    ckpt = load_state_file(path, CHECKPOINT_FORMAT, "fercomp checkpoint")
    spec = ckpt["spec"]
    if spec["name"] == ENSEMBLE:  # members are rebuilt one by one, each to its own (maybe pruned) widths
        return build_ensemble(spec["kwargs"], ckpt["state_dict"]), spec
    model = create(spec["name"], num_classes=spec["num_classes"], **spec["kwargs"])
    fit_to_state_dict(model, ckpt["state_dict"])
    model.eval()
    return model, spec


def load_state_file(path: str | Path, fmt: str, what: str) -> dict[str, Any]:
    """A weights-only torch file whose "format" field is `fmt`, or a RunError naming the file."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or foreign file: say which file
        raise RunError(f"{path}: unreadable {what} ({exc.__class__.__name__})") from exc
    if not isinstance(state, dict) or state.get("format") != fmt:
        raise RunError(f"{path}: not a {what} (expected format {fmt})")
    return state


class Run:
    """A run folder on disk and its manifest."""

    def __init__(self, path: str | Path, manifest: dict[str, Any]):
        self.path = Path(path)
        self.manifest = manifest

    # -- creating and opening -------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, stage: str, parent: "Run | None" = None, **fields: Any) -> "Run":
        path = Path(path)
        if (path / MANIFEST).exists() and not _stopped_before_first_epoch(path):
            raise RunError(f"{path}: a run already exists here; pass --resume {path} or choose another --out")
        path.mkdir(parents=True, exist_ok=True)
        runlock.acquire(path)
        manifest = {
            "schema": MANIFEST_SCHEMA,
            "name": path.name,
            "stage": stage,
            "parent": parent.ref_from(path) if parent else None,
            "parent_abs": str(parent.path.resolve()) if parent and not parent.is_zoo else None,
            **(zoo_parent_pin(parent) if parent else {}),
            "status": "running",
            "created": now_iso(),
            "updated": now_iso(),
            "versions": library_versions(),
            "command": invoking_command(),
            **fields,
        }
        run = cls(path, manifest)
        run.save()
        return run

    @classmethod
    def load(cls, path: str | Path) -> "Run":
        import json

        path = zoo.resolve(path)
        if path.is_file() and path.name == MANIFEST:
            path = path.parent
        manifest_path = path / MANIFEST
        if not path.exists():
            raise RunError(f"{path}: no such run folder")
        if not manifest_path.is_file():
            raise RunError(f"{path}: not a run folder (no {MANIFEST})")
        return cls(path, read_manifest(manifest_path))

    # -- manifest -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def stage(self) -> str:
        return self.manifest["stage"]

    @property
    def is_zoo(self) -> bool:
        """A packaged zoo model: read-only, referred to as zoo:NAME."""
        return zoo.is_zoo_folder(self.path)

    @property
    def ref(self) -> str:
        """How other runs refer to this one: zoo:NAME for a zoo model, else the absolute path."""
        name = zoo.name_of_folder(self.path) if self.is_zoo else None
        return f"{zoo.PREFIX}{name}" if name else str(self.path.resolve())

    @property
    def home(self) -> Path:
        """Where runs derived from this one go by default: beside it, or artifacts/ for a zoo model."""
        return Path("artifacts") if self.is_zoo else self.path.parent

    def ref_from(self, folder: str | Path) -> str:
        """How a run in `folder` records this one as its parent: zoo:NAME, or a path relative to
        that folder, so a tree of runs moved or copied together keeps its lineage."""
        if self.is_zoo:
            return self.ref
        return os.path.relpath(self.path.resolve(), Path(folder).resolve())

    @property
    def parent(self) -> "Run | None":
        """The parent run: its recorded path relative to this run, else the absolute path it had."""
        parent = self.manifest.get("parent")
        if not parent:
            return None
        if parent.startswith(zoo.PREFIX):
            return self._pinned_zoo_parent(parent)
        if Path(parent).is_absolute():
            return Run.load(parent)
        relative = Path(os.path.normpath(self.path / parent))
        if (relative / MANIFEST).is_file() or not self.manifest.get("parent_abs"):
            return Run.load(relative)
        return Run.load(self.manifest["parent_abs"])  # this run moved without its parent

    def _pinned_zoo_parent(self, ref: str) -> "Run":
        """A zoo name points at whatever the installed fercomp ships: refuse a parent whose files are
        not the ones this run was made from (an INT8 copy checked against a newer float model)."""
        parent = Run.load(ref)
        pinned = self.manifest.get("parent_files")
        if pinned is not None and pinned != parent.manifest.get("files"):
            raise RunError(f"{self.path}: it was made from an earlier {ref}; the installed zoo ships another "
                           f"model under that name, so redo this run from {ref}")
        return parent

    def lineage(self) -> list["Run"]:
        """This run and its ancestors, root first."""
        chain, run, seen = [], self, set()
        while run is not None:
            key = run.path.resolve()
            if key in seen:
                raise RunError(f"{self.path}: its lineage loops back to {run.path} (a manifest's parent points "
                               "at a descendant); fix the parent field")
            seen.add(key)
            chain.append(run)
            run = run.parent
        return chain[::-1]

    def commands(self) -> list[str]:
        """The commands that made this run, its lineage's root first (its recipe)."""
        return [r.manifest["command"] for r in self.lineage() if r.manifest.get("command")]

    def require_resumable(self) -> "Run":
        """An unfinished run with a resume checkpoint (what every `--resume` needs)."""
        if self.manifest.get("status") == "complete":
            raise RunError(f"{self.path}: this run already finished; nothing to resume")
        if not (self.path / RESUME_FILE).exists():
            raise RunError(f"{self.path}: no {RESUME_FILE} to resume from (the run stopped before its first epoch ended)")
        return self

    def require_complete(self) -> "Run":
        """A parent must be finished: a running or interrupted run's model.pt can still change."""
        status = self.manifest.get("status")
        if status is None:
            raise RunError(f"{self.path / MANIFEST}: records no status, so fercomp cannot tell whether the run "
                           "finished (not written by fercomp, or edited); train it again")
        if status != "complete":
            raise RunError(f"{self.path}: this run is {status}; finish it (fercomp train --resume {self.path}) first")
        return self

    def update(self, **fields: Any) -> None:
        """Set manifest fields: read, changed and written under the run's lock, so no update is lost."""
        self.lock()
        manifest_path = self.path / MANIFEST
        if manifest_path.is_file():
            self.manifest = read_manifest(manifest_path)
        self.manifest.update(fields)
        self.save()

    def save(self) -> None:
        self.lock()
        self.manifest["updated"] = now_iso()
        write_json(self.path / MANIFEST, self.manifest)

    def lock(self) -> "Run":
        """Become the run's one writer (RunError naming the holder's pid if another process is)."""
        if self.is_zoo:
            raise RunError(f"{self.ref} is a packaged zoo model and read-only; its results go to a new run folder")
        runlock.acquire(self.path)
        return self

    def unlock(self) -> None:
        runlock.release(self.path)

    # -- weights --------------------------------------------------------------------------
    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    def save_model(self, model: nn.Module, spec: dict[str, Any]) -> None:
        save_checkpoint(self.model_path, model, spec)
        files = dict(self.manifest.get("files", {}))
        files[MODEL_FILE] = sha256_file(self.model_path)
        self.update(model=spec, files=files)

    def load_model(self) -> tuple[nn.Module, dict[str, Any]]:
        if not self.model_path.is_file():
            raise RunError(f"{self.path}: this run holds no model ({MODEL_FILE} missing)")
        return load_checkpoint(self.model_path)


def read_manifest(path: Path) -> dict[str, Any]:
    import json

    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise RunError(f"{path}: corrupt manifest (not UTF-8 text at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise RunError(f"{path}: corrupt manifest ({exc.msg} at line {exc.lineno})") from None
    except OSError as exc:
        raise RunError(f"{path}: unreadable manifest ({exc.strerror})") from None
    if not isinstance(manifest, dict):
        raise RunError(f"{path}: corrupt manifest (not a JSON object)")
    return manifest


def _stopped_before_first_epoch(path: Path) -> bool:
    """A run whose process died before its first epoch ended: nothing to resume, so it may start anew."""
    try:
        manifest = read_manifest(path / MANIFEST)
    except RunError:
        return False
    return (manifest.get("status") in ("running", "interrupted") and not (path / RESUME_FILE).exists()
            and not (path / MODEL_FILE).exists() and not runlock.holds(path) and not runlock.is_locked_elsewhere(path))


def zoo_parent_pin(parent: Run) -> dict[str, Any]:
    """What a run made from a zoo model records of it: its files, which `Run.parent` checks later."""
    return {"parent_files": parent.manifest.get("files")} if parent.is_zoo else {}


def writable_copy(run: Run, dest: str | Path | None = None) -> Run:
    """A run folder a stage may write into: `run` itself, or for a read-only zoo model a copy
    (default artifacts/<name>; an earlier copy of the same weights is reused)."""
    if not run.is_zoo:
        return run
    dest = Path(dest) if dest else run.home / run.name
    if (dest / MANIFEST).is_file():
        copy = Run.load(dest)
        # the same weights: the files as copied (a stage such as export may have rewritten some since)
        copied = copy.manifest.get("copied_files", copy.manifest.get("files"))
        if copy.manifest.get("copied_from") == run.ref and copied == run.manifest.get("files"):
            return copy
        raise RunError(f"{dest}: another run is already there; pass --out to copy {run.ref} elsewhere")
    dest.mkdir(parents=True, exist_ok=True)
    for file in run.path.iterdir():
        if file.is_file() and file.name != MANIFEST:
            shutil.copy2(file, dest / file.name)
    parent = run.manifest.get("parent") or ""  # inside the zoo a parent ships beside its child; a copy leaves it
    pin = zoo_parent_pin(Run.load(parent)) if parent.startswith(zoo.PREFIX) else {}
    copy = Run(dest, {**run.manifest, **pin, "name": dest.name, "copied_from": run.ref,
                      "copied_files": run.manifest.get("files"), "created": now_iso()})
    copy.save()
    return copy


@contextmanager
def removed_on_failure(run: Run) -> Iterator[Run]:
    """Delete a stage's new run folder if the stage fails before it can be resumed (no last.pt)."""
    try:
        yield run
    except BaseException:
        if not (run.path / RESUME_FILE).exists():
            shutil.rmtree(run.path, ignore_errors=True)
        raise


# -- lineage queries (what a run, or its ancestors, recorded) ---------------------------------


def is_2to4_run(run: "Run") -> bool:
    """Was this run (or, for an INT8 run, its float parent) pruned to the 2:4 pattern?"""
    for r in (run, run.parent if run.stage == "quantize" else None):
        prune = (r.manifest.get("prune") or {}) if r else {}
        if prune.get("pattern") == "2:4" or prune.get("method") == "semi-structured 2:4":
            return True
    return False


def recorded_sparsity(run: "Run") -> float | None:
    """Fraction of zero weights recorded by the nearest unstructured / 2:4 prune in the run's lineage."""
    for r in reversed(run.lineage()):
        prune = r.manifest.get("prune") or {}
        value = prune.get("sparsity_after_finetune", prune.get("sparsity"))
        if value is not None:
            return value
    return None
