"""`fercomp gan sample`: draw labelled images from a trained generator into an npz.

The npz has the single-split layout every fercomp data reader accepts (x uint8 [N, 48, 48],
y int64, class_names) plus `source_run`, so it can go to `fercomp train --extra-data`, where
it joins the train split only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, RunError
from ..io import atomic_path
from ..runs import Run, load_state_file
from .nets import Generator
from .train import GAN_STAGE, GENERATOR_FILE, GENERATOR_FORMAT, to_uint8


def load_generator(path: str | Path) -> tuple[Generator, dict]:
    """(generator in eval mode, spec) from a GAN run folder or its generator.pt."""
    path = Path(path)
    if path.is_dir():
        run = Run.load(path)
        if run.stage != GAN_STAGE:
            raise RunError(f"{path}: a {run.stage} run, not a GAN run (fercomp gan train makes one)")
        path = path / GENERATOR_FILE
    if not path.is_file():
        raise RunError(f"{path}: no generator yet (the GAN run has not finished an epoch)")
    ckpt = load_state_file(path, GENERATOR_FORMAT, "fercomp generator")
    spec = ckpt["spec"]
    gen = Generator(spec["num_classes"], spec["z_dim"], spec["width"])
    gen.load_state_dict(ckpt["state_dict"])
    return gen.eval(), spec


@torch.no_grad()
def sample_images(gen: Generator, per_class: int, seed: int = 0, batch: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """per_class images of every class, class-major: (x uint8 [C*per_class, 48, 48], y int64)."""
    if per_class < 1:
        raise ConfigError(f"--per-class must be >= 1 (got {per_class})")
    rng = torch.Generator().manual_seed(seed)
    labels = torch.arange(gen.num_classes).repeat_interleave(per_class)
    z = torch.randn(len(labels), gen.z_dim, generator=rng)
    images = [to_uint8(gen(z[i : i + batch], labels[i : i + batch])) for i in range(0, len(labels), batch)]
    return np.concatenate(images), labels.numpy().astype(np.int64)


def sample_to_npz(run_path: str | Path, out: str | Path, per_class: int, seed: int = 0) -> dict:
    out = Path(out)
    if out.suffix != ".npz":
        raise ConfigError(f"--out {out}: the output must be an .npz file")
    gen, spec = load_generator(run_path)
    x, y = sample_images(gen, per_class, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as handle:  # a file handle: np.savez would append .npz to a temp name
            np.savez_compressed(handle, x=x, y=y, class_names=np.array(spec["class_names"]),
                                source_run=np.array(str(Path(run_path).resolve())), seed=np.array(seed))
    return {"out": str(out), "images": len(y), "per_class": per_class, "class_names": spec["class_names"], "seed": seed}
