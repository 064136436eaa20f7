"""The row format of `fercomp bench` reports (report.json), shared with the board's benchmark so a
Jetson's results merge into the same table (`fercomp bench --merge`).

A report is {"schema": REPORT_SCHEMA, "created": ISO time, "host": {...}, "rows": [row, ...]};
every row is one model x backend x batch size and says how it was measured.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

REPORT_SCHEMA = "fercomp-bench/1"
ROW_FIELDS = (
    "model", "run", "parent", "backend", "precision", "device", "batch", "threads",
    "params", "macs", "file_bytes", "sparsity", "accuracy", "macro_f1", "split",
    "p50_ms", "p95_ms", "p99_ms", "mean_ms", "images_per_s", "iters", "peak_rss_mb", "status", "reason",
    # TensorRT only: the engine alone, input already on the GPU (p50_ms etc. include host<->device copies)
    "compute_p50_ms", "compute_p95_ms",
)


def make_row(**fields: Any) -> dict[str, Any]:
    """A row with every field present (None where not measured); unknown fields are a bug."""
    unknown = set(fields) - set(ROW_FIELDS)
    if unknown:
        raise ValueError(f"unknown report fields: {sorted(unknown)}")
    row = {name: fields.get(name) for name in ROW_FIELDS}
    row["status"] = row["status"] or "ok"
    return row


def make_report(host: dict[str, Any], rows: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"schema": REPORT_SCHEMA, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "host": host, "rows": rows, **extra}
