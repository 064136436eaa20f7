"""One labelled PNG of many small images: GAN samples per class, explanation overlays per batch."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # headless: no display on servers or in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .io import save_figure  # noqa: E402


def save_image_grid(
    images: np.ndarray,
    path: str | Path,
    *,
    row_labels: Sequence[str] | None = None,
    titles: Sequence[Sequence[str]] | None = None,
    suptitle: str = "",
    cell_inches: float = 1.1,
) -> None:
    """images [rows, cols, H, W] (gray, uint8 or [0, 1]) or [rows, cols, H, W, 3] (RGB)."""
    images = np.asarray(images)
    if images.ndim not in (4, 5):
        raise ValueError(f"expected [rows, cols, H, W(, 3)] images, got shape {images.shape}")
    rows, cols = images.shape[:2]
    fig, axes = plt.subplots(rows, cols, figsize=(cols * cell_inches + 0.8, rows * cell_inches + 0.4), squeeze=False)
    for r in range(rows):
        for c in range(cols):
            ax = axes[r][c]
            image = images[r, c]
            ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255 if image.dtype == np.uint8 else 1)
            ax.set_xticks([])
            ax.set_yticks([])
            if titles is not None and titles[r][c]:
                ax.set_title(titles[r][c], fontsize=6, pad=2)
        if row_labels is not None:
            axes[r][0].set_ylabel(row_labels[r], fontsize=8, rotation=0, ha="right", va="center")
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    # Leave the suptitle its own band above the top row.
    fig.tight_layout(pad=0.3, h_pad=0.9 if titles is not None else None,
                     rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()) if suptitle else None)
    save_figure(path, fig)
    plt.close(fig)
