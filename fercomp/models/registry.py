"""The model registry: one entry point, `create(name, num_classes, **kw)`, in the spirit of timm.

Builders register themselves with `@register_model`. Every model `create` returns takes the same
input, a [B, 1, 48, 48] float tensor of normalised grayscale faces, and carries:

- `input_size = (48, 48)` and `in_chans = 1`: what the data path and exporters must feed it;
- `default_cfg`: recommended training defaults (optimizer, lr, weight_decay, batch_size, epochs,
  augment, schedule, label_smoothing, warmup_epochs) used for every flag the user leaves unset;
- `model_name` and `model_kwargs`: what `create` needs to rebuild the architecture from a
  weights-only checkpoint (loading options such as `pretrained` and `weights` are left out,
  because the checkpoint brings the weights).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..errors import ConfigError, ModelError

INPUT_SIZE: tuple[int, int] = (48, 48)
IN_CHANS = 1

# Options that say where weights come from, not what the architecture is.
WEIGHT_LOADING_OPTIONS = ("pretrained", "weights")

# Training defaults every model starts from; a registration overrides what differs for it.
# Vocabulary shared with fercomp.train.config: optimizer in {sgd, adamw},
# schedule in {cosine, step, plateau, constant}, augment is a fercomp.data preset name.
BASE_TRAIN_CFG: dict[str, Any] = {
    "optimizer": "sgd",
    "lr": 0.01,
    "weight_decay": 5e-4,
    "batch_size": 64,
    "epochs": 30,
    "augment": "geometric",
    "schedule": "cosine",
    "label_smoothing": 0.0,
    "warmup_epochs": 0,
}

ModelBuilder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: ModelBuilder
    description: str
    family: str
    default_cfg: dict[str, Any] = field(default_factory=dict)

    def options(self) -> list[str]:
        """Keyword options the builder accepts besides num_classes."""
        params = inspect.signature(self.builder).parameters
        return [p for p in params if p != "num_classes"]


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str, *, description: str, family: str, default_cfg: dict[str, Any] | None = None
) -> Callable[[ModelBuilder], ModelBuilder]:
    """Register a builder `(num_classes=7, **options) -> nn.Module` under `name`."""

    def decorate(builder: ModelBuilder) -> ModelBuilder:
        if name in _REGISTRY:
            raise ValueError(f"model '{name}' is registered twice")
        params = inspect.signature(builder).parameters.values()
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            raise ValueError(f"builder of '{name}' must list its options explicitly, not take **kwargs")
        cfg = {**BASE_TRAIN_CFG, **(default_cfg or {})}
        unknown = set(cfg) - set(BASE_TRAIN_CFG)
        if unknown:
            raise ValueError(f"default_cfg of '{name}' has unknown keys {sorted(unknown)}")
        _REGISTRY[name] = ModelEntry(name, builder, description, family, cfg)
        return builder

    return decorate


def _entry(name: str) -> ModelEntry:
    if name not in _REGISTRY:
        raise ModelError(f"unknown model '{name}'; choose one of: {', '.join(list_models())}")
    return _REGISTRY[name]


def list_models(family: str | None = None) -> list[str]:
    """Registered model names, sorted; only those of `family` when given."""
    return sorted(n for n, e in _REGISTRY.items() if family is None or e.family == family)


def model_description(name: str) -> str:
    return _entry(name).description


def model_family(name: str) -> str:
    return _entry(name).family


def model_options(name: str) -> list[str]:
    """The keyword options `create(name, ...)` accepts besides num_classes."""
    return _entry(name).options()


def default_cfg(name: str) -> dict[str, Any]:
    """Recommended training defaults of a model, without building it."""
    return dict(_entry(name).default_cfg)


def create(name: str, num_classes: int = 7, **kwargs: Any) -> nn.Module:
    """Build a registered model; unknown names raise ModelError, unknown or bad options ConfigError."""
    entry = _entry(name)
    accepted = entry.options()
    for option in kwargs:
        if option not in accepted:
            raise ConfigError(
                f"model '{name}' has no option '{option}'; its options are: {', '.join(accepted) or 'none'}"
            )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"num_classes must be an integer >= 2, got {num_classes!r}")

    model = entry.builder(num_classes=num_classes, **kwargs)
    model.input_size = INPUT_SIZE
    model.in_chans = IN_CHANS
    model.num_classes = num_classes
    model.default_cfg = dict(entry.default_cfg)
    model.model_name = name
    model.model_kwargs = {
        "num_classes": num_classes,
        **{k: v for k, v in kwargs.items() if k not in WEIGHT_LOADING_OPTIONS},
    }
    return model
