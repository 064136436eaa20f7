"""The data a run was trained on: its recorded source, labels, class map and seed (or its ancestor's).

Every stage that measures a run (evaluate, prune, quantize, export's parity, bench, deploy) loads
its data through here. It reads the manifests it is handed and imports no stage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .. import zoo
from ..errors import ConfigError
from ..io import sha256_file
from .dataset import FerData
from .sources import load_data


def training_config(run) -> dict[str, Any]:
    """The data settings of a run: its own training config, or the nearest ancestor's."""
    trainer = _trainer(run)
    return trainer.manifest["config"] if trainer is not None else {}


def _trainer(run):
    """The run itself or its nearest ancestor that trained (whose config names the data)."""
    for ancestor in reversed(run.lineage()):
        if "config" in ancestor.manifest:
            return ancestor
    return None


def _check_zoo_data(trainer, recorded: str) -> None:
    """A zoo model names its data file without folders, so the file found here must be the one it
    was trained and scored on: its sha256 is on the model's card."""
    name = zoo.name_of_folder(trainer.path) if trainer.is_zoo else None
    expected = zoo.card(name).get("data", {}).get("sha256") if name else None
    if expected and sha256_file(recorded) != expected:
        raise ConfigError(f"{Path(recorded).resolve()}: not the {Path(recorded).name} that {zoo.PREFIX}{name} was "
                          f"trained on (sha256 differs from its card); pass --data PATH/TO/{Path(recorded).name}")


def data_for_run(run, source: str | None) -> FerData:
    """The run's own data source (same labels, class map and seed), or another one the user names.

    Stages that did not train (PTQ, pruning without fine-tuning) use their nearest ancestor's
    data; a model with no known data needs `--data`, never a silent fallback to synthetic faces.
    """
    trainer = _trainer(run) if run is not None else None  # one lineage walk: the config and the zoo check
    cfg = trainer.manifest["config"] if trainer is not None else {}
    if source is None and not cfg:
        raise ConfigError("this model does not record its training data; pass --data SOURCE")
    recorded = cfg.get("data")
    if source is None and recorded and recorded != "synthetic" and not Path(recorded).exists():
        # e.g. a zoo model, whose manifest names its data file without this machine's folders
        raise ConfigError(f"{run.ref}: its data {recorded} is not on this machine; pass --data PATH/TO/{Path(recorded).name}")
    if source is None and recorded and recorded != "synthetic":
        _check_zoo_data(trainer, recorded)
    return load_data(
        source if source is not None else cfg.get("data"),
        labels=cfg.get("labels", "fer2013"),
        class_map=cfg.get("class_map"),
        val_fraction=cfg.get("val_fraction", 0.1),
        seed=cfg.get("seed", 0),
        ferplus_csv=cfg.get("ferplus_csv"),
        synthetic_per_class=cfg.get("synthetic_per_class", 300),
    )


def calibration_images(data: FerData, count: int, seed: int) -> np.ndarray:
    """`count` training images (uint8) drawn without replacement: INT8 calibration for PTQ and LiteRT."""
    train = data.split("train")
    rng = np.random.default_rng(seed)
    return train.x[rng.choice(len(train), size=min(count, len(train)), replace=False)]
