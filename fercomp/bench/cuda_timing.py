"""GPU latency with CUDA events: the time the device spent, not the host's view of an asynchronous launch.

Kernels run asynchronously, so a host clock around a forward pass measures the launch, not the
work. Each timed call is bracketed by two `torch.cuda.Event(enable_timing=True)` recorded on the
current stream; after the loop one `torch.cuda.synchronize()` waits for all of them, and
`start.elapsed_time(end)` gives the milliseconds between the two (PyTorch's documented recipe).
The warm-up calls (cuDNN autotuning, allocator growth) are synchronised before timing starts.
"""

from __future__ import annotations

from typing import Callable

from ..deploy.board.timing import summarize


def measure_cuda(fn: Callable[[], object], *, warmup: int = 10, iters: int = 50, batch_size: int = 1) -> dict[str, float]:
    """Like timing.measure, each call timed by a pair of CUDA events; same summary keys."""
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    pairs = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(iters)]
    for start, end in pairs:
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    return summarize([start.elapsed_time(end) / 1000.0 for start, end in pairs], batch_size)
