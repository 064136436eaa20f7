"""The training loop, readable top to bottom.

`fit(TrainConfig)` loads the data, builds the model, and trains it into a new run folder. After
every epoch it writes, atomically: `last.pt` (everything needed to resume: weights, optimizer,
RNG states, history), `model.pt` when validation accuracy improved, `metrics.jsonl` and
`curves.png`. A run resumed from `last.pt` ends with the same weights as an uninterrupted one,
because every random draw (shuffling, augmentation, dropout) comes from generators whose
state is saved with it.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from .. import zoo
from ..data import Augmenter, FerData, balanced_sampler_indices, class_weights, load_data
from ..data.extra import load_extra, with_extra
from ..data.mixing import DEFAULT_ALPHA, mix_batch
from ..data.sources import require_val_split
from ..device import CompiledOrEager
from ..errors import ConfigError, RunError
from ..io import save_torch, write_text
from ..models import count_macs, count_params, create, fit_to_state_dict
from ..runs import DEFAULT_NORMALIZATION, RESUME_FILE, Run, load_checkpoint, load_state_file, model_spec, now_iso
from ..ui import console, make_progress
from .config import TrainConfig
from .distributed import (
    FollowerRun,
    all_reduce_sum,
    autocast,
    barrier,
    broadcast_object,
    grad_scaler,
    join_group,
    leave_group,
    require_divisible,
    resolve_amp,
    resolve_device,
    shard,
    wrap,
)
from .averaging import LastEpochsAverage, make_ema
from .phases import check_two_phase, frozen_stages, in_head_phase
from .evaluate import evaluate_model, write_evaluation
from .losses import distillation_loss
from .teacher_cache import Teacher, require_same_teachers, teacher_identity, teacher_targets
from .plots import plot_curves

RESUME_FORMAT = "fercomp-resume/1"
PLATEAU_PATIENCE = 3  # epochs without val improvement before the plateau schedule halves the lr


def load_training_data(cfg: TrainConfig) -> FerData:
    data = load_data(
        cfg.data,
        labels=cfg.labels,
        class_map=cfg.class_map,
        val_fraction=cfg.val_fraction,
        seed=cfg.seed,
        ferplus_csv=cfg.ferplus_csv,
        synthetic_per_class=cfg.synthetic_per_class,
    )
    require_val_split(data)
    return data


def default_run_path(model: str, root: str | Path = "artifacts") -> Path:
    """artifacts/<model>, or artifacts/<model>-2, -3, … if taken."""
    root = Path(root)
    path, n = root / model, 2
    while path.exists():
        path, n = root / f"{model}-{n}", n + 1
    return path


def learning_rate(cfg: TrainConfig, step: int, total_steps: int, steps_per_epoch: int, plateau_scale: float) -> float:
    """The lr for a global step: linear warm-up, then the chosen schedule.

    Two-phase training runs the schedule twice: over the head phase with `lr` (and warm-up),
    then over the fine-tuning phase from `finetune_lr`, without warm-up.

    A closed form of the step, not torch.optim.lr_scheduler, on purpose: LinearLR + CosineAnnealingLR
    reproduce warm-up + cosine only to ~1e-13 (the scheduler's cosine is recursive, each lr
    derived from the previous one), cannot follow a length changed by `--resume --epochs N`
    without replaying every step on the old curve, and ReduceLROnPlateau rewrites the same lr
    the warm-up sets. This function is stateless: a resumed run computes the lr it would have.
    """
    if cfg.head_epochs:
        head_steps = cfg.head_epochs * steps_per_epoch
        if in_head_phase(cfg, step, steps_per_epoch):
            return learning_rate(replace(cfg, head_epochs=0), step, head_steps, steps_per_epoch, plateau_scale)
        tuning = replace(cfg, head_epochs=0, lr=cfg.finetune_lr, warmup_epochs=0)
        return learning_rate(tuning, step - head_steps, total_steps - head_steps, steps_per_epoch, plateau_scale)
    warmup = cfg.warmup_epochs * steps_per_epoch
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))
    if cfg.schedule == "step":  # /10 at 50% and at 75% of training
        return cfg.lr * 0.1 ** ((progress >= 0.5) + (progress >= 0.75))
    if cfg.schedule == "plateau":
        return cfg.lr * plateau_scale
    return cfg.lr


def make_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    # Two-phase training unfreezes stages later: give the optimizer every parameter now (those
    # without gradients are skipped by the optimizer, weight decay included).
    params = [p for p in model.parameters() if p.requires_grad or cfg.head_epochs]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0, weight_decay=cfg.weight_decay)


class FloatRecipe:
    """What `fit` trains and saves: the float model itself. Quantization-aware training swaps it."""

    channels_last = True

    def prepare(self, model: torch.nn.Module, input_size: tuple[int, int]) -> torch.nn.Module:
        return model

    def on_epoch_start(self, model: torch.nn.Module, epoch: int) -> None:
        pass

    def evaluating(self, model: torch.nn.Module):
        """Context for validation passes (QAT keeps its observers from seeing validation data)."""
        return contextlib.nullcontext()

    def save_best(self, run: Run, model: torch.nn.Module, spec: dict) -> None:
        run.save_model(model, spec)

    def finish(self, run: Run, cfg: TrainConfig, data: FerData, state: dict, model: torch.nn.Module) -> Run:
        return _finish(run, cfg, data, state)


def load_model_from(path: str | Path):
    """(model, spec) from a run folder or a checkpoint file."""
    path = zoo.resolve(path)
    return Run.load(path).load_model() if path.is_dir() else load_checkpoint(path)


def fit(
    cfg: TrainConfig,
    *,
    resume: str | Path | None = None,
    run: Run | None = None,
    progress: bool = True,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
    recipe: "FloatRecipe | None" = None,
    extend_to: int | None = None,
) -> Run:
    """Train as `cfg` says and return the run folder.

    `resume` continues an interrupted run (any stage that trains) with its saved settings, or with
    `extend_to` trains a finished or interrupted one to that many epochs (the schedule is
    recomputed for the new length); `run` is a folder a later stage (prune) created and filled
    with its own manifest fields first. `recipe` changes what is trained and saved
    (quantization-aware training); default: float.
    """
    recipe = recipe or FloatRecipe()
    group = join_group(resolve_device(cfg.device))  # one process, or this rank of torchrun's group
    if group.distributed and (run is not None or type(recipe) is not FloatRecipe):
        raise ConfigError("pruning fine-tunes and quantization-aware training run in one process; "
                          "start them without torchrun")
    progress = progress and group.is_main  # one progress bar and log, from rank 0
    if resume is not None:
        run = Run.load(resume)
        run = run.lock() if group.is_main else FollowerRun(run.path, run.manifest)  # one writer: a second resume stops here
        given = cfg  # where it runs may change on resume (threads, device, precision); what it learns may not
        cfg = resumed_config(run, extend_to)
        cfg = replace(cfg, threads=given.threads or cfg.threads, device=given.device or cfg.device,
                      amp=given.amp or cfg.amp, compile=given.compile)
    cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    amp = resolve_amp(cfg.amp, device)
    if cfg.sync_bn and device.type != "cuda":
        raise ConfigError("--sync-bn needs CUDA: PyTorch's SyncBatchNorm works on GPU modules only")

    # Everything that can fail on user input happens before the run folder exists.
    data = load_training_data(cfg)
    for split, note in (data.meta.get("resized") or {}).items():  # said even without progress output
        console.print(f"note: {data.source} {split}: {note} (recorded in the manifest)", highlight=False)
    if resume is not None:
        require_same_data(run, data)
    train, val = data.split("train"), data.split("val")
    extra_meta = None
    if cfg.extra_data:
        extra, extra_meta = load_extra(cfg.extra_data, data.class_names)
        if resume is not None:
            _require_same_extra(run, extra_meta)
        train = with_extra(train, extra, data.num_classes)
    torch.manual_seed(cfg.seed)
    if cfg.init_from:
        model, init_spec = load_model_from(cfg.init_from)
        if init_spec["class_names"] != list(data.class_names):
            raise ConfigError(f"{cfg.init_from}: model classes {init_spec['class_names']} differ from the data's")
        model_name, model_kwargs = init_spec["name"], init_spec["kwargs"]
    else:
        model = create(cfg.model, num_classes=data.num_classes, **cfg.model_kwargs)
        model_name, model_kwargs = cfg.model, cfg.model_kwargs
    float_params, float_macs = count_params(model), count_macs(model)
    model = recipe.prepare(model, tuple(getattr(model, "input_size", (48, 48))))
    ckpt = _load_resume_state(run) if resume is not None and (run.path / RESUME_FILE).exists() else None
    if ckpt is not None:  # before the optimizer exists: this may resize layers
        fit_to_state_dict(model, ckpt["model"])
    teachers = [load_teacher(ref, data.class_names) for ref in cfg.teachers]
    started_distillation = run.manifest.get("distillation") if resume is not None else None
    cfg = cfg.resolved(getattr(model, "default_cfg", {}))
    # Data lives on the training device as uint8 tensors (FER2013 is 83 MB), also what cached teachers score.
    train_x = torch.from_numpy(train.x).unsqueeze(1).to(device)
    targets = live_teachers = None
    try:  # a resumed run learns from the teachers it started with, whatever their names point at now
        if teachers and cfg.teacher_views:  # computed once (or read from the cache) before the run folder exists
            for t in teachers:
                t.model.to(device)
            targets = teacher_targets(teachers, train_x, cfg.augment, cfg.seed, cfg.teacher_views,
                                      (torch.from_numpy(val.x).unsqueeze(1).to(device), val.y),
                                      progress=progress and group.is_main, started=started_distillation)
            teachers = []
        elif teachers:  # scored live each batch
            require_same_teachers(started_distillation or {}, teachers)
            live_teachers = {"teachers": [t.ref for t in teachers], **teacher_identity(teachers), "views": 0}
    except RunError as err:  # only a resume raises here
        raise RunError(f"{run.path}: {err}") from None
    distillation = targets.record if targets is not None else live_teachers
    teacher = teachers[0].model if len(teachers) == 1 else (Ensemble(teachers) if teachers else None)
    check_two_phase(cfg, model)
    if cfg.head_epochs:  # before the optimizer: phase 1's frozen stages
        model.set_frozen_stages(frozen_stages(cfg, model, state_epoch(ckpt) + 1))
    norm = dict(DEFAULT_NORMALIZATION)
    spec = model_spec(model_name, model_kwargs, data.class_names, model, norm)
    augment = Augmenter(cfg.augment)
    memory_format = torch.channels_last if cfg.channels_last and recipe.channels_last else torch.contiguous_format
    model = model.to(device=device, memory_format=memory_format)
    if teacher is not None:
        teacher = teacher.to(device=device, memory_format=memory_format)
    require_divisible(cfg.batch_size, group)
    optimizer = make_optimizer(cfg, model)
    scaler = grad_scaler(device, amp)
    ema = make_ema(model, cfg.ema) if cfg.ema else None
    swa = LastEpochsAverage(model, cfg.epochs, cfg.swa_epochs) if cfg.swa_epochs else None
    trained = wrap(model, device, group, cfg.sync_bn)  # DDP under torchrun: gradients averaged over ranks
    if cfg.compile:
        trained = CompiledOrEager(trained, lambda text: console.print(f"[yellow]{text}[/]"))

    fields = dict(
        config=cfg.to_dict(),
        data={"source": data.source, **data.meta, "sizes": {k: len(v) for k, v in data.splits.items()},
              **({"extra": extra_meta} if extra_meta else {})},
        model=spec,
        params=float_params,
        macs=float_macs,
        **({"distillation": distillation} if distillation else {}),
    )
    if run is None:
        if group.is_main:
            run = Run.create(cfg.out or default_run_path(cfg.model), stage="train", **fields)
        path = broadcast_object(str(run.path) if group.is_main else None, group)
        run = run if group.is_main else FollowerRun(path)
    elif resume is None:
        run.update(**fields)

    # Batches are gathered, augmented and normalised on the training device. The random draws come
    # from a CPU generator, so a run replays the same augmentations on any device and resumes across devices.
    train_target = (torch.from_numpy(train.soft) if train.soft is not None else torch.from_numpy(train.y)).to(device)
    train_y = torch.from_numpy(train.y).to(device)
    weights = class_weights(train.y, data.num_classes).to(device) if cfg.class_weights else None
    generator = torch.Generator().manual_seed(cfg.seed + 1)
    steps_per_epoch = max(1, len(train) // cfg.batch_size)  # drop the ragged last batch (BatchNorm needs >1)
    total_steps = cfg.epochs * steps_per_epoch

    state = {"epoch": 0, "history": [], "best_acc": -1.0, "best_epoch": 0, "bad_epochs": 0, "plateau_scale": 1.0, "train_time_s": 0.0}
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
        if "scaler" in ckpt:
            scaler.load_state_dict(ckpt["scaler"])
        torch.set_rng_state(ckpt["torch_rng"])
        generator.set_state(ckpt["data_rng"])
        if ema is not None:
            ema.load_state_dict(ckpt["ema"])
        if swa is not None and not swa.load_state_dict(ckpt.get("swa")) and progress:
            console.print(f"the average of the last {cfg.swa_epochs} epochs now starts at epoch {swa.first}")
        state = ckpt["state"]
        if extend_to is not None:
            state["bad_epochs"] = 0  # an early-stopped run being extended trains again
        if progress:
            console.print(f"resuming {run.path} after epoch {state['epoch']}/{cfg.epochs}")
    elif resume is not None and progress:
        console.print(f"{run.path} stopped before its first epoch ended: training it from epoch 1")
    # Weights that are exactly zero now stay zero: the sparsity a pruning stage created survives fine-tuning.
    masks = sparsity_masks(model) if cfg.keep_sparsity else {}
    run.update(status="running", placement={"device": str(device), "amp": amp})

    log = console.print if progress else (lambda *args, **kwargs: None)
    bar = make_progress(progress, "loss {task.fields[loss]:.3f}", "acc {task.fields[acc]:.1%}", "{task.fields[ips]:.0f} img/s")
    try:
        with bar:
            for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
                if cfg.early_stop and state["bad_epochs"] >= cfg.early_stop:
                    break  # early-stopped before an interruption: a resume must not train on
                task = bar.add_task(f"epoch {epoch}/{cfg.epochs}", total=steps_per_epoch, loss=0.0, acc=0.0, ips=0.0)
                if cfg.head_epochs:
                    model.set_frozen_stages(frozen_stages(cfg, model, epoch))
                model.train()
                recipe.on_epoch_start(model, epoch)
                if cfg.balanced_sampler:
                    order = balanced_sampler_indices(train.y, len(train), generator)
                else:
                    order = torch.randperm(len(train), generator=generator)
                t_epoch, data_s = time.perf_counter(), 0.0
                if targets is not None:  # this epoch's fixed view and the teachers' cached logits on it
                    view_x, view_logits = targets.view_for_epoch(train_x, epoch)
                loss_sum, correct, seen = 0.0, 0, 0
                for i in range(steps_per_epoch):
                    step = (epoch - 1) * steps_per_epoch + i
                    lr = learning_rate(cfg, step, total_steps, steps_per_epoch, state["plateau_scale"])
                    for param_group in optimizer.param_groups:
                        param_group["lr"] = lr
                    t_data = time.perf_counter()
                    idx = order[i * cfg.batch_size : (i + 1) * cfg.batch_size].to(device)
                    # Every rank augments the whole global batch (the same random draws as one process)
                    # and keeps its share of it.
                    if targets is not None:
                        xb = shard(view_x[idx], group)
                    else:
                        xb = shard(augment(train_x[idx].float().div_(255.0), generator), group)
                    xb = ((xb - norm["mean"]) / norm["std"]).contiguous(memory_format=memory_format)
                    idx = shard(idx, group)
                    yb, target = train_y[idx], train_target[idx]
                    if cfg.mix != "none":
                        xb, target = mix_batch(xb, target, data.num_classes, cfg.mix,
                                               cfg.mix_alpha or DEFAULT_ALPHA[cfg.mix], generator)
                    data_s += time.perf_counter() - t_data

                    with autocast(device, amp):
                        logits = trained(xb)
                        loss = F.cross_entropy(logits, target, weight=weights, label_smoothing=cfg.label_smoothing)
                        if targets is not None or teacher is not None:
                            with torch.no_grad():
                                teacher_logits = view_logits[idx] if targets is not None else teacher(xb)
                            loss = distillation_loss(logits, teacher_logits, loss, cfg.distill_temperature, cfg.distill_alpha)
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()  # scaling only with fp16; a plain backward otherwise
                    scaler.step(optimizer)
                    scaler.update()
                    for param, mask in masks.items():
                        param.data.mul_(mask)
                    if ema is not None:
                        ema.update_parameters(model)

                    loss_sum += loss.item() * len(idx)
                    correct += (logits.argmax(1) == yb).sum().item()
                    seen += len(idx)
                    elapsed = time.perf_counter() - t_epoch
                    bar.update(task, advance=1, loss=loss_sum / seen, acc=correct / seen, ips=seen / elapsed)
                bar.remove_task(task)
                loss_sum, correct, seen = all_reduce_sum([loss_sum, correct, seen], group)  # the global batch's figures
                train_s = time.perf_counter() - t_epoch

                selected = ema.module if ema is not None else model  # what is validated is what is saved
                with recipe.evaluating(model):
                    val_report, val_loss = evaluate_model(selected, val, data.class_names, norm)
                record = {
                    "epoch": epoch,
                    "lr": lr,
                    "train_loss": loss_sum / seen,
                    "train_acc": correct / seen,
                    "val_loss": val_loss,
                    "val_acc": val_report["accuracy"],
                    "val_macro_f1": val_report["macro_f1"],
                    "epoch_s": train_s,
                    "data_s": data_s,
                    "images_per_s": seen / train_s,
                    **({"frozen_stages": model.frozen_stages} if cfg.head_epochs else {}),
                }
                state["history"].append(record)
                state["epoch"] = epoch
                state["train_time_s"] += time.perf_counter() - t_epoch
                if swa is not None:
                    swa.after_epoch(model, epoch)
                improved = record["val_acc"] > state["best_acc"]
                if improved:
                    state.update(best_acc=record["val_acc"], best_epoch=epoch, bad_epochs=0)
                    recipe.save_best(run, selected, spec)
                else:
                    state["bad_epochs"] += 1
                    if cfg.schedule == "plateau" and state["bad_epochs"] % PLATEAU_PATIENCE == 0:
                        state["plateau_scale"] *= 0.5
                if group.is_main:
                    _save_epoch(run, model, optimizer, generator, state, ema, scaler, swa)
                log(
                    f"epoch {epoch:>3}/{cfg.epochs}  loss {record['train_loss']:.3f}  acc {record['train_acc']:.1%}"
                    f"  val_loss {val_loss:.3f}  val_acc {record['val_acc']:.1%}{' *' if improved else '  '}"
                    f"  lr {lr:.2g}  {record['images_per_s']:.0f} img/s  {train_s:.0f}s"
                    f"  (data {100 * data_s / train_s:.0f}%)",
                    highlight=False,
                    soft_wrap=True,
                )
                if on_epoch_end is not None:
                    on_epoch_end(epoch, record)
                if cfg.early_stop and state["bad_epochs"] >= cfg.early_stop:
                    log(f"early stop: no val improvement for {cfg.early_stop} epochs")
                    break
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (errors.Terminated)
        run.update(status="interrupted")
        run.unlock()
        raise

    if not group.is_main:  # rank 0 evaluates the best weights and closes the run; the others wait for it
        barrier(group)
        leave_group(group)
        return Run.load(run.path)
    if swa is not None and swa.epochs_averaged:  # kept as the run's model only if it beats the best epoch on val
        averaged = swa.finalize(train_x, norm, memory_format)
        state["swa"] = swa.verdict(evaluate_model(averaged, val, data.class_names, norm)[0], state["best_acc"])
        if state["swa"]["kept"]:
            recipe.save_best(run, averaged, spec)
        log(f"average of epochs {swa.span[0]}-{swa.span[1]}: val_acc {state['swa']['val_acc']:.1%} "
            f"({'kept: better than' if state['swa']['kept'] else 'not kept: best single epoch'} "
            f"epoch {state['best_epoch']}'s {state['best_acc']:.1%})", highlight=False)
    finished = recipe.finish(run, cfg, data, state, model)
    barrier(group)
    leave_group(group)
    return finished


def load_teacher(ref: str, class_names) -> Teacher:
    """A distillation teacher (zoo:NAME, a run folder or a .pt), which must predict the same classes."""
    teacher, spec = load_model_from(ref)
    if list(spec["class_names"]) != list(class_names):
        raise ConfigError(f"--teacher {ref}: its classes {spec['class_names']} differ from the data's {list(class_names)}")
    name = zoo.zoo_name(ref)  # recorded as zoo:NAME: a bare name read back elsewhere may be a local folder
    return Teacher(ref if name is None else f"{zoo.PREFIX}{name}", teacher.eval(), spec)


class Ensemble(torch.nn.Module):
    """Several teachers scoring each batch as it is drawn: their mean logits."""

    def __init__(self, teachers: list[Teacher]):
        super().__init__()
        self.members = torch.nn.ModuleList(t.model for t in teachers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members]).mean(0)


def resumed_config(run: Run, extend_to: int | None) -> TrainConfig:
    """The saved settings of a run being resumed; with `extend_to`, its epochs raised (and the change recorded)."""
    if "config" not in run.manifest:
        raise RunError(f"{run.path}: this run did not train, so there is nothing to resume")
    cfg = TrainConfig.from_dict(run.manifest["config"])
    if extend_to is None:
        if run.manifest.get("status") == "complete":
            raise RunError(f"{run.path}: this run already finished; pass --epochs N (more than its "
                           f"{cfg.epochs}) to train it longer")
        return cfg
    done = run.manifest.get("epochs_done", 0)
    if extend_to <= done or extend_to < cfg.epochs:
        raise ConfigError(f"--epochs {extend_to} with --resume must be at least the run's {cfg.epochs} "
                          f"and more than the {done} it has done")
    if run.manifest.get("status") == "complete" and not (run.path / RESUME_FILE).exists():
        raise RunError(f"{run.path}: finished without keeping {RESUME_FILE}, so it cannot be extended; "
                       "train a new run instead")
    if extend_to != cfg.epochs:
        changes = list(run.manifest.get("epoch_changes", []))
        changes.append({"after_epoch": done, "from": cfg.epochs, "to": extend_to, "at": now_iso()})
        cfg = replace(cfg, epochs=extend_to)
        run.update(config=cfg.to_dict(), epoch_changes=changes)  # the cosine / step schedule follows the new length
    return cfg


def state_epoch(ckpt: dict | None) -> int:
    """Epochs a resume checkpoint has done (0 for a fresh run)."""
    return ckpt["state"]["epoch"] if ckpt is not None else 0


def require_same_data(run: Run, data) -> None:
    """A resumed run must see the data it started with: a changed file would silently mix two data sets."""
    recorded = (run.manifest.get("data") or {}).get("sha256")
    current = data.meta.get("sha256")
    if recorded and current and recorded != current:
        raise RunError(f"{run.path}: its data {data.source} changed since the run started "
                       f"(sha256 {recorded[:12]}... now {current[:12]}...); restore it or start a new run")


def _require_same_extra(run: Run, extra_meta: dict) -> None:
    recorded = ((run.manifest.get("data") or {}).get("extra") or {}).get("sha256")
    if recorded and recorded != extra_meta["sha256"]:
        raise RunError(f"{run.path}: its --extra-data {extra_meta['path']} changed since the run started; "
                       "restore it or start a new run")


def _load_resume_state(run: Run) -> dict:
    return load_state_file(run.path / RESUME_FILE, RESUME_FORMAT, "fercomp resume checkpoint")


def sparsity_masks(model: torch.nn.Module) -> dict[torch.nn.Parameter, torch.Tensor]:
    """Non-zero masks of every conv / linear weight that has zeros."""
    masks = {}
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            mask = module.weight.detach() != 0
            if not bool(mask.all()):
                masks[module.weight] = mask.to(module.weight.dtype)
    return masks


def _save_epoch(run: Run, model, optimizer, generator: torch.Generator, state: dict, ema=None, scaler=None,
                swa: LastEpochsAverage | None = None) -> None:
    save_torch(
        run.path / RESUME_FILE,
        {
            "format": RESUME_FORMAT,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "data_rng": generator.get_state(),
            "state": state,
            **({"ema": ema.state_dict()} if ema is not None else {}),
            **({"swa": swa.state_dict()} if swa is not None else {}),
            **({"scaler": scaler.state_dict()} if scaler is not None and scaler.is_enabled() else {}),
        },
    )
    write_text(run.path / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in state["history"]))
    run.update(epochs_done=state["epoch"], train_time_s=round(state["train_time_s"], 1))
    # last: the plot is cosmetic and slow the first time (matplotlib builds its font cache)
    plot_curves(state["history"], run.path / "curves.png", title=run.name)


def history_metrics(state: dict) -> dict[str, Any]:
    """Summary of the epochs run: best epoch, time, and the share of time spent on the data path."""
    history = state["history"]
    epoch_times = [r["epoch_s"] for r in history]
    return {
        "best_epoch": state["best_epoch"],
        "val_acc": state["best_acc"],
        "epochs_run": state["epoch"],
        "train_time_s": round(state["train_time_s"], 1),
        "mean_epoch_s": round(float(np.mean(epoch_times)), 2),
        "data_fraction": round(sum(r["data_s"] for r in history) / max(1e-9, sum(epoch_times)), 4),
        **_average_metrics(state.get("swa")),
    }


def _average_metrics(swa: dict | None) -> dict[str, Any]:
    """The epoch average's figures; its validation accuracy is the run's when it was the one kept."""
    if swa is None:
        return {}
    return {"weight_average": swa, **({"val_acc": swa["val_acc"]} if swa["kept"] else {})}


def _finish(run: Run, cfg: TrainConfig, data: FerData, state: dict) -> Run:
    """Evaluate the best-on-val weights, record the metrics, drop the resume checkpoint."""
    model, spec = run.load_model()
    metrics = history_metrics(state)
    if cfg.evaluate_test and "test" in data.splits and len(data.splits["test"]):
        report, _ = evaluate_model(model, data.split("test"), data.class_names, spec["normalization"])
        write_evaluation(run.path, "test", report, source=data.source)
        metrics.update(test_acc=report["accuracy"], test_macro_f1=report["macro_f1"])
    # last.pt stays: `fercomp train --resume RUN --epochs N` can train a finished run longer.
    run.update(status="complete", metrics=metrics)
    run.unlock()
    return run
