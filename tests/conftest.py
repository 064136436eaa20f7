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
