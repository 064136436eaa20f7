"""Where training runs: the device, mixed precision, and (under torchrun) the process group.

`fit` asks this module and stays readable top to bottom. One process is the default; under
`torchrun` (WORLD_SIZE > 1 in the environment) every process joins one group (NCCL on CUDA,
gloo on CPU), takes its share of each global batch, and only rank 0 writes the run folder.
Checkpoints stay device-independent: weights are saved from CPU copies and loaded with
map_location="cpu", so a run trained on a GPU resumes, evaluates and exports on a CPU.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch

# Device and precision resolution is shared by every stage (fercomp/device.py); re-exported for fit.
from ..device import AMP_MODES, DEVICES, resolve_amp, resolve_device, resolve_placement  # noqa: F401
from ..errors import ConfigError


def autocast(device: torch.device, amp: str):
    """The forward pass's autocast context (a no-op when amp is off)."""
    if amp == "off":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, amp: str) -> torch.amp.GradScaler:
    """fp16 needs loss scaling to keep small gradients from underflowing; bf16 and fp32 do not."""
    return torch.amp.GradScaler(device.type, enabled=amp == "fp16")


# -- several processes (torchrun) ---------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def join_group(device: torch.device) -> Group:
    """Join torchrun's process group when launched by it (WORLD_SIZE > 1), else a group of one."""
    import torch.distributed as dist

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Group()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    return Group(rank=dist.get_rank(), world_size=dist.get_world_size())


def leave_group(group: Group) -> None:
    import torch.distributed as dist

    if group.distributed and dist.is_initialized():
        dist.destroy_process_group()


def shard(indices: torch.Tensor, group: Group) -> torch.Tensor:
    """This rank's part of a global batch: every world_size-th sample from its rank on."""
    return indices[group.rank :: group.world_size]


def require_divisible(batch_size: int, group: Group) -> None:
    if batch_size % group.world_size:
        raise ConfigError(f"--batch-size {batch_size} is the global batch and must divide evenly over "
                          f"{group.world_size} processes")


def all_reduce_sum(values: list[float], group: Group) -> list[float]:
    """Sum per-rank numbers (loss sums, correct counts) over the group."""
    if not group.distributed:
        return values
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor)
    return tensor.tolist()


def broadcast_object(obj, group: Group):
    """Rank 0's value of a picklable object, on every rank (e.g. the run folder's path)."""
    if not group.distributed:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def wrap(model: torch.nn.Module, device: torch.device, group: Group, sync_bn: bool) -> torch.nn.Module:
    """DistributedDataParallel over the group (gradients averaged every step); the model itself otherwise."""
    if not group.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)


def barrier(group: Group) -> None:
    if group.distributed:
        import torch.distributed as dist

        dist.barrier()


class FollowerRun:
    """What every rank but 0 holds instead of the run folder: its path, the manifest as read (a
    resume needs its recorded settings on every rank), and writes that do nothing (rank 0 alone
    writes the manifest, checkpoints, plots and logs)."""

    def __init__(self, path, manifest: dict | None = None) -> None:
        from pathlib import Path

        self.path = Path(path)
        self.manifest: dict = dict(manifest or {})

    def lock(self) -> "FollowerRun":
        return self

    def unlock(self) -> None:
        pass

    def update(self, **fields) -> None:
        pass

    def save_model(self, model, spec) -> None:
        pass
