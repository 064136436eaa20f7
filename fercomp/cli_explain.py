"""`fercomp explain`: saliency overlays for a run's predictions (thin wrapper)."""

from __future__ import annotations

from typing import Optional

import typer

from .cli_options import Device
from .ui import console


def explain_cmd(
    run: str = typer.Argument(..., help="run folder or .pt checkpoint (float; pruned runs work)"),
    sources: list[str] = typer.Argument(..., help="image files and/or folders"),
    method: str = typer.Option("gradcam", help="gradcam | gradcam++ | guided-backprop | guided-gradcam"),
    target_class: Optional[str] = typer.Option(None, "--class", help="class name or index to explain (default: the prediction)"),
    layer: Optional[str] = typer.Option(None, help="module name for the CAM (default: the last feature map)"),
    out: Optional[str] = typer.Option(None, help="output folder (default artifacts/explain/<run>-<method>[-N])"),
    batch: int = typer.Option(8, help="images per grid PNG"),
    detect: bool = typer.Option(True, "--detect/--no-detect", help="find the face in larger photos"),
    device: Device = None,
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Heat-map overlays for the predicted (or chosen) class: a grid PNG per batch, overlays, CSV, raw maps."""
    from .explain.explain import ExplainConfig, explain_sources

    result = explain_sources(ExplainConfig(run=run, sources=list(sources), method=method, target_class=target_class,
                                           layer=layer, out=out, batch=batch, detect=detect,
                                           device=device), progress=progress)
    console.print(f"{result['method']} at layer {result['layer']}: {result['explained']} images explained -> {result['out']}",
                  highlight=False)
    for row in result["errors"]:
        console.print(f"skipped {row['file']}: {row['error']}", highlight=False)
