"""Classification metrics from a confusion matrix (rows = true class, columns = predicted)."""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    return np.bincount(y_true * num_classes + y_pred, minlength=num_classes**2).reshape(num_classes, num_classes)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)


def classification_report(cm: np.ndarray, class_names: list[str] | tuple[str, ...]) -> dict:
    """Accuracy, macro-F1 and per-class precision / recall / F1 / support.

    Macro-F1 averages over classes that occur in the true labels or the predictions, so a
    class absent from both (e.g. disgust in a 6-class set) does not drag it down.
    """
    cm = np.asarray(cm, dtype=np.int64)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    present = (support + predicted) > 0
    total = cm.sum()
    return {
        "n": int(total),
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(class_names)
        },
        "confusion": cm.tolist(),
        "class_names": list(class_names),
    }


def evaluate_probabilities(probs: np.ndarray, y_true: np.ndarray, class_names) -> dict:
    """Report for predicted probabilities [N, C] against hard labels [N]."""
    y_pred = np.asarray(probs).argmax(axis=1)
    return classification_report(confusion_matrix(y_true, y_pred, len(class_names)), class_names)
