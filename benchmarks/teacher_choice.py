"""Which teachers to distil the small zoo models from, chosen on FER2013 PublicTest (never PrivateTest).

    python benchmarks/teacher_choice.py zoo:standard zoo:compact zoo:tiny
        # writes benchmarks/results/teacher_choice.{json,md}
    python benchmarks/teacher_choice.py zoo:standard ~/runs/a --name teacher_choice_compact
        # run folders are named by their folder name in the results (no machine paths)

Each candidate set is scored as `train --teacher A,B --teacher-views N` would use it: the mean
logits of its members on each image and its mirror (teacher_cache.ensemble_logits). The set with the
best PublicTest accuracy teaches; its PrivateTest figure is reported, not used.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_io import DEFAULT_DATA, REPO, write_result_json, write_result_text  # noqa: E402

from fercomp.data import load_data  # noqa: E402
from fercomp.train.fit import load_teacher  # noqa: E402
from fercomp.errors import FercompError  # noqa: E402
from fercomp.train.teacher_cache import ensemble_logits, teacher_card  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("teachers", nargs="+", help="candidate teachers: zoo:NAME, run folders or .pt")
    ap.add_argument("--data", default=str(REPO / DEFAULT_DATA))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default="teacher_choice", help="results file stem under benchmarks/results/")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    try:
        data = load_data(args.data)
        teachers = [load_teacher(ref, data.class_names) for ref in args.teachers]
        cards = [teacher_card(t.ref) for t in teachers]
    except FercompError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    splits = {name: data.split(name) for name in ("val", "test")}
    logits = [{name: ensemble_logits([t], torch.from_numpy(s.x).unsqueeze(1).float() / 255)
               for name, s in splits.items()} for t in teachers]
    label = [shown_name(t.ref) for t in teachers]
    rows = []
    for size in range(1, len(teachers) + 1):
        for members in itertools.combinations(range(len(teachers)), size):  # by position: two refs may share a name
            acc = {name: float((torch.stack([logits[m][name] for m in members]).mean(0).argmax(1).numpy()
                                == s.y).mean()) for name, s in splits.items()}
            rows.append({"teachers": [label[m] for m in members], "val_acc": acc["val"], "test_acc": acc["test"]})
    best = max(rows, key=lambda r: r["val_acc"])
    candidates = [{"teacher": label[i], "weights_sha256": t.weights_sha256,
                   **({"test_acc": cards[i]["test_acc"]} if "test_acc" in cards[i] else {})}
                  for i, t in enumerate(teachers)]
    lines = ["# Choosing the distillation teachers on FER2013 PublicTest", "",
             f"Command: `python benchmarks/teacher_choice.py {' '.join(sys.argv[1:])}`. Each set: mean logits of "
             "its members on the image and its mirror.", "",
             "| candidate | its own PrivateTest (card or run) | weights sha256 |", "|---|---:|---|"]
    lines += [f"| {c['teacher']} | {c['test_acc']:.2%} | {c['weights_sha256'][:12]} |" if "test_acc" in c
              else f"| {c['teacher']} | — | {c['weights_sha256'][:12]} |" for c in candidates]
    lines += ["", "| teachers | PublicTest (selects) | PrivateTest (reported) |", "|---|---:|---:|"]
    for r in sorted(rows, key=lambda r: -r["val_acc"]):
        mark = " **chosen**" if r is best else ""
        lines.append(f"| {' + '.join(r['teachers'])}{mark} | {r['val_acc']:.2%} | {r['test_acc']:.2%} |")
    text = "\n".join(lines) + "\n"
    print(text)
    results = REPO / "benchmarks" / "results"
    write_result_json(results / f"{args.name}.json",
                      {"data": args.data, "candidates": candidates, "rows": rows, "chosen": best["teachers"]})
    write_result_text(results / f"{args.name}.md", text)
    return 0


def shown_name(ref: str) -> str:
    """zoo:NAME as given; a run folder or file by its own name, so results carry no machine paths."""
    return ref if ref.startswith("zoo:") else Path(ref).name


if __name__ == "__main__":
    raise SystemExit(main())
