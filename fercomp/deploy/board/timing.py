"""Latency measurement: warm-up, then per-call wall times summarised as percentiles (numpy only)."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB.

    Linux's VmHWM belongs to the current address space, so a freshly exec'd worker starts from
    zero; getrusage's ru_maxrss survives execve and would report the parent's peak instead.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def summarize(samples_s: list[float] | np.ndarray, batch_size: int = 1) -> dict[str, float]:
    """p50 / p95 / p99 / mean latency in milliseconds and throughput in images per second."""
    ms = np.asarray(samples_s, dtype=np.float64) * 1000.0
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "images_per_s": float(batch_size * 1000.0 / np.median(ms)),
        "iters": int(len(ms)),
        "batch_size": int(batch_size),
    }


def measure(fn: Callable[[], object], *, warmup: int = 10, iters: int = 50, batch_size: int = 1,
            clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Call `fn` `warmup` times untimed, then `iters` times timed; summarise."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(iters):
        start = clock()
        fn()
        samples.append(clock() - start)
    return summarize(samples, batch_size)
