"""FER2013 compression results (issue: compression, section 3): a family of runs -> one table.

Reads finished run folders (train -> prune -> quantize, any mix), prints params, MACs and
accuracy of each with ratios to its root, and writes benchmarks/results/compress_<name>.{md,json}.
Accuracy is what each run measured: torch for float runs, ONNX Runtime for INT8 runs.

    python benchmarks/fer2013_compress.py --name separable_cnn artifacts/bench/separable_cnn*
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from results_io import write_result_json, write_result_text  # noqa: E402
from fercomp.hostinfo import host_info  # noqa: E402
from fercomp.io import write_json, write_text  # noqa: E402
from fercomp.runs import Run  # noqa: E402


def describe(run: Run) -> str:
    m = run.manifest
    if m["stage"] == "prune":
        p = m["prune"]
        what = p["method"] + (f" {p['ratio']:g} ({p['importance']})" if p.get("ratio") else "")
        return what + (" + distill" if p.get("distill") else "")
    if m["stage"] == "quantize":
        q = m["quantize"]
        encoding = q.get("activations", "").replace("per-tensor ", "")
        return f"INT8 {q['mode']} {encoding}" + (f" ({q['epochs']} epochs)" if q["mode"] == "qat" else "")
    return f"train {m['metrics'].get('epochs_run')} epochs"


def row(run: Run) -> dict:
    m = run.manifest
    root = run.lineage()[0].manifest
    metrics = m.get("metrics", {})
    return {
        "run": run.name, "parent": Path(m["parent"]).name if m.get("parent") else None, "stage": m["stage"],
        "what": describe(run), "params": m["params"], "macs": m["macs"],
        "params_ratio": m["params"] / root["params"], "macs_ratio": m["macs"] / root["macs"],
        "backend": metrics.get("backend", "torch fp32"),
        "val_acc": metrics.get("val_acc"), "test_acc": metrics.get("test_acc"),
        "test_macro_f1": metrics.get("test_macro_f1"),
        "test_acc_delta_vs_root": (metrics.get("test_acc") or 0) - root["metrics"]["test_acc"],
        "command": m.get("command"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True)
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    rows = [row(Run.load(p)) for p in args.runs if (p / "manifest.json").exists()
            and Run.load(p).manifest.get("status") == "complete"]
    lines = [f"# FER2013 compression: {args.name}", "",
             "PrivateTest accuracy (selection on PublicTest); ratios against the family's root run.", "",
             "| run | parent | what | params | MACs | backend | val acc | **test acc** | Δ test vs root | macro-F1 |",
             "|---|---|---|---:|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['run']} | {r['parent'] or '—'} | {r['what']} | {r['params']:,} ({r['params_ratio']:.2f}x) "
            f"| {r['macs'] / 1e6:.2f} M ({r['macs_ratio']:.2f}x) | {r['backend']} | {100 * r['val_acc']:.2f}% "
            f"| **{100 * r['test_acc']:.2f}%** | {100 * r['test_acc_delta_vs_root']:+.2f} pt | {100 * r['test_macro_f1']:.2f}% |")
    lines += ["", "Commands:", ""] + [f"- {r['run']}: `{r['command']}`" for r in rows]
    host = host_info()
    lines += ["", f"Host: {host['cpu']}, {host['cores']} cores, torch {host['torch']}, onnxruntime {host.get('onnxruntime')}."]
    text = "\n".join(lines) + "\n"
    print(text)
    write_result_text(REPO / "benchmarks" / "results" / f"compress_{args.name}.md", text)
    write_result_json(REPO / "benchmarks" / "results" / f"compress_{args.name}.json", {"name": args.name, "rows": rows, "host": host})


if __name__ == "__main__":
    main()
