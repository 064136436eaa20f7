"""Runs the edge-format tests export: a float model and an INT8 one with its float parent.

With the real FER2013 beside the checkout they are copies of `zoo:tiny` and `zoo:compact-int8`
(parity on the 3,589 PrivateTest images); without it, a separable_cnn that learned the synthetic
faces and its PTQ INT8 (parity on their synthetic test split).
"""

from __future__ import annotations

from pathlib import Path

from conftest import SHARED_DATA
from fercomp.compress.quantize import QuantizeConfig, quantize_run
from fercomp.runs import Run, writable_copy
from fercomp.train import TrainConfig, fit

REAL = SHARED_DATA / "fer2013.npz"


def make_edge_runs(root: Path) -> dict:
    """{"float": Run, "int8": Run, "data": --data for export (None: the run's own), "real": bool}."""
    if REAL.exists():
        tiny = writable_copy(Run.load("zoo:tiny"), root / "tiny")
        int8 = writable_copy(Run.load("zoo:compact-int8"), root / "compact-int8")  # its parent stays zoo:compact
        return {"float": tiny, "int8": int8, "data": str(REAL), "real": True}
    base = fit(TrainConfig(model="separable_cnn", synthetic_per_class=120, epochs=4, out=str(root / "base")),
               progress=False)
    int8 = quantize_run(QuantizeConfig(parent=str(base.path), calib=64, out=str(root / "base-int8")), progress=False)
    return {"float": base, "int8": int8, "parent": base, "data": None, "real": False}
