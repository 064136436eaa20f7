"""Post-hoc weight averaging of a run's last epochs (issue 12): does averaging the end-of-epoch weights
of the last K epochs, with BatchNorm statistics recomputed on the un-augmented training images, beat
the best single epoch on PublicTest?

The trainer keeps only the newest epoch (last.pt), so the epochs are snapshots copied while the run
trained (`cp RUN/last.pt SNAPSHOTS/epoch-NNN.pt` after each epoch). PublicTest chooses K; PrivateTest
is reported for the chosen K only. Writes benchmarks/results/posthoc_swa_<run>.{md,json}.

    python benchmarks/posthoc_swa.py RUN SNAPSHOTS --data fer2013.npz [--ks 1,5,10,20] [--threads 2]
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from results_io import write_result_json, write_result_text  # noqa: E402

from fercomp.data.run_data import data_for_run  # noqa: E402
from fercomp.runs import Run  # noqa: E402
from fercomp.train.averaging import recompute_batchnorm  # noqa: E402
from fercomp.train.evaluate import evaluate_model  # noqa: E402


def averaged(states: list[dict]) -> dict:
    """The mean of float tensors; integer buffers (BN's batch count) from the newest epoch."""
    return {n: torch.stack([s[n].float() for s in states]).mean(0).to(t.dtype) if t.is_floating_point() else t
            for n, t in states[-1].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("snapshots", type=Path)
    parser.add_argument("--data", required=True)
    parser.add_argument("--ks", default="1,5,10,20")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run = Run.load(args.run)
    spec = run.manifest["model"]
    data = data_for_run(run, args.data)
    train, val = data.split("train"), data.split("val")
    clean = torch.from_numpy(train.x).unsqueeze(1)  # no augmentation: the statistics the test images see
    states = {int(p.stem.split("-")[1]): torch.load(p, weights_only=True, map_location="cpu")["model"]
              for p in sorted(args.snapshots.glob("epoch-*.pt"))}
    last = max(states)
    template, _ = run.load_model()  # the run's own architecture (widths follow its weights)
    rows, models = [], {}
    for k in (int(v) for v in args.ks.split(",")):
        model = models[k] = copy.deepcopy(template)
        model.load_state_dict(averaged([states[e] for e in range(last - k + 1, last + 1)]))
        averaged_bn = evaluate_model(model.eval(), val, data.class_names, spec["normalization"])[0]["accuracy"]
        recompute_batchnorm(model, clean, spec["normalization"])  # what `fercomp train --swa-epochs` does
        recomputed = evaluate_model(model.eval(), val, data.class_names, spec["normalization"])[0]["accuracy"]
        rows.append({"k": k, "epochs": [last - k + 1, last], "val_acc_averaged_bn": averaged_bn,
                     "val_acc_recomputed_bn": recomputed})
        print(f"last {k:>2} epochs: PublicTest {averaged_bn:.2%} (averaged BN statistics), "
              f"{recomputed:.2%} (recomputed)", flush=True)
    best = max(rows, key=lambda r: r["val_acc_recomputed_bn"])
    test = evaluate_model(models[best["k"]].eval(), data.split("test"), data.class_names, spec["normalization"])[0]
    report = {"command": "python benchmarks/posthoc_swa.py " + " ".join(sys.argv[1:]), "run": run.path.name,
              "run_val_acc": run.manifest["metrics"]["val_acc"], "run_test_acc": run.manifest["metrics"]["test_acc"],
              "rows": rows, "chosen_k": best["k"], "chosen_test_acc": test["accuracy"],
              "chosen_test_macro_f1": test["macro_f1"]}
    lines = [f"# Post-hoc averaging of the last epochs of {run.path.name}", "", f"Command: `{report['command']}`", "",
             f"The run itself (best epoch on PublicTest): {report['run_test_acc']:.2%} PrivateTest "
             f"({report['run_val_acc']:.2%} PublicTest).", "",
             "| last K epochs | PublicTest, averaged BN statistics | PublicTest, BN recomputed on clean train images |",
             "|---:|---:|---:|"]
    lines += [f"| {r['k']} | {r['val_acc_averaged_bn']:.2%} | {r['val_acc_recomputed_bn']:.2%} |" for r in rows]
    lines += ["", f"Chosen on PublicTest: K = {best['k']}: **{test['accuracy']:.2%} PrivateTest** "
              f"(macro-F1 {test['macro_f1']:.2%})."]
    name = f"posthoc_swa_{run.path.name}"
    write_result_json(REPO / "benchmarks" / "results" / f"{name}.json", report)
    write_result_text(REPO / "benchmarks" / "results" / f"{name}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
