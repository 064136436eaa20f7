"""`fercomp explain`: saliency maps for a run's predictions on image files and folders.

For each image the face is found as `fercomp predict` finds it (a model-sized image is a face
crop already; larger photos go through the face detector, falling back to the whole image),
explained for its predicted class or `--class`, and written as:
  out/grid_NNN.png      a batch per PNG: the input faces over their explanations, titled with
                        the explained class and its probability
  out/overlays/*.png    one overlay per image, enlarged for viewing
  out/explanations.csv  file, predicted class and probability, explained class, any error
  out/maps.npz          the raw maps (heat maps in [0, 1], guided gradients) for analysis
Everything is written to a temporary folder renamed into place at the end, so an interrupted or
failed command leaves nothing half-written.
"""

from __future__ import annotations

import csv
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from ..deploy.detectors import create_detector
from ..deploy.faces import find_face_crops
from ..deploy.predict import UnreadableSource, read_image, resolve_sources
from ..deploy.runtime import preprocess
from ..device import resolve_device
from ..errors import ConfigError
from ..imagegrid import save_image_grid
from ..ui import make_progress
from .cam import METHODS, explain_batch, target_layer

OVERLAY_SIDE = 192


@dataclass
class ExplainConfig:
    run: str
    sources: list[str]
    method: str = "gradcam"
    target_class: str | None = None  # a class name or index; None = each image's prediction
    layer: str | None = None
    out: str | None = None
    batch: int = 8
    detect: bool = True
    device: str | None = None  # --device: auto (CUDA, then MPS, else CPU), cpu, cuda[:N], mps


def resolve_class(text: str | None, class_names: list[str]) -> int | None:
    if text is None:
        return None
    if text.isdigit() and int(text) < len(class_names):
        return int(text)
    if text.lower() in class_names:
        return class_names.index(text.lower())
    raise ConfigError(f"--class {text}: not one of {', '.join(class_names)} (or 0..{len(class_names) - 1})")


def face_input(path: str, input_size: tuple[int, int], detect: bool) -> np.ndarray:
    """The model-sized gray face crop of an image file (the largest face, or the whole image)."""
    image = read_image(path)
    boxes, crops = find_face_crops(image, input_size, create_detector() if detect else None)
    if not crops:
        _, crops = find_face_crops(image, input_size)
    areas = [b.w * b.h for b in boxes] if boxes else [0]
    return crops[int(np.argmax(areas))]


def overlay(face: np.ndarray, heatmap: np.ndarray | None, guided: np.ndarray | None) -> np.ndarray:
    """RGB uint8 picture of one explanation: heat map over the face, or the (guided) gradients."""
    from pytorch_grad_cam.utils.image import deprocess_image, show_cam_on_image

    if guided is not None:
        detail = guided if heatmap is None else guided * heatmap  # guided Grad-CAM: gradients gated by the CAM
        return np.repeat(deprocess_image(detail)[..., None], 3, axis=2)
    rgb = np.repeat((face.astype(np.float32) / 255.0)[..., None], 3, axis=2)
    return show_cam_on_image(rgb, heatmap, use_rgb=True, image_weight=0.55)


def explain_sources(cfg: ExplainConfig, progress: bool = True) -> dict:
    from ..train.fit import default_run_path, load_model_from

    if cfg.method not in METHODS:
        raise ConfigError(f"--method must be one of {', '.join(METHODS)} (got {cfg.method!r})")
    if cfg.batch < 1:
        raise ConfigError(f"--batch must be >= 1 (got {cfg.batch})")
    device = resolve_device(cfg.device)
    model, spec = load_model_from(cfg.run)
    model = model.to(device)
    class_names = list(spec["class_names"])
    target = resolve_class(cfg.target_class, class_names)
    input_size = tuple(spec.get("input_size", (48, 48)))
    sources = resolve_sources(cfg.sources)
    not_images = [s.location for s in sources if s.kind != "image"]
    if not_images:
        raise ConfigError(f"{not_images[0]}: explain takes image files and folders, not videos or webcams")
    example = torch.from_numpy(preprocess(np.zeros((1, *input_size), np.uint8), spec)).to(device)
    layer_name, layer = target_layer(model, example, cfg.layer)
    out = Path(cfg.out) if cfg.out else default_run_path(f"{Path(cfg.run).name}-{cfg.method}", "artifacts/explain")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"--out {out}: folder exists and is not empty; choose another")

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    rows: list[dict] = []
    maps: dict[str, list] = {"names": [], "heatmaps": [], "guided": [], "targets": [], "probs": []}
    try:
        faces, names = [], []
        for source in sources:
            try:
                faces.append(face_input(source.location, input_size, cfg.detect))
                names.append(source.location)
            except UnreadableSource as err:
                rows.append({"file": source.location, "error": str(err)})
        (staging / "overlays").mkdir()
        bar = make_progress(progress)
        with bar:
            task = bar.add_task(f"{cfg.method}", total=len(faces))
            for start in range(0, len(faces), cfg.batch):
                batch_faces = np.stack(faces[start : start + cfg.batch])
                batch_names = names[start : start + cfg.batch]
                x = torch.from_numpy(preprocess(batch_faces, spec)).to(device)
                result = explain_batch(model, x, cfg.method, layer, target)
                pictures = []
                for i, name in enumerate(batch_names):
                    heat = None if result.heatmaps is None else result.heatmaps[i]
                    guided = None if result.guided is None else result.guided[i]
                    picture = overlay(batch_faces[i], heat, guided)
                    pictures.append(picture)
                    stem = f"{start + i:04d}_{Path(name).stem}"
                    big = cv2.resize(picture, (OVERLAY_SIDE, OVERLAY_SIDE), interpolation=cv2.INTER_CUBIC)
                    cv2.imwrite(str(staging / "overlays" / f"{stem}.png"), cv2.cvtColor(big, cv2.COLOR_RGB2BGR))
                    t = int(result.targets[i])
                    predicted = int(result.probs[i].argmax())
                    rows.append({"file": name, "predicted": class_names[predicted], "probability": round(float(result.probs[i, predicted]), 4),
                                 "explained": class_names[t], "explained_probability": round(float(result.probs[i, t]), 4), "error": ""})
                    maps["names"].append(name)
                    maps["heatmaps"].append(heat if heat is not None else np.zeros(input_size, np.float32))
                    maps["guided"].append(guided if guided is not None else np.zeros(input_size, np.float32))
                    maps["targets"].append(t)
                    maps["probs"].append(result.probs[i])
                inputs = np.stack([np.repeat(f[..., None], 3, axis=2) for f in batch_faces])
                titles = [[Path(n).name[:14] for n in batch_names],
                          [f"{class_names[int(result.targets[i])]} {100 * result.probs[i, int(result.targets[i])]:.0f}%"
                           for i in range(len(batch_names))]]
                save_image_grid(np.stack([inputs, np.stack(pictures)]), staging / f"grid_{start // cfg.batch:03d}.png",
                                titles=titles, row_labels=["input", cfg.method],
                                suptitle=f"{Path(cfg.run).name}: {cfg.method} at {layer_name}")
                bar.update(task, advance=len(batch_names))
        _write_csv(staging / "explanations.csv", rows)
        if maps["names"]:
            np.savez_compressed(staging / "maps.npz", names=np.array(maps["names"]), heatmaps=np.stack(maps["heatmaps"]),
                                guided=np.stack(maps["guided"]), targets=np.array(maps["targets"]),
                                probs=np.stack(maps["probs"]), class_names=np.array(class_names))
        if out.exists():
            out.rmdir()
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"out": str(out), "method": cfg.method, "layer": layer_name, "device": str(device), "explained": len(maps["names"]),
            "errors": [r for r in rows if r.get("error")], "rows": rows}


def _write_csv(path: Path, rows: list[dict]) -> None:
    fields = ["file", "predicted", "probability", "explained", "explained_probability", "error"]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: row.get(key, "") for key in fields})
