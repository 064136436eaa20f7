"""`fercomp prune RUN`: a trained run in, a smaller run out, with the numbers to prove it.

Flow: load the parent's best weights; measure it; prune (structured channels, global
magnitude sparsity, or 2:4); save the pruned weights as `pruned.pt`; fine-tune them with the
parent's recipe (optionally distilling from the parent) through the ordinary, resumable
training loop; record params, MACs and accuracy before pruning, right after it, and after
fine-tuning. With `--steps N` the structured ratio is reached in N prune + fine-tune rounds,
each one a run of its own (`<out>/step-k`), the last one being `<out>` itself. `<out>` is created
first and records the plan, so `fercomp train --resume <out>` continues an interrupted multi-step
prune from the round (and epoch) where it stopped.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..data import FerData
from ..device import resolve_placement
from ..errors import ConfigError, RunError
from ..models import count_macs, count_params
from ..runs import MANIFEST, RESUME_FILE, Run, is_2to4_run, recorded_sparsity, removed_on_failure, save_checkpoint  # noqa: F401
from ..train import TrainConfig, fit
from ..train.evaluate import data_for_run, evaluate_model, reports_by_split, write_evaluation
from ..ui import console
from .sparsity import PATTERNS, apply_2to4, global_magnitude_prune, is_2to4, layer_sparsity, overall_sparsity
from .structured import IMPORTANCE_CRITERIA, prune_channels

PRUNED_FILE = "pruned.pt"


TAYLOR_BATCHES = 8
FINETUNE_LR_FACTOR = 0.1  # fine-tuning starts at a tenth of the parent's peak lr unless --lr says otherwise


@dataclass
class PruneConfig:
    parent: str
    ratio: float = 0.5
    importance: str = "l1"
    global_pruning: bool = False
    round_to: int | None = None
    steps: int = 1
    unstructured: bool = False
    sparsity: float = 0.5
    pattern: str | None = None
    finetune_epochs: int = 10
    lr: float | None = None
    distill: bool = False
    temperature: float = 4.0
    alpha: float = 0.7
    out: str | None = None
    threads: int | None = None
    data: str | None = None  # measure and fine-tune on this source (default: the parent's own)
    device: str | None = None  # fine-tuning and distillation: --device / --amp as `train` takes them
    amp: str | None = None

    @property
    def method(self) -> str:
        if self.pattern:
            return f"semi-structured {self.pattern}"
        return "unstructured magnitude" if self.unstructured else "structured channels"

    def validate(self) -> None:
        if self.pattern is not None and self.pattern not in PATTERNS:
            raise ConfigError(f"--pattern must be one of {', '.join(PATTERNS)} (got {self.pattern!r})")
        if self.unstructured and self.pattern:
            raise ConfigError("--unstructured and --pattern are two different sparsities; pick one")
        if self.unstructured and not 0 < self.sparsity < 1:
            raise ConfigError(f"--sparsity must be in (0, 1) (got {self.sparsity})")
        if not (self.unstructured or self.pattern):
            if not 0 < self.ratio < 1:
                raise ConfigError(f"--ratio must be in (0, 1), the fraction of channels removed (got {self.ratio})")
            if self.importance not in IMPORTANCE_CRITERIA:
                raise ConfigError(f"--importance must be one of {', '.join(IMPORTANCE_CRITERIA)} (got {self.importance!r})")
        if self.steps < 1:
            raise ConfigError(f"--steps must be >= 1 (got {self.steps})")
        if self.round_to is not None and self.round_to < 1:
            raise ConfigError(f"--round-to must be >= 1 (got {self.round_to})")
        if self.finetune_epochs < 0:
            raise ConfigError(f"--finetune-epochs must be >= 0 (got {self.finetune_epochs})")
        if self.distill and self.finetune_epochs == 0:
            raise ConfigError("--distill needs --finetune-epochs > 0")
        if self.lr is not None and self.lr <= 0:
            raise ConfigError(f"--lr must be > 0 (got {self.lr})")
        if self.temperature <= 0:
            raise ConfigError(f"--temperature must be > 0 (got {self.temperature})")
        if not 0 <= self.alpha <= 1:
            raise ConfigError(f"--alpha must be in [0, 1] (got {self.alpha})")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be >= 1 (got {self.threads})")
        resolve_placement(self.device, self.amp)


def _load_parent(path: str) -> tuple[Run, torch.nn.Module, dict[str, Any]]:
    parent = Run.load(path)
    if parent.stage == "quantize":
        raise RunError(f"{parent.path}: a quantized run cannot be pruned; prune its float parent instead")
    parent.require_complete()
    model, spec = parent.load_model()
    if "config" not in parent.manifest:
        raise RunError(f"{parent.path}: has no training recipe to fine-tune with (manifest lacks 'config')")
    return parent, model, spec


def _accuracy(model: torch.nn.Module, data: FerData, spec: dict) -> dict[str, float]:
    from ..deploy.runtime import TorchPredictor

    return {name: r["accuracy"] for name, r in reports_by_split(TorchPredictor(model, spec), data).items()}


def _calibration_batches(data: FerData, spec: dict, seed: int, batch_size: int = 64):
    """A few normalised training batches for the Taylor criterion's gradients."""
    from ..deploy.runtime import preprocess

    train = data.split("train")
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[: TAYLOR_BATCHES * batch_size]
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size].numpy()
        yield torch.from_numpy(preprocess(train.x[idx], spec)), torch.from_numpy(train.y[idx])


def _default_out(parent: Run, cfg: PruneConfig) -> Path:
    if cfg.pattern:
        tag = "sp24"
    elif cfg.unstructured:
        tag = f"s{round(100 * cfg.sparsity)}"
    else:
        tag = f"p{round(100 * cfg.ratio)}"
    path, n = parent.home / f"{parent.name}-{tag}", 2
    while path.exists():
        path, n = parent.home / f"{parent.name}-{tag}-{n}", n + 1
    return path


def step_ratios(ratio: float, steps: int) -> list[float]:
    """Per-round ratios, relative to the current widths, whose product removes `ratio` overall.

    Round k targets (k/steps)·ratio of the original channels removed, so with r_k that target,
    round k removes 1 - (1 - r_k) / (1 - r_{k-1}) of what is left.
    """
    targets = [ratio * k / steps for k in range(steps + 1)]
    return [1 - (1 - targets[k]) / (1 - targets[k - 1]) for k in range(1, steps + 1)]


def prune_run(cfg: PruneConfig, progress: bool = True) -> Run:
    """Prune the parent run, fine-tune, and return the new run (the last round's with --steps)."""
    cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    parent, _, _ = _load_parent(cfg.parent)
    recipe = TrainConfig.from_dict(parent.manifest["config"])  # every round fine-tunes with the root's recipe
    out = Path(cfg.out) if cfg.out else _default_out(parent, cfg)
    if cfg.steps == 1 or cfg.unstructured or cfg.pattern:
        return _prune_once(cfg, parent, out, cfg.ratio, progress, recipe)
    if any(out.glob(f"step-*/{MANIFEST}")):  # resuming happens through --resume, never by re-running
        raise RunError(f"{out}: holds the rounds of an earlier multi-step prune; continue it with "
                       f"`fercomp train --resume {out}` or choose another --out")
    # <out> first, holding the plan: `fercomp train --resume <out>` finds every round from it.
    plan = Run.create(out, stage="prune", parent=parent, prune={
        "method": cfg.method, "ratio": cfg.ratio, "steps": cfg.steps, "round": 0,
        "plan": {**asdict(cfg), "parent": parent.ref_from(out), "parent_abs": str(parent.path.resolve()), "out": None},
    })
    try:
        return _prune_in_rounds(cfg, plan, parent, recipe, progress)
    except Exception:
        if not _rounds_started(out):  # failed before any round could be resumed: leave nothing half-written
            shutil.rmtree(out, ignore_errors=True)
        raise


def _prune_in_rounds(cfg: PruneConfig, plan: Run, root: Run, recipe: TrainConfig, progress: bool) -> Run:
    """Run (or, resuming, finish) every round: a round whose folder is complete is kept, one with a
    resume checkpoint continues its fine-tuning, any other is pruned afresh from the previous round."""
    run = root
    try:
        for k, ratio in enumerate(step_ratios(cfg.ratio, cfg.steps), start=1):
            final = k == cfg.steps
            run = _round(cfg, run, plan.path if final else plan.path / f"step-{k}", ratio, k, recipe, progress,
                         into=plan if final else None)
    except KeyboardInterrupt:
        plan.update(status="interrupted")
        plan.unlock()
        if progress:
            console.print(f"interrupted; continue with: fercomp train --resume {plan.path}", highlight=False)
        raise
    except BaseException:
        plan.unlock()
        raise
    return run


def _round(cfg: PruneConfig, previous: Run, target: Path, ratio: float, k: int, recipe: TrainConfig,
           progress: bool, into: Run | None) -> Run:
    done = Run.load(target) if into is None and (target / MANIFEST).is_file() else into
    status = done.manifest.get("status") if done is not None else None
    if status == "complete":  # finished before the interruption (its figures recorded, or recorded now)
        if "after_finetune" not in done.manifest.get("prune", {}):
            _record_final(done, sparse=False)
            done.unlock()
        return done
    if status is not None and (target / RESUME_FILE).exists() and "config" in done.manifest:
        if progress:
            console.print(f"round {k}/{cfg.steps}: continuing its fine-tuning")
        return _resume_finetune(target, progress)
    if progress:
        console.print(f"round {k}/{cfg.steps}: removing {ratio:.1%} of the remaining channels")
    return _prune_once(cfg, previous, target, ratio, progress, recipe, round_index=k, into=into)


def _rounds_started(out: Path) -> bool:
    """Whether any round of a multi-step prune got far enough to be worth resuming."""
    return (out / RESUME_FILE).exists() or any(out.glob(f"step-*/{MANIFEST}"))


def _prune_once(cfg: PruneConfig, parent: Run, out: Path, ratio: float, progress: bool, parent_cfg: TrainConfig,
                round_index: int = 1, into: Run | None = None) -> Run:
    """One prune + fine-tune into a new run at `out`, or into `into` (a multi-step prune's own folder,
    which already holds the plan and the other rounds, so it is never removed on failure)."""
    parent, model, spec = _load_parent(str(parent.path))
    data = data_for_run(parent, cfg.data)
    before = {"params": count_params(model), "macs": count_macs(model), "accuracy": _accuracy(model, data, spec)}

    if cfg.pattern:
        layers = apply_2to4(model)
        detail: dict[str, Any] = {"layers": layers, "pattern_valid": all(
            is_2to4(m) for name, m in model.named_modules() if layers.get(name) == "sparse")}
    elif cfg.unstructured:
        global_magnitude_prune(model, cfg.sparsity)
        detail = {}
    else:
        calibration = _calibration_batches(data, spec, parent_cfg.seed) if cfg.importance == "taylor" else ()
        prune_channels(model, ratio, importance=cfg.importance, global_pruning=cfg.global_pruning,
                       round_to=cfg.round_to, calibration=calibration, input_size=tuple(spec["input_size"]))
        detail = {}
    after = {"params": count_params(model), "macs": count_macs(model), "accuracy": _accuracy(model, data, spec)}
    sparse = bool(cfg.unstructured or cfg.pattern)
    record = {
        "method": cfg.method,
        "ratio_meaning": "fraction of output channels removed from every prunable layer"
        + (" (global: across all layers together)" if cfg.global_pruning else ""),
        "ratio": cfg.ratio if not sparse else None,
        "round": round_index,
        "round_ratio": ratio if not sparse else None,
        "steps": cfg.steps,
        "importance": cfg.importance if not sparse else None,
        "global": cfg.global_pruning,
        "round_to": cfg.round_to,
        "pattern": cfg.pattern,
        "sparsity": overall_sparsity(model) if sparse else None,
        "layer_sparsity": layer_sparsity(model) if sparse else None,
        "distill": cfg.distill,
        "before": before,
        "after_prune": after,
        **detail,
    }

    if into is None:
        run = Run.create(out, stage="prune", parent=parent, prune=record)
        with removed_on_failure(run):
            return _finetune_pruned(cfg, run, parent, model, spec, data, after, parent_cfg, sparse, round_index, progress)
    into.update(parent=parent.ref_from(into.path), parent_abs=str(parent.path.resolve()),
                prune={**record, "plan": into.manifest["prune"]["plan"]})
    return _finetune_pruned(cfg, into, parent, model, spec, data, after, parent_cfg, sparse, round_index, progress)


def _finetune_pruned(cfg, run, parent, model, spec, data, after, parent_cfg, sparse, round_index, progress) -> Run:
    save_checkpoint(run.path / PRUNED_FILE, model, spec)
    epochs = cfg.finetune_epochs if round_index == cfg.steps or sparse else max(1, cfg.finetune_epochs // cfg.steps)
    if epochs == 0:
        run.save_model(model, spec)
        report, _ = evaluate_model(model, data.split("test"), data.class_names, spec["normalization"])
        write_evaluation(run.path, "test", report, source=data.source)
        run.update(status="complete", params=after["params"], macs=after["macs"],
                   metrics={"val_acc": after["accuracy"].get("val"), "test_acc": report["accuracy"],
                            "test_macro_f1": report["macro_f1"]})
        return run
    finetune = parent_cfg.for_later_stage(
        parent.ref if cfg.distill else None,
        init_from=str((run.path / PRUNED_FILE).resolve()),
        epochs=epochs,
        lr=cfg.lr if cfg.lr is not None else parent_cfg.lr * FINETUNE_LR_FACTOR,
        warmup_epochs=0,
        early_stop=None,
        out=str(run.path),
        distill_temperature=cfg.temperature,
        distill_alpha=cfg.alpha,
        keep_sparsity=sparse,
        threads=cfg.threads or parent_cfg.threads,
        device=cfg.device,  # where this host fine-tunes, not where the parent trained
        amp=cfg.amp,
        **({"data": cfg.data} if cfg.data else {}),
    )
    run = fit(finetune, run=run, progress=progress)
    _record_final(run, sparse)
    run.unlock()  # finished: recording the figures took the lock again
    return run


def resume_prune(path: str | Path, progress: bool = True, device: str | None = None, amp: str | None = None) -> Run:
    """Continue an interrupted prune run: its fine-tuning, or, for a multi-step prune's folder, every
    round from the one where it stopped (ending with the weights an uninterrupted run has)."""
    run = Run.load(path)
    plan = run.manifest.get("prune", {}).get("plan")
    if plan is None or run.manifest.get("status") == "complete":  # one round (fit refuses a finished one)
        return _resume_finetune(path, progress, device, amp)
    run.lock()  # one writer: a second resume of the same prune stops here
    root = Run(run.path, {"parent": plan["parent"], "parent_abs": plan["parent_abs"]}).parent  # resolved like a parent
    known = {k: v for k, v in plan.items() if k in PruneConfig.__dataclass_fields__}
    cfg = PruneConfig(**{**known, "parent": str(root.path), "out": str(run.path)})
    cfg.device, cfg.amp = device or cfg.device, amp or cfg.amp
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if progress:
        console.print(f"resuming the {cfg.steps}-round prune {run.path}")
    return _prune_in_rounds(cfg, run, root, TrainConfig.from_dict(root.manifest["config"]), progress)


def _resume_finetune(path: str | Path, progress: bool, device: str | None = None, amp: str | None = None) -> Run:
    """Continue one prune run's interrupted fine-tuning, then record its after-fine-tune figures."""
    run = fit(TrainConfig(device=device, amp=amp), resume=path, progress=progress)
    _record_final(run, run.manifest["prune"].get("sparsity") is not None)
    run.unlock()
    return run


def _record_final(run: Run, sparse: bool) -> None:
    """Accuracy after fine-tuning next to before/after-prune, and the sparsity that survived."""
    model, _ = run.load_model()
    prune = dict(run.manifest["prune"])
    metrics = run.manifest.get("metrics", {})
    prune["after_finetune"] = {
        "params": count_params(model),
        "macs": count_macs(model),
        "accuracy": {"val": metrics.get("val_acc"), "test": metrics.get("test_acc")},
    }
    if sparse:
        prune["sparsity_after_finetune"] = overall_sparsity(model)
    if "layers" in prune:  # 2:4: the pattern must survive fine-tuning
        prune["pattern_valid_after_finetune"] = all(
            is_2to4(m) for name, m in model.named_modules() if prune["layers"].get(name) == "sparse")
    run.update(prune=prune)
