"""Distillation targets computed once: a teacher ensemble's logits on fixed augmented views.

`train --teacher A,B --teacher-views V` augments the training set V times, each view with the
run's own augmentation preset and a generator seeded by (seed, view), so any view can be rebuilt
bit-identically at any epoch instead of being stored (8 views of FER2013 would be 2 GB as float).
Every teacher sees every view and its mirror image; the logits are averaged over teachers and
mirrors (flip TTA) and kept as one [V, N, classes] tensor: 6.4 MB for 8 views of FER2013. Student
epoch e trains on view (e - 1) mod V against those logits, so an epoch costs what plain training
costs, whatever the teachers' size.

The logits are cached under the user's cache folder, keyed by the teachers' weights, the training
images, the augmentation, the seed and the number of views, so a second student of the same
teachers (tiny, then compact) skips the teacher pass. A resumed run reads the logits it started
with, found by the key its manifest recorded, even when a teacher's name now points at other weights
(a fercomp update may ship another zoo:compact); it rebuilds them only from the same teachers.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .. import zoo
from ..data import Augmenter
from ..errors import RunError
from ..io import save_torch
from ..runs import Run, load_state_file
from ..ui import make_progress

CACHE_FORMAT = "fercomp-teacher-logits/1"
CHUNK = 512  # images augmented or scored at a time: the chunking is part of what makes a view reproducible


def cache_dir() -> Path:
    """Where teacher logits are kept between runs: $FERCOMP_CACHE_DIR, else ~/.cache/fercomp."""
    root = os.environ.get("FERCOMP_CACHE_DIR") or Path.home() / ".cache" / "fercomp"
    return Path(root) / "teacher-logits"


def view_generator(seed: int, view: int) -> torch.Generator:
    return torch.Generator().manual_seed(1_000_003 * (seed + 1) + view)


@torch.no_grad()
def augmented_view(images: torch.Tensor, augment: Augmenter, seed: int, view: int) -> torch.Tensor:
    """View `view` of uint8 images [N,1,H,W]: float [0, 1] images, augmented in fixed chunks."""
    generator = view_generator(seed, view)
    return torch.cat([augment(images[i : i + CHUNK].float().div_(255.0), generator)
                      for i in range(0, len(images), CHUNK)])


@dataclass
class Teacher:
    ref: str
    model: torch.nn.Module
    spec: dict[str, Any]

    @cached_property
    def weights_sha256(self) -> str:
        """Its weights' digest, hashed once: the cache key and the run's record both need it."""
        return weights_digest(self.model)

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Logits for float [0, 1] images [B,1,H,W], averaged with those of the mirror images."""
        size = tuple(self.spec.get("input_size") or images.shape[-2:])
        if tuple(images.shape[-2:]) != size:
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        norm = self.spec["normalization"]
        x = (images - norm["mean"]) / norm["std"]
        if int(self.spec.get("in_chans", 1)) == 3:
            x = x.expand(-1, 3, -1, -1)
        # NHWC: 1.3x (SE-ResNet) to 3.4x (separable convolutions) faster on this CPU than NCHW
        x = x.contiguous(memory_format=torch.channels_last)
        flipped = x.flip(-1).contiguous(memory_format=torch.channels_last)
        return (self.model(x) + self.model(flipped)) / 2


def ensemble_logits(teachers: Sequence[Teacher], images: torch.Tensor) -> torch.Tensor:
    """Mean logits of every teacher with flip TTA over float [0, 1] images, scored in chunks."""
    out = []
    for i in range(0, len(images), CHUNK):
        batch = images[i : i + CHUNK]
        out.append(torch.stack([t.logits(batch) for t in teachers]).mean(0).float())
    return torch.cat(out)


def weights_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def cache_key(teachers: Sequence[Teacher], images: torch.Tensor, augment: str, seed: int, views: int) -> str:
    what = {
        "format": CACHE_FORMAT,
        "teachers": [t.weights_sha256 for t in teachers],
        "images": hashlib.sha256(images.cpu().numpy().tobytes()).hexdigest(),
        "augment": augment, "seed": seed, "views": views, "chunk": CHUNK,
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


@dataclass
class TeacherTargets:
    """The cached logits [V, N, C] and what rebuilds the view each epoch trains on."""

    logits: torch.Tensor
    augment: Augmenter
    seed: int
    record: dict[str, Any]  # for the run's manifest

    @property
    def views(self) -> int:
        return self.logits.shape[0]

    def view_for_epoch(self, images: torch.Tensor, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(augmented images [N,1,H,W], teacher logits [N,C]) for 1-based `epoch`."""
        view = (epoch - 1) % self.views
        return augmented_view(images, self.augment, self.seed, view), self.logits[view]


def teacher_targets(
    teachers: Sequence[Teacher], images: torch.Tensor, augment: str, seed: int, views: int,
    val: tuple[torch.Tensor, np.ndarray] | None = None, progress: bool = True,
    started: dict[str, Any] | None = None,
) -> TeacherTargets:
    """Load the cached logits of these teachers on these views, or compute and cache them.

    images: the training set as uint8 [N,1,H,W] on the training device. val: (uint8 images, labels)
    to record the ensemble's own validation accuracy with flip TTA, the figure the student chases.
    started: a resumed run's recorded distillation; its logits are used as they were, and computing
    them again from teachers that changed since is refused (RunError).
    """
    augmenter = Augmenter(augment)
    for teacher in teachers:
        teacher.model.to(memory_format=torch.channels_last)
    if started and started.get("cache_key"):
        logits = read_cache(started["cache_key"], images.device)
        if logits is not None:
            return TeacherTargets(logits, augmenter, seed, {**started, "reused_cache": True})
    key = cache_key(teachers, images, augment, seed, views)
    if started and started.get("cache_key") not in (None, key):
        raise RunError(f"{changed(teachers)}, and the outputs it learnt from ({cache_path(started['cache_key'])}) "
                       "are gone: restore those or start a new run")
    path = cache_path(key)
    logits = read_cache(key, images.device)
    cached = logits is not None
    if logits is None:
        # Each finished view is saved, so an interrupted teacher pass (an hour for big teachers on a CPU)
        # continues where it stopped.
        partial = path.with_suffix(".partial.pt")
        done = read_cache(key, torch.device("cpu"), partial)
        per_view = list(done.unbind(0)) if done is not None else []
        bar = make_progress(progress)
        with bar:
            task = bar.add_task(f"teacher logits ({len(teachers)} model(s) x {views} views, flip TTA)", total=views,
                                completed=len(per_view))
            for view in range(len(per_view), views):
                per_view.append(ensemble_logits(teachers, augmented_view(images, augmenter, seed, view)).cpu())
                if view + 1 < views:
                    save_torch(partial, {"format": CACHE_FORMAT, "key": key, "logits": torch.stack(per_view)})
                bar.advance(task)
        logits = torch.stack(per_view)
        save_torch(path, {"format": CACHE_FORMAT, "key": key, "logits": logits})
        partial.unlink(missing_ok=True)
        logits = logits.to(images.device)
    record = {"teachers": [t.ref for t in teachers], **teacher_identity(teachers), "views": views, "tta": "flip",
              "cache": str(path), "cache_key": key, "reused_cache": cached}
    if val is not None and len(val[1]):
        val_logits = ensemble_logits(teachers, val[0].float().div(255.0))
        record["teacher_val_acc"] = float((val_logits.argmax(1).cpu().numpy() == val[1]).mean())
    return TeacherTargets(logits, augmenter, seed, record)


def cache_path(key: str) -> Path:
    return cache_dir() / f"{key[:24]}.pt"


def read_cache(key: str, device: torch.device, path: Path | None = None) -> torch.Tensor | None:
    """The cached logits stored under `key` (at `path`, default its cache file), or None (absent,
    damaged or another key's)."""
    path = path or cache_path(key)
    if not path.exists():
        return None
    try:
        saved = load_state_file(path, CACHE_FORMAT, "cached teacher logits")
    except RunError:  # a damaged cache is only a cache: compute it again
        return None
    return saved["logits"].float().to(device) if saved.get("key") == key else None


def teacher_identity(teachers: Sequence[Teacher]) -> dict[str, Any]:
    """What a run records of its teachers: their weights' digests and, where known, each one's
    PrivateTest accuracy and recipe as they were when it taught (a zoo name may later point at a
    newer model, a run folder may be gone by the time the student ships)."""
    cards = {t.ref: card for t in teachers if (card := teacher_card(t.ref))}
    return {"weights_sha256": [t.weights_sha256 for t in teachers], **({"teacher_cards": cards} if cards else {})}


def teacher_card(ref: str) -> dict[str, Any]:
    """A teacher's test accuracy and recipe: a zoo model's card, or a run folder's own record."""
    name = zoo.zoo_name(ref)
    if name is not None:
        card = zoo.card(name)
        return {"test_acc": card["test"]["accuracy"], "recipe": card["recipe"]}
    if not Path(ref).is_dir():
        return {}  # a bare checkpoint file: its digest is all there is
    run = Run.load(ref)
    test_acc = (run.manifest.get("metrics") or {}).get("test_acc")
    return {**({"test_acc": test_acc} if test_acc is not None else {}), "recipe": run.commands()}


def require_same_teachers(started: dict[str, Any], teachers: Sequence[Teacher]) -> None:
    """A resumed run distilling from live teachers must see the teachers it started with."""
    recorded = started.get("weights_sha256")
    if recorded and recorded != [t.weights_sha256 for t in teachers]:
        raise RunError(f"{changed(teachers)} (a zoo name may point at a newer model): start a new run")


def changed(teachers: Sequence[Teacher]) -> str:
    return f"its teachers {', '.join(t.ref for t in teachers)} now have other weights than when it started"
