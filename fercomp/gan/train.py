"""`fercomp gan train`: fit the AC-GAN on a data set's train split into a run folder.

Like classifier training, every epoch writes (atomically) `last.pt` with everything needed to
resume bit-for-bit (both networks, both optimizers, RNG states, history), `generator.pt` (the
weights `fercomp gan sample` reads), `metrics.jsonl`, `curves.png` and a sample grid
`samples/epoch_NNN.png` drawn from the same fixed noise each epoch, so progress is visible.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..data import load_data
from ..errors import ConfigError, RunError
from ..imagegrid import save_image_grid
from ..io import save_torch, write_text
from ..runs import RESUME_FILE, Run, load_state_file, removed_on_failure
from ..train.distributed import autocast, grad_scaler, resolve_placement
from ..train.fit import default_run_path, require_same_data
from ..ui import console, make_progress
from .nets import Discriminator, Generator

GAN_STAGE = "gan"
GENERATOR_FILE = "generator.pt"
GENERATOR_FORMAT = "fercomp-gan/1"
RESUME_FORMAT = "fercomp-gan-resume/1"
REAL_LABEL = 0.9  # one-sided label smoothing: the discriminator never gets fully sure of real images


@dataclass
class GanConfig:
    data: str | None = None  # None = the built-in synthetic faces
    epochs: int = 20
    batch_size: int = 64
    lr: float = 2e-4
    z_dim: int = 100
    width: int = 64
    flip: bool = True  # mirror real images at random: faces are left-right symmetric enough
    grid_columns: int = 8
    seed: int = 0
    threads: int | None = None
    out: str | None = None
    synthetic_per_class: int = 300
    val_fraction: float = 0.1
    device: str | None = None  # auto: CUDA, then MPS, else CPU; a resume may change it (and amp)
    amp: str | None = None  # bf16 | fp16 | off (auto: bf16 on a GPU that has it, else off)

    def validate(self) -> None:
        resolve_placement(self.device, self.amp)
        for flag, value, ok, rule in (
            ("--epochs", self.epochs, self.epochs >= 1, ">= 1"),
            ("--batch-size", self.batch_size, self.batch_size >= 2, ">= 2"),
            ("--lr", self.lr, self.lr > 0, "> 0"),
            ("--z-dim", self.z_dim, self.z_dim >= 1, ">= 1"),
            ("--width", self.width, self.width >= 4, ">= 4"),
            ("--threads", self.threads, self.threads is None or self.threads >= 1, ">= 1"),
        ):
            if not ok:
                raise ConfigError(f"{flag} must be {rule} (got {value!r})")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "GanConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def generator_spec(cfg: GanConfig, class_names: tuple[str, ...]) -> dict[str, Any]:
    return {"num_classes": len(class_names), "class_names": list(class_names), "z_dim": cfg.z_dim, "width": cfg.width}


def to_unit_range(x_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> [-1, 1], the generator's tanh range."""
    return x_uint8.float().div(127.5).sub(1.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] images [N, 1, H, W] -> uint8 [N, H, W]."""
    return images.squeeze(1).add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8).numpy()


def train_gan(
    cfg: GanConfig,
    *,
    resume: str | Path | None = None,
    progress: bool = True,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
) -> Run:
    run = None
    if resume is not None:
        run = Run.load(resume)
        if run.stage != GAN_STAGE:
            raise RunError(f"{run.path}: a {run.stage} run, not a GAN run; resume it with `fercomp train --resume`")
        run.require_resumable()
        given = cfg  # where it trains may change on resume; what it learns may not
        cfg = GanConfig.from_dict(run.manifest["config"])
        cfg = replace(cfg, device=given.device or cfg.device, amp=given.amp or cfg.amp)
    cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device, amp = resolve_placement(cfg.device, cfg.amp)

    data = load_data(cfg.data, val_fraction=cfg.val_fraction, seed=cfg.seed, synthetic_per_class=cfg.synthetic_per_class)
    train = data.split("train")
    if data.image_size != (48, 48):
        raise ConfigError(f"{data.source}: the GAN draws 48x48 images, the data holds {data.image_size}")
    if len(train) < cfg.batch_size:
        raise ConfigError(f"--batch-size {cfg.batch_size} is larger than the train split ({len(train)} images)")
    if run is not None:
        require_same_data(run, data)

    torch.manual_seed(cfg.seed)
    num_classes = data.num_classes
    gen, disc = Generator(num_classes, cfg.z_dim, cfg.width), Discriminator(num_classes, cfg.width)
    gen, disc = gen.to(device), disc.to(device)
    scaler_g, scaler_d = grad_scaler(device, amp), grad_scaler(device, amp)  # fp16 only
    opt_g = torch.optim.Adam(gen.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    spec = generator_spec(cfg, data.class_names)

    if run is None:
        out = Path(cfg.out) if cfg.out else default_run_path("gan")
        run = Run.create(
            out, stage=GAN_STAGE, config=asdict(cfg), generator=spec,
            data={"source": data.source, **data.meta, "sizes": {k: len(v) for k, v in data.splits.items()}},
        )
    state = {"epoch": 0, "history": [], "train_time_s": 0.0}
    data_rng = torch.Generator().manual_seed(cfg.seed + 1)
    if resume is not None:
        ckpt = _load_resume(run)
        gen.load_state_dict(ckpt["generator"])
        disc.load_state_dict(ckpt["discriminator"])
        opt_g.load_state_dict(ckpt["opt_g"])
        opt_d.load_state_dict(ckpt["opt_d"])
        for name, scaler in (("scaler_g", scaler_g), ("scaler_d", scaler_d)):
            if name in ckpt:
                scaler.load_state_dict(ckpt[name])
        torch.set_rng_state(ckpt["torch_rng"])
        data_rng.set_state(ckpt["data_rng"])
        state = ckpt["state"]
        if progress:
            console.print(f"resuming {run.path} after epoch {state['epoch']}/{cfg.epochs}")

    # The grid's noise is fixed, so its rows show one class and its columns the same z every epoch.
    grid_rng = torch.Generator().manual_seed(cfg.seed + 2)
    grid_z = torch.randn(cfg.grid_columns, cfg.z_dim, generator=grid_rng).repeat(num_classes, 1)
    grid_labels = torch.arange(num_classes).repeat_interleave(cfg.grid_columns)

    # The images live on the training device; every random draw comes from the CPU generator, so a
    # run replays the same batches on any device and resumes across devices.
    x_all = torch.from_numpy(train.x).unsqueeze(1).to(device)
    y_all = torch.from_numpy(train.y).to(device)
    steps = len(train) // cfg.batch_size
    log = console.print if progress else (lambda *a, **k: None)
    bar = make_progress(progress, "D {task.fields[d]:.3f}", "G {task.fields[g]:.3f}")
    with removed_on_failure(run), _interrupted_marks(run):
        run.update(status="running", placement={"device": str(device), "amp": amp})
        with bar:
            for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
                task = bar.add_task(f"GAN epoch {epoch}/{cfg.epochs}", total=steps, d=0.0, g=0.0)
                gen.train()
                disc.train()
                t0 = time.perf_counter()
                sums = dict.fromkeys(("loss_d", "loss_g", "d_real", "d_fake", "real_class_acc", "fake_class_acc"), 0.0)
                order = torch.randperm(len(train), generator=data_rng)
                for i in range(steps):
                    idx = order[i * cfg.batch_size : (i + 1) * cfg.batch_size].to(device)
                    real, labels = to_unit_range(x_all[idx]), y_all[idx]
                    if cfg.flip:
                        mirror = (torch.rand(len(idx), generator=data_rng) < 0.5).to(device)
                        real = torch.where(mirror.view(-1, 1, 1, 1), real.flip(3), real)
                    z = torch.randn(len(idx), cfg.z_dim, generator=data_rng).to(device)
                    fake_labels = torch.randint(num_classes, (len(idx),), generator=data_rng).to(device)
                    with autocast(device, amp):
                        fake = gen(z, fake_labels)
                        adv_real, cls_real = disc(real)
                        adv_fake, cls_fake = disc(fake.detach())
                        loss_d = (
                            F.binary_cross_entropy_with_logits(adv_real, torch.full_like(adv_real, REAL_LABEL))
                            + F.binary_cross_entropy_with_logits(adv_fake, torch.zeros_like(adv_fake))
                            + F.cross_entropy(cls_real, labels)
                            + F.cross_entropy(cls_fake, fake_labels)
                        )
                    opt_d.zero_grad(set_to_none=True)
                    scaler_d.scale(loss_d).backward()
                    scaler_d.step(opt_d)
                    scaler_d.update()

                    with autocast(device, amp):
                        adv_gen, cls_gen = disc(fake)
                        loss_g = (F.binary_cross_entropy_with_logits(adv_gen, torch.ones_like(adv_gen))
                                  + F.cross_entropy(cls_gen, fake_labels))
                    opt_g.zero_grad(set_to_none=True)
                    scaler_g.scale(loss_g).backward()
                    scaler_g.step(opt_g)
                    scaler_g.update()

                    with torch.no_grad():
                        sums["loss_d"] += loss_d.item()
                        sums["loss_g"] += loss_g.item()
                        sums["d_real"] += torch.sigmoid(adv_real).mean().item()
                        sums["d_fake"] += torch.sigmoid(adv_fake).mean().item()
                        sums["real_class_acc"] += (cls_real.argmax(1) == labels).float().mean().item()
                        sums["fake_class_acc"] += (cls_fake.argmax(1) == fake_labels).float().mean().item()
                    bar.update(task, advance=1, d=sums["loss_d"] / (i + 1), g=sums["loss_g"] / (i + 1))
                bar.remove_task(task)
                epoch_s = time.perf_counter() - t0
                record = {"epoch": epoch, **{k: v / steps for k, v in sums.items()}, "epoch_s": epoch_s}
                state["history"].append(record)
                state["epoch"] = epoch
                state["train_time_s"] += epoch_s
                _save_epoch(run, cfg, spec, gen, disc, opt_g, opt_d, data_rng, state, grid_z, grid_labels, data.class_names,
                            scalers={"scaler_g": scaler_g, "scaler_d": scaler_d})
                log(
                    f"GAN epoch {epoch:>3}/{cfg.epochs}  D {record['loss_d']:.3f}  G {record['loss_g']:.3f}"
                    f"  D(real) {record['d_real']:.2f}  D(fake) {record['d_fake']:.2f}"
                    f"  class acc real {record['real_class_acc']:.1%} fake {record['fake_class_acc']:.1%}  {epoch_s:.0f}s",
                    highlight=False, soft_wrap=True,
                )
                if on_epoch_end is not None:
                    on_epoch_end(epoch, record)
    run.update(status="complete", metrics={"epochs_run": state["epoch"], "train_time_s": round(state["train_time_s"], 1),
                                           **{k: round(v, 4) for k, v in state["history"][-1].items() if k != "epoch"}})
    (run.path / RESUME_FILE).unlink(missing_ok=True)
    return run


@contextlib.contextmanager
def _interrupted_marks(run: Run):
    try:
        yield
    except KeyboardInterrupt:
        run.update(status="interrupted")
        raise


def _load_resume(run: Run) -> dict:
    return load_state_file(run.path / RESUME_FILE, RESUME_FORMAT, "fercomp GAN resume checkpoint")


def _save_epoch(run, cfg, spec, gen, disc, opt_g, opt_d, data_rng, state, grid_z, grid_labels, class_names,
                scalers=None) -> None:
    gen.eval()
    device = next(gen.parameters()).device
    with torch.no_grad():
        grid = to_uint8(gen(grid_z.to(device), grid_labels.to(device)).float().cpu()).reshape(len(class_names), cfg.grid_columns, 48, 48)
    save_image_grid(grid, run.path / "samples" / f"epoch_{state['epoch']:03d}.png", row_labels=class_names,
                    suptitle=f"{run.name}: epoch {state['epoch']} (fixed noise per column)", cell_inches=0.8)
    save_torch(run.path / GENERATOR_FILE, {"format": GENERATOR_FORMAT, "spec": spec, "state_dict": gen.state_dict()})
    save_torch(run.path / RESUME_FILE, {
        "format": RESUME_FORMAT, "generator": gen.state_dict(), "discriminator": disc.state_dict(),
        "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
        "torch_rng": torch.get_rng_state(), "data_rng": data_rng.get_state(), "state": state,
        **{name: s.state_dict() for name, s in (scalers or {}).items() if s.is_enabled()},
    })
    write_text(run.path / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in state["history"]))
    run.update(epochs_done=state["epoch"], train_time_s=round(state["train_time_s"], 1))
    _plot_history(state["history"], run.path / "curves.png", run.name)  # last: cosmetic, and slow the first time


def _plot_history(history: list[dict], path: Path, title: str) -> None:
    import matplotlib.pyplot as plt

    from ..io import save_figure

    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_d) = plt.subplots(1, 2, figsize=(10, 3.6))
    for key in ("loss_d", "loss_g"):
        ax_loss.plot(epochs, [r[key] for r in history], label=key.replace("loss_", ""))
    ax_loss.set(xlabel="epoch", ylabel="loss", title="losses")
    for key, label in (("d_real", "D(real)"), ("d_fake", "D(fake)"), ("fake_class_acc", "D's class acc on fakes")):
        ax_d.plot(epochs, [r[key] for r in history], label=label)
    ax_d.set(xlabel="epoch", ylim=(0, 1), title="discriminator")
    for ax in (ax_loss, ax_d):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    save_figure(path, fig)
    plt.close(fig)
