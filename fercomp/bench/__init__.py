"""`fercomp bench`: measured size, accuracy, latency and throughput per model, backend and batch size."""

from .measure import BenchConfig, BackendUnavailable, bench_models

__all__ = ["BenchConfig", "BackendUnavailable", "bench_models"]
