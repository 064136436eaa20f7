"""Training and evaluation: `fit(TrainConfig)` writes a run folder; `evaluate_run` scores one."""

from .config import TrainConfig
from .evaluate import evaluate_run
from .fit import fit
from .metrics import classification_report, confusion_matrix

__all__ = ["TrainConfig", "fit", "evaluate_run", "classification_report", "confusion_matrix"]
