"""`fercomp bench`: measure, derive (efficiency, lineage ratios), write report.md / report.json / pareto.png."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..deploy.board.report_format import make_report
from ..errors import ConfigError
from ..io import write_json, write_text
from ..runs import Run
from ..ui import console
from .measure import BenchConfig, bench_models
from .report import add_efficiency, add_lineage_ratios, load_report, markdown, merge_reports, plot_pareto

REPORT_JSON, REPORT_MD, PARETO_PNG = "report.json", "report.md", "pareto.png"


def with_roots(paths: list[str]) -> tuple[list[str], dict[str, str], list[str]]:
    """The runs to measure (each family's root added when missing, so ratios have a base),
    run name -> root name, and the roots that were added."""
    runs = [Run.load(p) for p in paths]
    names = {r.name for r in runs}
    roots, added, ordered = {}, [], []
    for run in runs:
        root = run.lineage()[0]
        roots[run.name] = root.name
        if root.name not in names and str(root.path) not in added:
            added.append(str(root.path))
            names.add(root.name)
            roots[root.name] = root.name
    for path in added + [str(r.path) for r in runs]:
        if path not in ordered:
            ordered.append(path)
    return ordered, roots, added


def export_missing_onnx(paths: list[str], threads: int, progress: bool) -> None:
    """Float runs without a verified ONNX are exported first (with the parity gate), outside the timed workers."""
    from ..deploy.export import ExportConfig, export_run
    from ..runs import ONNX_FILE

    for path in paths:
        run = Run.load(path)
        if run.stage != "quantize" and not (run.path / ONNX_FILE).is_file():
            if progress:
                console.print(f"exporting {run.name} to ONNX first", highlight=False)
            export_run(ExportConfig(run=str(run.path), threads=threads), progress=False)


def device_label(host: dict[str, Any]) -> str:
    return host.get("cpu") or "cpu"


def write_report(report: dict, out: Path) -> dict[str, str]:
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / REPORT_JSON, report)
    write_text(out / REPORT_MD, markdown(report))
    files = {"json": str(out / REPORT_JSON), "md": str(out / REPORT_MD)}
    if plot_pareto(report["rows"], out / PARETO_PNG):
        files["pareto"] = str(out / PARETO_PNG)
    return files


def run_bench(cfg: BenchConfig, out: str | Path, *, peak: bool = True, isolate: bool = True,
              progress: bool = True) -> dict[str, Any]:
    from ..hostinfo import host_info
    from .peak import host_peak

    cfg.validate()
    paths, roots, added = with_roots(cfg.models)
    for path in added:
        console.print(f"adding root run {path} so every run has a base for its ratios", highlight=False)
    cfg = BenchConfig(**{**asdict(cfg), "models": paths})
    if cfg.export_missing and "onnxruntime" in cfg.backends:
        export_missing_onnx(paths, cfg.threads, progress)
    host = host_info()
    device = device_label(host)
    peaks = {}
    if peak:
        if progress:
            console.print(f"measuring this host's peak ({cfg.threads} threads)")
        peaks[device] = host_peak(cfg.threads)
    rows = []
    for path in paths:
        if progress:
            console.print(f"benchmarking {path} on {', '.join(cfg.backends)}", highlight=False)
        rows.extend(bench_models(BenchConfig(**{**asdict(cfg), "models": [path]}), device, isolate=isolate))
    add_efficiency(rows, peaks)
    add_lineage_ratios(rows, roots)
    report = make_report(host, rows, hosts={device: host}, peak=peaks, roots=roots,
                         config={k: v for k, v in asdict(cfg).items() if k != "models"})
    report["files"] = write_report(report, Path(out))
    return report


def merge(paths: list[str], out: str | Path) -> dict[str, Any]:
    if len(paths) < 2:
        raise ConfigError("--merge needs at least two report.json files")
    report = merge_reports([load_report(p) for p in paths])
    report["files"] = write_report(report, Path(out))
    return report
