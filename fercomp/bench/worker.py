"""Measure one run on one backend in a process of its own (see measure.run_isolated)."""

from .measure import worker_main

if __name__ == "__main__":
    raise SystemExit(worker_main())
