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

from ..errors import ConfigError

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
AMP_MODES = ("auto", "bf16", "fp16", "off")


def resolve_device(name: str | None) -> torch.device:
    """auto = CUDA if available, then Apple MPS, else CPU; an unavailable device is a ConfigError."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", _local_rank() % torch.cuda.device_count())
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not _mps_available():
            raise ConfigError("--device mps: Apple's Metal (MPS) backend is not available on this host; "
                              "use --device cpu or auto")
        return torch.device("mps")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: this host has no CUDA GPU (or torch was built without CUDA); "
                              "use --device cpu or auto")
        index = _local_rank() if name == "cuda" else _cuda_index(name)
        if index >= torch.cuda.device_count():
            raise ConfigError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
        return torch.device("cuda", index)
    raise ConfigError(f"--device must be one of {', '.join(DEVICES)} (got {name!r})")


def _cuda_index(name: str) -> int:
    try:
        return int(name.split(":", 1)[1])
    except ValueError:
        raise ConfigError(f"--device {name}: expected cuda:N with N a GPU index") from None


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def resolve_amp(mode: str | None, device: torch.device) -> str:
    """The mixed precision actually used: auto = bf16 on a GPU that supports it, else off (CPU, MPS)."""
    mode = (mode or "auto").strip().lower()
    if mode not in AMP_MODES:
        raise ConfigError(f"--amp must be one of {', '.join(AMP_MODES)} (got {mode!r})")
    if mode == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "off"
    if mode == "fp16" and device.type == "cpu":
        raise ConfigError("--amp fp16 needs a GPU; on the CPU use --amp bf16 or off")
    if mode == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"--amp bf16: {torch.cuda.get_device_name(device)} has no bf16; use --amp fp16")
    return mode


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


def _local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


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
    """What every rank but 0 holds instead of the run folder: its path, and writes that do nothing
    (rank 0 alone writes the manifest, checkpoints, plots and logs)."""

    def __init__(self, path) -> None:
        from pathlib import Path

        self.path = Path(path)
        self.manifest: dict = {}

    def lock(self) -> "FollowerRun":
        return self

    def unlock(self) -> None:
        pass

    def update(self, **fields) -> None:
        pass

    def save_model(self, model, spec) -> None:
        pass
