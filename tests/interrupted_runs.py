"""A training run killed after an epoch (Ctrl-C from the epoch hook) and resumed: what resume tests compare."""

from __future__ import annotations

import pytest

from fercomp.runs import Run
from fercomp.train import TrainConfig, fit


def killed_then_resumed(config: TrainConfig, after_epoch: int = 2) -> Run:
    """Train `config` into its folder, interrupt it after `after_epoch`, resume it to the end."""

    def stop(epoch, record):
        if epoch == after_epoch:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(config, progress=False, on_epoch_end=stop)
    return fit(TrainConfig(), resume=config.out, progress=False)
