"""Weight averages the trainer can keep beside the raw weights (torch.optim.swa_utils).

- `make_ema`: an exponential moving average, updated every step, validated and saved instead of the raw weights.
- `LastEpochsAverage`: the equal-weight average of the end-of-epoch weights of a run's last K epochs
  (stochastic weight averaging over the tail of the schedule). BatchNorm statistics of an average
  of weights are not the average of their statistics, so they are recomputed at the end on the
  un-augmented training images: the images test time sees.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn

BN_BATCH = 256  # images per forward pass while BatchNorm statistics are recomputed


def make_ema(model: torch.nn.Module, decay: float) -> AveragedModel:
    """An exponential moving average of the weights and the BatchNorm buffers."""
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


class LastEpochsAverage:
    """The mean of the end-of-epoch weights of epochs `first`..`last` of a run of `last` epochs."""

    def __init__(self, model: torch.nn.Module, epochs: int, count: int):
        self.first, self.last = epochs - count + 1, epochs
        self.average = AveragedModel(model)  # equal weights; buffers are recomputed, not averaged

    @property
    def epochs_averaged(self) -> int:
        return int(self.average.n_averaged)

    @property
    def span(self) -> list[int]:
        """[first, last] epoch averaged so far (an early stop ends the window sooner)."""
        return [self.first, self.first + self.epochs_averaged - 1]

    def verdict(self, val_report: dict, best_single_acc: float) -> dict:
        """What the manifest records: the epochs, the average's validation figures, and whether it is kept."""
        return {"epochs": self.span, "val_acc": val_report["accuracy"], "val_macro_f1": val_report["macro_f1"],
                "kept": val_report["accuracy"] > best_single_acc}

    def after_epoch(self, model: torch.nn.Module, epoch: int) -> None:
        if epoch >= self.first:
            self.average.update_parameters(model)

    def state_dict(self) -> dict:
        return {"first": self.first, "average": self.average.state_dict()}

    def load_state_dict(self, saved: dict | None) -> bool:
        """Restore a resumed run's average; False (a fresh one) when the window moved (--epochs raised)."""
        if saved is None or saved["first"] != self.first:
            return False
        self.average.load_state_dict(saved["average"])
        return True

    def finalize(self, images: torch.Tensor, norm: dict, memory_format=torch.contiguous_format) -> torch.nn.Module:
        """The averaged model with BatchNorm statistics recomputed on `images` (uint8 [N,1,H,W]), in order."""
        return recompute_batchnorm(self.average.module, images, norm, memory_format)


def recompute_batchnorm(model: torch.nn.Module, images: torch.Tensor, norm: dict,
                        memory_format=torch.contiguous_format) -> torch.nn.Module:
    """`model` (in eval mode) with its BatchNorm statistics recomputed on uint8 `images`, BN_BATCH at a time in order."""
    update_bn(_normalized_batches(images, norm, memory_format), model)
    return model.eval()


def _normalized_batches(images: torch.Tensor, norm: dict, memory_format) -> Iterator[torch.Tensor]:
    for i in range(0, len(images), BN_BATCH):
        x = images[i : i + BN_BATCH].float().div_(255.0)
        yield ((x - norm["mean"]) / norm["std"]).contiguous(memory_format=memory_format)
