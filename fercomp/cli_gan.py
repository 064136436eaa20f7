"""`fercomp gan train | sample | score`: class-conditional GAN augmentation (thin wrappers)."""

from __future__ import annotations

import json
import sys
from typing import Optional

import typer
from rich.table import Table

from .cli_options import Amp, Device
from .ui import console

gan_app = typer.Typer(help="Class-conditional GAN: train, sample an npz for --extra-data, score.", no_args_is_help=True)


@gan_app.command("train")
def gan_train(
    data: Optional[str] = typer.Option(None, help="fer2013.csv, an .npz, an image folder, or 'synthetic' (default)"),
    epochs: int = typer.Option(20),
    batch_size: int = typer.Option(64),
    lr: float = typer.Option(2e-4, help="Adam lr of both networks"),
    z_dim: int = typer.Option(100, help="noise size"),
    width: int = typer.Option(64, help="channels of the generator's last hidden layer (x2, x4 deeper)"),
    flip: bool = typer.Option(True, "--flip/--no-flip", help="mirror real images at random"),
    seed: int = typer.Option(0),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads"),
    out: Optional[str] = typer.Option(None, help="run folder (default artifacts/gan[-N])"),
    resume: Optional[str] = typer.Option(None, help="continue an interrupted GAN run folder"),
    synthetic_per_class: int = typer.Option(300, help="synthetic faces per class"),
    device: Device = None,
    amp: Amp = None,
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Train an AC-GAN on the train split; a sample grid PNG per epoch, resumable."""
    from .gan.train import GanConfig, train_gan

    cfg = GanConfig(data=data, epochs=epochs, batch_size=batch_size, lr=lr, z_dim=z_dim, width=width, flip=flip,
                    seed=seed, threads=threads, out=out, synthetic_per_class=synthetic_per_class,
                    device=device, amp=amp)
    try:
        run = train_gan(cfg, resume=resume, progress=progress)
    except KeyboardInterrupt:
        console.print(f"interrupted; continue with: fercomp gan train --resume {resume or cfg.out or 'RUN'}")
        raise typer.Exit(130)
    console.print(f"GAN run {run.path}: {run.manifest['metrics']['epochs_run']} epochs; samples in {run.path / 'samples'}",
                  highlight=False)


@gan_app.command("sample")
def gan_sample(
    run: str = typer.Argument(..., help="GAN run folder (or its generator.pt)"),
    out: str = typer.Option(..., help="output .npz (x, y, class_names) for `fercomp train --extra-data`"),
    per_class: int = typer.Option(1000, help="images per class (all classes, disgust included)"),
    seed: int = typer.Option(0, help="the same seed draws the same images"),
) -> None:
    """Draw labelled images of every class into an npz."""
    from .gan.sample import sample_to_npz

    info = sample_to_npz(run, out, per_class, seed)
    console.print(f"wrote {info['out']}: {info['images']} images, {per_class} per class ({', '.join(info['class_names'])})",
                  highlight=False)


@gan_app.command("score")
def gan_score(
    run: str = typer.Argument(..., help="GAN run folder"),
    classifier: str = typer.Option(..., help="a trained fercomp run that judges the images"),
    per_class: int = typer.Option(500, help="generated images per class"),
    data: Optional[str] = typer.Option(None, help="real reference data (default: the classifier's)"),
    seed: int = typer.Option(0),
    as_json: bool = typer.Option(False, "--json", help="print as JSON on stdout"),
) -> None:
    """Quality with no download: class agreement, classifier score and Frechet distance vs real images."""
    from .gan.score import score_generator

    report = score_generator(run, classifier, per_class=per_class, seed=seed, data=data)
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    table = Table(title=f"GAN {run} judged by {classifier} ({report['images']} generated, {report['reference_images']} real)")
    for col in ("images", "class agreement", "classifier score", "Frechet distance"):
        table.add_column(col, justify="left" if col == "images" else "right")
    for kind, label in (("generated", "generated"), ("real", "real (test; distance train vs test)")):
        row = report[kind]
        table.add_row(label, f"{100 * row['class_agreement']:.1f}%", f"{row['classifier_score']:.2f}", f"{row['frechet_distance']:.2f}")
    console.print(table)
    per = report["generated"]["class_agreement_per_class"]
    console.print("class agreement per class: " + ", ".join(f"{c} {100 * v:.0f}%" for c, v in per.items()), highlight=False)
