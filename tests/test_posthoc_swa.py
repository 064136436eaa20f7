"""benchmarks/posthoc_swa.py: the average of several epochs' weights."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import posthoc_swa  # noqa: E402


def test_float_tensors_are_averaged_and_integer_buffers_come_from_the_newest_epoch():
    old = {"w": torch.tensor([1.0, 3.0]), "bn.num_batches_tracked": torch.tensor(10)}
    new = {"w": torch.tensor([3.0, 5.0]), "bn.num_batches_tracked": torch.tensor(20)}
    avg = posthoc_swa.averaged([old, new])
    assert torch.equal(avg["w"], torch.tensor([2.0, 4.0]))
    assert avg["bn.num_batches_tracked"].item() == 20 and avg["bn.num_batches_tracked"].dtype == torch.int64
