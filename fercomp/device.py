"""Where a stage runs: --device (auto, cpu, cuda, cuda:N, mps) and --amp, resolved and checked.

Every stage that runs a model asks this module (training through `train/distributed.py`), so the
flags mean the same everywhere and an unavailable device is one ConfigError before anything is
written. It sits beside `runs.py` at the bottom of the package: stages import it, it imports none.
"""

from __future__ import annotations

import os

import torch

from .errors import ConfigError

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
AMP_MODES = ("auto", "bf16", "fp16", "off")


def resolve_device(name: str | None) -> torch.device:
    """auto = CUDA if available, then Apple MPS, else CPU; an unavailable device is a ConfigError."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank() % torch.cuda.device_count())
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
        index = local_rank() if name == "cuda" else _cuda_index(name)
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


def resolve_placement(device: str | None, amp: str | None = None) -> tuple[torch.device, str]:
    """(device, amp) for a stage's --device / --amp: checked before the stage writes anything."""
    resolved = resolve_device(device)
    return resolved, resolve_amp(amp, resolved)


def local_rank() -> int:
    """This process's GPU slot under torchrun (0 otherwise)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


class CompiledOrEager:
    """`torch.compile(module)` called like the module, falling back to the eager module (with one
    warning through `warn`) when compilation fails: inductor needs a C++ compiler and supports
    fewer operators on some devices, and a failure should cost speed, not the run."""

    def __init__(self, module: torch.nn.Module, warn):
        self.eager = module
        self.compiled = torch.compile(module)
        self.warn = warn
        self.failed: str | None = None

    def __call__(self, *args, **kwargs):
        if self.failed is None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as err:  # torch._dynamo/inductor raise many types; all mean "run eager"
                self.failed = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                self.warn(f"--compile: torch.compile failed ({self.failed}); training continues without it")
        return self.eager(*args, **kwargs)
