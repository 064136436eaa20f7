"""A soft-voting ensemble as one model: every member runs inside it, its output is log(weighted mean
of the members' probabilities), so softmax of the output is exactly that mean.

Being one nn.Module, an ensemble saves as one weights-only checkpoint (the spec lists the
members' specs; the state dict holds `members.<i>.*`), exports as one ONNX and benches like any
model. Members may be pruned: each is rebuilt to its saved widths.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import ConfigError

ENSEMBLE = "ensemble"


class SoftVotingEnsemble(nn.Module):
    def __init__(self, members: list[nn.Module], weights: list[float]):
        super().__init__()
        if len(members) < 2:
            raise ConfigError("an ensemble needs at least two members")
        if len(weights) != len(members) or min(weights) < 0 or sum(weights) <= 0:
            raise ConfigError(f"--weights needs one non-negative weight per member, not all zero (got {weights})")
        self.members = nn.ModuleList(members)
        total = float(sum(weights))
        self.register_buffer("weights", torch.tensor([w / total for w in weights], dtype=torch.float32))
        self.input_size = tuple(getattr(members[0], "input_size", (48, 48)))
        self.in_chans = int(getattr(members[0], "in_chans", 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = sum(w * torch.softmax(m(x), dim=1) for w, m in zip(self.weights, self.members))
        return torch.log(probs.clamp_min(1e-12))


def build_ensemble(kwargs: dict[str, Any], state_dict: dict[str, torch.Tensor] | None) -> SoftVotingEnsemble:
    """Rebuild an ensemble from its spec kwargs ({"members": [specs], "weights": [...]}) and weights."""
    from .registry import create
    from .reshape import fit_to_state_dict

    members = []
    for i, spec in enumerate(kwargs["members"]):
        member = create(spec["name"], num_classes=spec["num_classes"], **spec["kwargs"])
        if state_dict is not None:
            prefix = f"members.{i}."
            fit_to_state_dict(member, {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)})
        members.append(member)
    model = SoftVotingEnsemble(members, list(kwargs["weights"]))
    if state_dict is not None and "weights" in state_dict:
        model.weights.copy_(state_dict["weights"])
    return model.eval()
