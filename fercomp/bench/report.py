"""Bench reports: the table, lineage ratios, the Pareto plot, and merging reports from several devices.

report.json (schema `fercomp-bench/1`, see docs/bench_report.md):
  {"schema", "created", "host", "hosts": {device: host}, "peak": {device: peak}, "config", "rows": [...]}
Each row is one model x backend x batch size on one device (`report_format.ROW_FIELDS`), plus
the derived `achieved_macs_per_s`, `peak_fraction` and, where its root run was measured on the
same device, `vs_root` ratios.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..deploy.board.report_format import REPORT_SCHEMA, make_report
from ..errors import ConfigError
from .peak import efficiency

RATIO_BASE_BACKEND = "torch"  # ratios are against the root run in FP32 PyTorch eager, as users train it


def add_efficiency(rows: list[dict], peaks: dict[str, dict]) -> None:
    for row in rows:
        row["achieved_macs_per_s"], row["peak_fraction"] = efficiency(row, peaks.get(row.get("device")))


def add_lineage_ratios(rows: list[dict], roots: dict[str, str]) -> None:
    """Each row's params/MACs/size/speed/accuracy against its root run's PyTorch row (same device, batch).

    `roots` maps run name -> root run name. Speed-up uses throughput at the row's batch size.
    """
    index = {(r["run"], r["backend"], r["device"], r["batch"]): r for r in rows if r.get("status") == "ok"}
    for row in rows:
        root = roots.get(row.get("run"))
        base = index.get((root, RATIO_BASE_BACKEND, row.get("device"), row.get("batch")))
        if row.get("status") != "ok" or base is None:
            row["vs_root"] = None
            continue

        def ratio(key: str) -> float | None:
            return row[key] / base[key] if row.get(key) and base.get(key) else None

        row["vs_root"] = {
            "root": root,
            "params_x": ratio("params"),
            "macs_x": ratio("macs"),
            "size_x": ratio("file_bytes"),
            "speedup_x": ratio("images_per_s"),
            "latency_p50_x": base["p50_ms"] / row["p50_ms"] if row.get("p50_ms") and base.get("p50_ms") else None,
            "accuracy_delta_pt": 100 * (row["accuracy"] - base["accuracy"])
            if row.get("accuracy") is not None and base.get("accuracy") is not None else None,
        }


def _fmt(value: Any, kind: str) -> str:
    if value is None:
        return "—"
    return {
        "int": lambda v: f"{v:,}",
        "M": lambda v: f"{v / 1e6:.2f} M",
        "MB": lambda v: f"{v / 1e6:.2f} MB",
        "pct": lambda v: f"{100 * v:.2f}%",
        "ms": lambda v: f"{v:.3f}",
        "ips": lambda v: f"{v:,.0f}",
        "x": lambda v: f"{v:.2f}x",
        "pt": lambda v: f"{v:+.2f}",
        "G": lambda v: f"{v / 1e9:.1f}",
    }[kind](value)


COLUMNS = [  # (header, row key or callable, format)
    ("run", "run", None), ("backend", "backend", None), ("prec", "precision", None), ("batch", "batch", None),
    ("params", "params", "int"), ("MACs", "macs", "M"), ("size", "file_bytes", "MB"),
    ("acc", "accuracy", "pct"), ("macro-F1", "macro_f1", "pct"),
    ("p50 ms", "p50_ms", "ms"), ("p95 ms", "p95_ms", "ms"), ("p99 ms", "p99_ms", "ms"), ("img/s", "images_per_s", "ips"),
    ("GMAC/s", "achieved_macs_per_s", "G"), ("% peak", "peak_fraction", "pct"), ("peak RSS MB", "peak_rss_mb", "int"),
]
RATIO_COLUMNS = [("params ×", "params_x"), ("MACs ×", "macs_x"), ("size ×", "size_x"), ("speed-up ×", "speedup_x"),
                 ("acc Δ pt", "accuracy_delta_pt")]


def row_cells(row: dict) -> list[str]:
    if row.get("status") != "ok":  # the reason takes the place of the measurements
        head = [str(row.get(k) if row.get(k) is not None else "—") for _, k, _ in COLUMNS[:4]]
        return head + ["unavailable: " + (row.get("reason") or "")] + [""] * (len(COLUMNS) - 5)
    cells = []
    for _, key, kind in COLUMNS:
        value = row.get(key)
        if key == "peak_rss_mb" and value is not None:
            value = int(round(value))
        cells.append(str(value) if kind is None else _fmt(value, kind))
    return cells


def ratio_cells(row: dict) -> list[str]:
    ratios = row.get("vs_root") or {}
    return [_fmt(ratios.get(k), "pt" if k.endswith("_pt") else "x") for _, k in RATIO_COLUMNS]


def markdown(report: dict) -> str:
    rows = report["rows"]
    lines = [f"# fercomp bench ({len(rows)} rows)", ""]
    for device, host in report.get("hosts", {}).items():
        peak = report.get("peak", {}).get(device)
        peak_text = (f"; measured peak FP32 {peak['fp32_macs_per_s'] / 1e9:.1f} GMAC/s, INT8 "
                     f"{peak['int8_macs_per_s'] / 1e9:.1f} GMAC/s at {peak['threads']} threads") if peak else ""
        lines.append(f"- **{device}**: {host.get('cores')} cores, torch {host.get('torch', '—')}, onnxruntime "
                     f"{host.get('onnxruntime', '—')}, TensorRT {host.get('tensorrt', '—')}{peak_text}")
    cfg = report.get("config", {})
    lines += ["", f"Latency: forward pass on a preprocessed batch, {cfg.get('warmup', '?')} warm-up calls then "
              f"{cfg.get('iters', '?')} timed; threads {cfg.get('threads', '?')}; accuracy on {cfg.get('split', '?')} "
              "through the same predictor; peak RSS of the measuring process.", ""]
    headers = ["device"] + [h for h, _, _ in COLUMNS] + [h for h, _ in RATIO_COLUMNS]
    lines.append("| " + " | ".join(headers) + " |")
    lines.append("|" + "---|" * len(headers))
    for row in rows:
        lines.append("| " + " | ".join([str(row.get("device"))] + row_cells(row) + ratio_cells(row)) + " |")
    return "\n".join(lines) + "\n"


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points no other point beats (lower latency and higher accuracy), by latency."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


# one colour and marker per backend, the same in every report (a merged report keeps them apart by device)
BACKEND_STYLE = {"torch": ("C0", "o"), "onnxruntime": ("C1", "s"), "tensorrt": ("C2", "^"), "openvino": ("C3", "D"),
                 "litert": ("C4", "v"), "ncnn": ("C5", "P")}


def pareto_series(rows: list[dict], batch: int = 1) -> dict[str, list[dict]]:
    """The plotted rows by legend label: every backend with a measured row at `batch` (backend, or
    "backend (device)" when the rows come from several devices), in BACKEND_STYLE's order."""
    points = [r for r in rows if r.get("status") == "ok" and r.get("batch") == batch and r.get("accuracy") is not None]
    devices = len({p.get("device") for p in points})
    order = list(BACKEND_STYLE)
    points.sort(key=lambda r: (order.index(r["backend"]) if r["backend"] in order else len(order), str(r.get("device"))))
    series: dict[str, list[dict]] = {}
    for r in points:
        series.setdefault(f"{r['backend']} ({r['device']})" if devices > 1 else r["backend"], []).append(r)
    return series


def plot_pareto(rows: list[dict], path: str | Path, batch: int = 1) -> bool:
    """Accuracy against p50 latency at `batch`: every backend in its own colour and marker (marker area
    ~ params), the Pareto front over all of them, and the backends with no row at this batch named."""
    from matplotlib.ticker import NullFormatter

    from ..train.plots import plt
    from ..io import save_figure

    series = pareto_series(rows, batch)
    if not series:
        return False
    points = [r for group in series.values() for r in group]
    fig, ax = plt.subplots(figsize=(8, 5))
    largest = max(r.get("params") or 1 for r in points)
    extra = iter(f"C{i}" for i in range(len(BACKEND_STYLE), 100))
    used: set[str] = set()
    for label, group in series.items():
        colour, marker = BACKEND_STYLE.get(group[0]["backend"], (None, "o"))
        if colour is None or colour in used:  # an unknown backend, or one backend on a second device
            colour = next(extra)
        used.add(colour)
        for i, r in enumerate(group):
            size = 30 + 600 * ((r.get("params") or 1) / largest) ** 0.5
            ax.scatter(r["p50_ms"], 100 * r["accuracy"], s=size, color=colour, marker=marker, alpha=0.6,
                       edgecolors="k", label=label if i == 0 else None)
            ax.annotate(f"{r['run']} {r['precision']}", (r["p50_ms"], 100 * r["accuracy"]), fontsize=7,
                        textcoords="offset points", xytext=(5, 4))
    front = pareto_front([(r["p50_ms"], r["accuracy"]) for r in points])
    ax.plot([points[i]["p50_ms"] for i in front], [100 * points[i]["accuracy"] for i in front], "k--", lw=1,
            label="Pareto front")
    missing = sorted({r["backend"] for r in rows} - {r["backend"] for r in points})
    if missing:  # a backend asked for but not measured here (unavailable, or no accuracy): said on the plot
        ax.plot([], [], " ", label=f"not measured: {', '.join(missing)}")
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())  # minor log labels overlap on narrow ranges
    ax.set(xlabel=f"p50 latency at batch {batch} (ms, log scale)", ylabel="accuracy (%)",
           title="accuracy vs latency, every backend (marker area ~ parameters)")
    ax.grid(True, which="both", alpha=0.3)
    legend = ax.legend(fontsize=8)
    for handle in legend.legend_handles[:len(series)]:  # one marker size in the legend, not the first model's
        handle.set_sizes([40])
    save_figure(path, fig)
    plt.close(fig)
    return True


def load_report(path: str | Path) -> dict:
    path = Path(path)
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such report") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not a JSON report ({exc.msg} at line {exc.lineno})") from None
    if report.get("schema") != REPORT_SCHEMA or not isinstance(report.get("rows"), list):
        raise ConfigError(f"{path}: not a fercomp bench report (schema {report.get('schema')!r}, want {REPORT_SCHEMA})")
    return report


def merge_reports(reports: list[dict]) -> dict:
    """One report from several devices: rows concatenated, hosts and peaks kept per device."""
    hosts, peaks, rows, roots = {}, {}, [], {}
    for report in reports:
        rows.extend(report["rows"])
        hosts.update(report.get("hosts") or {_device_of(report): report.get("host", {})})
        peaks.update(report.get("peak") or {})
        roots.update(report.get("roots") or {})
    merged = make_report({}, rows, hosts=hosts, peak=peaks, roots=roots, config={"merged_from": len(reports)})
    merged["created"] = max(r.get("created", "") for r in reports)  # when the newest figure was measured
    add_lineage_ratios(rows, roots)
    return merged


def _device_of(report: dict) -> str:
    host = report.get("host", {})
    rows = report.get("rows") or [{}]
    return rows[0].get("device") or (host.get("jetson") or {}).get("board") or host.get("cpu") or "unknown"


TERMINAL = ("run", "backend", "prec", "batch", "acc", "p50 ms", "img/s", "% peak")


def terminal_table(report: dict):
    """The measured rows as a rich table narrow enough for a terminal (report.md has every column),
    and one line per backend that could not run, with its reason."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    headers = [h for h, _, _ in COLUMNS]
    keep = [headers.index(h) for h in TERMINAL]
    ratio_names = ("speed-up ×", "acc Δ pt")
    ratio_keep = [i for i, (h, _) in enumerate(RATIO_COLUMNS) if h in ratio_names]
    devices = sorted({str(r.get("device")) for r in report["rows"] if r.get("status") == "ok"})  # measured ones
    table = Table(title=f"fercomp bench — {', '.join(devices)}")
    longest_run = max((len(str(r.get("run"))) for r in report["rows"]), default=3)
    for header in (["device"] if len(devices) > 1 else []) + list(TERMINAL) + list(ratio_names):
        table.add_column(header, justify="left" if header in ("device", "run", "backend", "prec") else "right",
                         min_width=min(longest_run, 40) if header == "run" else None)  # run names are the key
    notes = []
    for row in report["rows"]:
        if row.get("status") != "ok":
            notes.append(Text(f"{row.get('run')} on {row.get('backend')}: unavailable — {row.get('reason')}"))
            continue
        cells, ratios = row_cells(row), ratio_cells(row)
        prefix = [str(row.get("device"))[:20]] if len(devices) > 1 else []
        table.add_row(*prefix, *[cells[i] for i in keep], *[ratios[i] for i in ratio_keep])
    return Group(table, *notes)
