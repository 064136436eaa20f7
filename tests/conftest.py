"""Shared test fixtures: thread count, the real FER2013 data when it sits beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Two cores here and in CI: keep tests from oversubscribing them.
torch.set_num_threads(2)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FERCOMP_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def fer2013_npz() -> Path:
    """Path of the real FER2013 npz; skips the test when ../shared/data is absent."""
    path = SHARED_DATA / "fer2013.npz"
    if not path.exists():
        pytest.skip(f"real data not found at {path}")
    return path


@pytest.fixture(scope="session")
def ferplus_csv() -> Path:
    path = SHARED_DATA / "fer2013new.csv"
    if not path.exists():
        pytest.skip(f"FER+ votes not found at {path}")
    return path


@pytest.fixture(scope="session")
def trained_synthetic(tmp_path_factory):
    """A separable_cnn that learned the synthetic faces (shared: quantization and explanation tests).
    One thread: two threads on a core another process is using took 200 s instead of 15 here."""
    from fercomp.train import TrainConfig, fit

    root = tmp_path_factory.mktemp("trained")
    run = fit(TrainConfig(model="separable_cnn", synthetic_per_class=300, epochs=8, threads=1, out=str(root / "base")),
              progress=False)
    assert run.manifest["metrics"]["test_acc"] > 0.85  # a model that learned, so agreement means something
    return run
