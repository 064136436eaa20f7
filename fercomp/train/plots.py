"""Plots people would rather look at than read: learning curves and confusion matrices."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display on servers or in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..io import save_figure  # noqa: E402


def plot_curves(history: list[dict], path: str | Path, title: str = "") -> None:
    """Loss and accuracy per epoch, train vs validation, best validation epoch marked."""
    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax_loss.plot(epochs, [r["train_loss"] for r in history], label="train")
    ax_loss.plot(epochs, [r["val_loss"] for r in history], label="val")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.plot(epochs, [100 * r["train_acc"] for r in history], label="train")
    ax_acc.plot(epochs, [100 * r["val_acc"] for r in history], label="val")
    best = max(history, key=lambda r: r["val_acc"])
    ax_acc.axvline(best["epoch"], color="grey", ls=":", lw=1)
    ax_acc.annotate(f"best {100 * best['val_acc']:.1f}%", (best["epoch"], 100 * best["val_acc"]),
                    textcoords="offset points", xytext=(4, -12), fontsize=8)
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    save_figure(path, fig)
    plt.close(fig)


def plot_confusion(cm: np.ndarray, class_names, path: str | Path, title: str = "") -> None:
    """Row-normalised confusion matrix (recall on the diagonal) annotated with % and counts."""
    cm = np.asarray(cm)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm, dtype=float), where=rows > 0)
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(1.0 * n + 2, 1.0 * n + 1.5))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            if cm[i, j] == 0:  # empty cells stay blank so the errors stand out
                continue
            ax.text(j, i, f"{100 * norm[i, j]:.0f}%\n{cm[i, j]}", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    save_figure(path, fig)
    plt.close(fig)
