"""Evaluation: accuracy, macro-F1, per-class scores and the confusion matrix, through a predictor."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import zoo
from ..data import Split
from ..data.run_data import data_for_run, training_config  # noqa: F401  (re-exported: stages import them here)
from ..errors import ConfigError
from ..io import write_json
from .metrics import evaluate_probabilities
from .plots import plot_confusion


def report_with_loss(probs: np.ndarray, split: Split, class_names) -> tuple[dict, float]:
    report = evaluate_probabilities(probs, split.y, class_names)
    nll = -np.log(np.clip(probs[np.arange(len(split.y)), split.y], 1e-12, None)).mean() if len(split.y) else 0.0
    return report, float(nll)


def reports_by_split(predictor, data: FerData, splits=("val", "test")) -> dict[str, dict]:
    """Classification report of a predictor on each named split the data has."""
    out = {}
    for name in splits:
        if name in data.splits and len(data.splits[name]):
            part = data.splits[name]
            out[name], _ = report_with_loss(predictor.predict_proba(part.x), part, data.class_names)
    return out


def evaluate_model(model, split: Split, class_names, normalization: dict, batch_size: int = 512) -> tuple[dict, float]:
    """Evaluate a live torch model (used every epoch on the validation split)."""
    from ..deploy.runtime import TorchPredictor

    spec = {"class_names": list(class_names), "input_size": list(split.x.shape[1:]), "normalization": normalization}
    probs = TorchPredictor(model, spec, batch_size=batch_size).predict_proba(split.x)
    return report_with_loss(probs, split, class_names)


def write_evaluation(folder: str | Path, split_name: str, report: dict, source: str, backend: str = "torch") -> None:
    folder = Path(folder)
    write_json(folder / f"eval_{split_name}.json", {"split": split_name, "source": source, "backend": backend, **report})
    plot_confusion(
        np.array(report["confusion"]),
        report["class_names"],
        folder / f"confusion_{split_name}.png",
        title=f"{folder.name} — {split_name} ({source}) acc {report['accuracy']:.1%}",
    )


def evaluate_run(
    path: str | Path,
    *,
    data: str | None = None,
    split: str = "test",
    threads: int | None = None,
    backend: str | None = None,
    tta: str | None = None,
    write: bool = True,
    device: str | None = None,
    ov_precision: str = "auto",
) -> dict:
    """Evaluate a run folder (or model file) on a split; write eval_<split>.json and confusion_<split>.png.

    `tta` averages the probabilities over augmented views (see `tta.VIEWS`)."""
    from ..deploy.runtime import load
    from ..runs import Run
    from .tta import TTAPredictor

    path = zoo.resolve(path)
    predictor = load(path, threads=threads, backend=backend, device=device, ov_precision=ov_precision)
    if tta:
        predictor = TTAPredictor(predictor, tta)
    dataset = data_for_run(Run.load(path) if path.is_dir() else None, data)
    if list(dataset.class_names) != list(predictor.class_names):
        raise ConfigError(
            f"--data classes {list(dataset.class_names)} do not match the model's {predictor.class_names}"
        )
    part = dataset.split(split)
    probs = predictor.predict_proba(part.x)
    report, loss = report_with_loss(probs, part, dataset.class_names)
    report.update(loss=loss, split=split, source=dataset.source, backend=predictor.backend,
                  device=str(getattr(predictor, "device", "cpu")))
    if write and path.is_dir() and not zoo.is_zoo_folder(path):  # a zoo model is read-only
        # Another data source gets its own file name: the run's own evaluation is never overwritten.
        name = (split if data is None else f"{split}_{Path(str(data)).stem}") + (f"_tta-{tta}" if tta else "")
        write_evaluation(path, name, report, source=dataset.source, backend=predictor.backend)
    return report
