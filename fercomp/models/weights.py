"""Finding and reading weights files: torchvision's local ImageNet cache or a user's file. Never downloads."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelError


def torchvision_cache_dir() -> Path:
    """Where torchvision keeps downloaded checkpoints: <torch.hub.get_dir()>/checkpoints."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _file_name(weights: Enum) -> str:
    return weights.url.rsplit("/", 1)[-1]


def imagenet_checkpoint(model_name: str, weights_enum: type[Enum]) -> Path:
    """The cached ImageNet checkpoint of a torchvision model (DEFAULT first, then the other
    IMAGENET1K_V* files), or a ModelError saying which file to put where."""
    default = weights_enum.DEFAULT
    candidates = [default] + [w for w in weights_enum if w.name.startswith("IMAGENET1K_V") and w is not default]
    cache = torchvision_cache_dir()
    for weights in candidates:
        path = cache / _file_name(weights)
        if path.is_file():
            return path
    wanted = cache / _file_name(default)
    raise ModelError(
        f"pretrained=True for '{model_name}' needs ImageNet weights in torchvision's cache, and {wanted} "
        f"is missing: copy {_file_name(default)} (from {default.url}) there, or pass weights=FILE"
    )


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a weights-only state dict (also accepted: one wrapped as {'state_dict': ...} or {'model': ...})."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file {path} not found; pass weights=FILE with an existing .pt/.pth state dict")
    try:
        loaded: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors all mean the same to the user
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"weights file {path} is not a readable weights-only state dict ({first_line})") from exc
    for wrapper_key in ("state_dict", "model"):
        if isinstance(loaded, dict) and isinstance(loaded.get(wrapper_key), dict):
            loaded = loaded[wrapper_key]
            break
    if not isinstance(loaded, dict) or not loaded or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ModelError(f"weights file {path} does not hold a state dict (a mapping of names to tensors)")
    return loaded
