"""Latency measurement: warm-up, then per-call wall times summarised as percentiles.

The code lives in the board runtime package so the Jetson bundle times engines exactly as
`fercomp bench` times every backend here.
"""

from .deploy.board.timing import measure, peak_rss_mb, summarize

__all__ = ["measure", "peak_rss_mb", "summarize"]
