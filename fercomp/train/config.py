"""Training configuration: one dataclass, validated, with per-model defaults for unset fields."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import ConfigError

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step", "plateau", "constant")

# Used when neither the user nor the model's default_cfg sets a field.
GLOBAL_DEFAULTS: dict[str, Any] = {
    "epochs": 30,
    "batch_size": 64,
    "lr": 0.01,
    "optimizer": "sgd",
    "schedule": "cosine",
    "weight_decay": 5e-4,
    "label_smoothing": 0.0,
    "augment": "geometric",
    "warmup_epochs": 0,
}


@dataclass
class TrainConfig:
    """Everything `fercomp train` needs. Fields left as None take the model's recommended default."""

    model: str = "separable_cnn"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    data: str | None = None  # None = the built-in synthetic faces
    labels: str = "fer2013"
    class_map: dict[str, str] | None = None
    ferplus_csv: str | None = None
    val_fraction: float = 0.1
    synthetic_per_class: int = 300
    extra_data: str | None = None  # more train images (e.g. GAN samples); never in val or test

    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    optimizer: str | None = None
    schedule: str | None = None
    weight_decay: float | None = None
    momentum: float = 0.9
    label_smoothing: float | None = None
    augment: str | None = None
    warmup_epochs: int | None = None
    class_weights: bool = False
    balanced_sampler: bool = False
    early_stop: int | None = None  # patience in epochs on val accuracy; None = off
    mix: str = "none"  # none | mixup | cutmix (data/mixing.py)
    mix_alpha: float | None = None  # Beta(alpha, alpha); None = 0.2 for mixup, 1.0 for cutmix

    # Two-phase transfer learning (torchvision models): the first head_epochs train only the new
    # head with the backbone frozen; then the last `unfreeze` stages (None = all) train too, with
    # their own warm-up-free schedule peaking at finetune_lr (default lr / 10).
    head_epochs: int = 0
    unfreeze: int | None = None
    finetune_lr: float | None = None

    # Later stages: start from a checkpoint (e.g. a pruned model), distil from a teacher run,
    # keep weights that are exactly zero at the start at zero (unstructured / 2:4 sparsity).
    init_from: str | None = None
    distill_from: str | None = None  # one teacher, or several separated by commas (an ensemble)
    # 0: the teachers score every training batch as it is drawn. N > 0: their logits (ensemble +
    # flip TTA) on N fixed augmented views are computed once and cached (teacher_cache.py).
    teacher_views: int = 0
    distill_temperature: float = 4.0
    distill_alpha: float = 0.7
    keep_sparsity: bool = False

    # Exponential moving average of the weights (and BatchNorm statistics): validated, selected
    # and saved instead of the raw weights. None = off; typical 0.999.
    ema: float | None = None
    # Stochastic weight averaging over the schedule's tail: the mean of the end-of-epoch weights of
    # the last N epochs, BatchNorm statistics recomputed on the clean training images, kept as the
    # run's model when it beats the best single epoch on validation. 0 = off.
    swa_epochs: int = 0

    # Where and how precisely it trains (see distributed.py): None = auto (CUDA, then MPS, else CPU;
    # bf16 autocast on a GPU that has it, fp32 elsewhere). A resume may change both.
    device: str | None = None
    amp: str | None = None
    sync_bn: bool = False  # under torchrun on GPUs: BatchNorm statistics over the global batch
    compile: bool = False  # torch.compile the training forward (eager again, with a warning, if it fails)

    # NHWC activations: ~25% faster conv training on this CPU (oneDNN); off for models where it is not.
    channels_last: bool = True
    seed: int = 0
    threads: int | None = None
    out: str | None = None  # run folder; default artifacts/<model>[-N]
    evaluate_test: bool = True  # evaluate the best weights on the test split at the end

    def resolved(self, model_defaults: dict[str, Any]) -> "TrainConfig":
        """A copy with every unset field filled from the model's defaults, then global defaults."""
        values = asdict(self)
        for key, default in GLOBAL_DEFAULTS.items():
            if values[key] is None:
                values[key] = model_defaults.get(key, default)
        # Later stages run from other working directories: keep file paths absolute.
        for key in ("data", "ferplus_csv", "init_from", "extra_data"):
            if values[key] and values[key] != "synthetic" and Path(values[key]).exists():
                values[key] = str(Path(values[key]).resolve())
        if values["distill_from"]:
            values["distill_from"] = ",".join(str(Path(ref).resolve()) if Path(ref).exists() else ref
                                              for ref in self.teachers)
        if values["head_epochs"] and values["finetune_lr"] is None:
            values["finetune_lr"] = values["lr"] / 10
        cfg = TrainConfig(**values)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        def need(cond: bool, flag: str, rule: str, value: Any) -> None:
            if not cond:
                raise ConfigError(f"{flag} must be {rule} (got {value!r})")

        need(self.epochs is None or self.epochs >= 1, "--epochs", ">= 1", self.epochs)
        need(self.batch_size is None or self.batch_size >= 1, "--batch-size", ">= 1", self.batch_size)
        need(self.lr is None or self.lr > 0, "--lr", "> 0", self.lr)
        need(self.optimizer is None or self.optimizer in OPTIMIZERS, "--optimizer", f"one of {OPTIMIZERS}", self.optimizer)
        need(self.schedule is None or self.schedule in SCHEDULES, "--schedule", f"one of {SCHEDULES}", self.schedule)
        need(self.weight_decay is None or self.weight_decay >= 0, "--weight-decay", ">= 0", self.weight_decay)
        need(
            self.label_smoothing is None or 0 <= self.label_smoothing < 1,
            "--label-smoothing", "in [0, 1)", self.label_smoothing,
        )
        need(self.warmup_epochs is None or self.warmup_epochs >= 0, "--warmup-epochs", ">= 0", self.warmup_epochs)
        need(self.early_stop is None or self.early_stop >= 1, "--early-stop", ">= 1 epoch", self.early_stop)
        need(self.head_epochs >= 0, "--head-epochs", ">= 0", self.head_epochs)
        need(self.epochs is None or self.head_epochs < self.epochs, "--head-epochs", "less than --epochs", self.head_epochs)
        need(self.unfreeze is None or self.unfreeze >= 1, "--unfreeze", ">= 1 stage", self.unfreeze)
        need(self.finetune_lr is None or self.finetune_lr > 0, "--finetune-lr", "> 0", self.finetune_lr)
        if (self.unfreeze is not None or self.finetune_lr is not None) and not self.head_epochs:
            raise ConfigError("--unfreeze and --finetune-lr belong to two-phase training; set --head-epochs N too")
        need(0 < self.val_fraction < 0.5, "--val-fraction", "in (0, 0.5)", self.val_fraction)
        need(self.synthetic_per_class >= 10, "--synthetic-per-class", ">= 10", self.synthetic_per_class)
        need(self.threads is None or self.threads >= 1, "--threads", ">= 1", self.threads)
        need(0 <= self.momentum < 1, "--momentum", "in [0, 1)", self.momentum)
        need(self.distill_temperature > 0, "--temperature", "> 0", self.distill_temperature)
        need(0 <= self.distill_alpha <= 1, "--distill-alpha", "in [0, 1]", self.distill_alpha)
        need(self.teacher_views >= 0, "--teacher-views", ">= 0", self.teacher_views)
        if self.teacher_views and not self.distill_from:
            raise ConfigError("--teacher-views caches a teacher's outputs; give the teacher(s) with --teacher")
        from ..data.mixing import MIX_MODES

        need(self.mix in MIX_MODES, "--mix", f"one of {MIX_MODES}", self.mix)
        need(self.mix_alpha is None or self.mix_alpha > 0, "--mix-alpha", "> 0", self.mix_alpha)
        if self.mix != "none" and self.distill_from:
            raise ConfigError("--mix with --teacher: a teacher's answer on a mixed image is not the mix of its "
                              "answers; use one or the other")
        need(self.ema is None or 0 < self.ema < 1, "--ema", "in (0, 1), e.g. 0.999", self.ema)
        need(self.swa_epochs >= 0, "--swa-epochs", ">= 0", self.swa_epochs)
        need(self.epochs is None or self.swa_epochs <= self.epochs, "--swa-epochs", "at most --epochs", self.swa_epochs)
        if self.swa_epochs and self.ema:
            raise ConfigError("--swa-epochs and --ema both average the weights; pick one")
        if self.augment is not None:
            from ..data import AUGMENT_PRESETS

            need(self.augment in AUGMENT_PRESETS, "--augment", f"one of {AUGMENT_PRESETS}", self.augment)
        if self.class_weights and self.balanced_sampler:
            raise ConfigError("--class-weights and --balanced-sampler both correct imbalance; pick one")

    @property
    def teachers(self) -> list[str]:
        """The distillation teachers: --teacher A,B,... (empty without one)."""
        return [ref.strip() for ref in (self.distill_from or "").split(",") if ref.strip()]

    def for_later_stage(self, distill_from: str | None, **changes: Any) -> "TrainConfig":
        """The training settings of a stage that fine-tunes this run's model (pruning, QAT): this
        recipe with `changes`, without its epoch average (a short fine-tune has no tail to average;
        quantization observers cannot be averaged). The run's own teachers stay behind: the stage distils from
        `distill_from` (its parent) or from nothing, and a teacher rules out mixing."""
        values = {**self.to_dict(), "swa_epochs": 0, **changes, "distill_from": distill_from, "teacher_views": 0}
        if distill_from:
            values["mix"] = "none"
        return TrainConfig.from_dict(values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})
