"""The zoo's training methods, one change at a time (issue 12): each method's run against its baseline.

Reads the finished run folders the zoo's trainings wrote (default ~/.cache/fercomp/zoo-runs) and,
for every comparison below, prints and records both runs' PublicTest (selection) and PrivateTest
(report) accuracy, macro-F1, epochs and training time, the deltas, and each run's exact command.
A run whose folder is gone (a fresh machine starts with an empty cache) keeps the figures the last
zoo_methods.json recorded for it; one never finished is listed as such. Writes
benchmarks/results/zoo_methods.{md,json}.

    python benchmarks/zoo_methods.py [--runs ~/.cache/fercomp/zoo-runs]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from results_io import write_result_json, write_result_text  # noqa: E402

# (method, model, baseline run, run with the method, what else differs: "" when it is one change)
COMPARISONS = [
    ("distillation from zoo:compact + zoo:tiny (8 cached views)", "tiny", "tiny-sep60", "tiny-kd-ct-v8", ""),
    ("stronger teachers: zoo:standard + zoo:compact of then (both previous today)", "tiny, distilled", "tiny-kd-ct-v8", "tiny-kd-sc-v8", ""),
    ("weight EMA 0.999", "tiny, distilled", "tiny-kd-sc-v8", "tiny-kd-sc-v8-ema", ""),
    ("CutMix (alpha 1.0)", "tiny", "tiny-sep60", "tiny-sep60-cutmix", ""),
    ("mixup (alpha 0.2)", "tiny", "tiny-sep60", "tiny-sep60-mixup", ""),
    ("random erasing (--augment erase)", "tiny", "tiny-sep60", "tiny-sep60-erase", ""),
    ("longer cosine schedule: 60 instead of 30 epochs", "tiny", "tiny-sep30", "tiny-sep60", ""),
    ("distillation from the previous zoo:standard + the previous zoo:compact (8 cached views)", "se_resnet width 12, EMA",
     "compact-se12-ema", "compact-se12-ema-kd-sc", ""),
    ("shape chosen for CPU latency: mini-Xception 64-128-320", "compact, distilled",
     "compact-se12-ema-kd-sc", "compact-sep320-kd-sc", "also no EMA, 60 instead of 50 epochs"),
    ("strong instead of geometric augmentation, 80 instead of 60 epochs", "compact 64-128-320, distilled",
     "compact-sep320-kd-sc", "compact-sep320-strong-kd80", "also 12 instead of 8 cached views"),
    ("teachers: zoo:standard (69.71%) + the previous zoo:standard, instead of the previous zoo:standard + the previous zoo:compact",
     "compact 64-128-320, distilled", "compact-sep320-kd-sc", "compact-sep320-kd-ss", "measured on an AMD EPYC"),
    ("strong instead of geometric augmentation, 80 instead of 60 epochs (teachers zoo:standard + the previous zoo:standard)",
     "compact 64-128-320, distilled", "compact-sep320-kd-ss", "compact-sep320-strong-kd-ss80", "measured on an AMD EPYC"),
    ("distillation from the previous zoo:standard + the previous zoo:compact (12 cached views)", "se_resnet 1.63M, strong aug",
     "std-se60-strong", "std-se60-strong-kd-sc", ""),
    ("teachers: zoo:standard (69.71%) + the previous zoo:standard (8 views), instead of the previous zoo:standard + "
     "the previous zoo:compact (12 views)", "se_resnet 1.63M, strong aug, distilled",
     "std-se60-strong-kd-sc", "std-se60-strong-kd-ss", "measured on an AMD EPYC; 1 thread to epoch 38, then 2"),
    ("teachers: zoo:standard (70.08%) + the 69.71% one + the 69.49% one, instead of the 69.71% one + the 69.49% one "
     "(8 views)", "se_resnet 1.63M, strong aug, distilled", "std-se60-strong-kd-ss", "std-gen4",
     "measured on an AMD EPYC; 2 threads; not shipped: PublicTest decides"),
    ("longer cosine schedule: 80 instead of 60 epochs (teachers zoo:standard (70.08%) + the 69.71% one + the 69.49% "
     "one, 8 views)", "se_resnet 1.63M, strong aug, distilled", "std-gen4", "std-gen4-e80",
     "measured on an AMD EPYC; 2 threads"),
    ("average of the last 10 epochs' weights, BatchNorm recomputed on the clean train images (--swa-epochs 10)",
     "se_resnet 1.63M, strong aug, distilled, 80 epochs", "std-gen4-e80", "std-gen4-e80-swa10",
     "measured on an AMD EPYC; 2 threads; the same training, bit for bit: only the kept weights differ"),
    ("FER+ soft vote shares instead of majority labels", "tiny, FER+ 8 classes",
     "tiny-fp8-40-ferplus8", "tiny-fp8-40-ferplus8-soft",
     "measured on an AMD EPYC (the same majority-label run scored 81.79% on the Xeon)"),
]


def run_record(folder: Path) -> dict:
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        return {"run": folder.name, "status": "missing"}
    m = json.loads(manifest_path.read_text())
    metrics = m.get("metrics") or {}
    if m.get("status") != "complete" or "test_acc" not in metrics:
        return {"run": folder.name, "status": m.get("status"), "epochs_done": m.get("epochs_done")}
    return {"run": folder.name, "status": "complete", "val_acc": metrics["val_acc"], "test_acc": metrics["test_acc"],
            "test_macro_f1": metrics.get("test_macro_f1"), "epochs": metrics.get("epochs_run"),
            "train_time_s": metrics.get("train_time_s"), "command": m.get("command")}


def recorded_runs(path: Path) -> dict[str, dict]:
    """Every finished run the previous report recorded, by name."""
    if not path.is_file():
        return {}
    rows = json.loads(path.read_text())["rows"]
    return {rec["run"]: rec for row in rows for rec in (row["without"], row["with"]) if rec["status"] == "complete"}


def run_or_recorded(folder: Path, recorded: dict[str, dict]) -> dict:
    """The run folder's figures; the recorded ones when the folder is gone or has not finished again."""
    record = run_record(folder)
    if record["status"] != "complete" and folder.name in recorded:
        return recorded[folder.name]
    return record


def cell(record: dict) -> str:
    """PrivateTest (PublicTest), or why there is no figure yet."""
    if record["status"] != "complete":
        return f"{record['status']}" + (f" at epoch {record['epochs_done']}" if record.get("epochs_done") else "")
    return f"{record['test_acc']:.2%} ({record['val_acc']:.2%})"


def markdown(report: dict) -> str:
    lines = ["# Zoo training methods, one change at a time", "",
             f"Command: `{report['command']}`. PrivateTest accuracy (PublicTest, which selects, in brackets); "
             "every run on this project's 2-core machine (an Intel Xeon until 2026-11, an AMD EPYC since), "
             "1 thread unless its row says otherwise, seed 0.", "",
             "| method | model | without | with | delta | also differs |", "|---|---|---:|---:|---:|---|"]
    for row in report["rows"]:
        base, new = row["without"], row["with"]
        delta = (f"{100 * (new['test_acc'] - base['test_acc']):+.2f} ({100 * (new['val_acc'] - base['val_acc']):+.2f})"
                 if base["status"] == new["status"] == "complete" else "not yet")
        lines.append(f"| {row['method']} | {row['model']} | {cell(base)} | {cell(new)} | {delta} | "
                     f"{row['also'] or 'nothing'} |")
    lines += ["", "Commands:", ""]
    runs = {r[k]["run"]: r[k] for r in report["rows"] for k in ("without", "with")}
    lines += [f"- `{name}`: `{rec['command']}`" for name, rec in runs.items() if rec.get("command")]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=Path("~/.cache/fercomp/zoo-runs"))
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    runs = args.runs.expanduser()
    recorded = recorded_runs(args.out / "zoo_methods.json")
    rows = [{"method": method, "model": model, "without": run_or_recorded(runs / base, recorded),
             "with": run_or_recorded(runs / new, recorded), "also": also}
            for method, model, base, new, also in COMPARISONS]
    report = {"command": "python benchmarks/zoo_methods.py " + " ".join(sys.argv[1:]), "rows": rows}
    write_result_json(args.out / "zoo_methods.json", report)
    write_result_text(args.out / "zoo_methods.md", markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
