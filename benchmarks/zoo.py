"""Package finished FER2013 runs into the model zoo shipped inside fercomp (`fercomp/zoo/`).

For each `--add NAME=RUN_FOLDER` it: exports and verifies the run's ONNX (`fercomp export`'s
parity gate), optionally quantizes it to INT8 (`--int8`: PTQ, a second entry NAME-int8), copies
the weights-only checkpoint, ONNX files and a manifest stripped of this machine's paths into
`fercomp/zoo/models/NAME/`, re-measures accuracy from the packaged files on PublicTest and
PrivateTest, times it with `fercomp bench` (2 threads, batch 1 and 64), and writes the entry's
card into `fercomp/zoo/index.json`. It then regenerates `benchmarks/results/zoo.{md,json}` and the
model card `fercomp/zoo/MODEL_CARD.md` from the index.

    python benchmarks/zoo.py --add tiny=~/.cache/fercomp/zoo-runs/tiny-sep60 --default tiny
    python benchmarks/zoo.py --add standard=RUN --int8
    python benchmarks/zoo.py --render            # tables only
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
RESULTS = REPO / "benchmarks" / "results"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "fer2013.npz"

import onnx  # noqa: E402

from fercomp import zoo  # noqa: E402
from results_io import write_result_json, write_result_text  # noqa: E402
from fercomp.deploy.onnx_export import read_metadata, write_metadata  # noqa: E402
from fercomp.errors import FercompError  # noqa: E402
from fercomp.hostinfo import host_info  # noqa: E402
from fercomp.io import atomic_path, sha256_file, write_json, write_text  # noqa: E402
from fercomp.data.run_data import training_config  # noqa: E402
from fercomp.runs import MANIFEST, MODEL_FILE, ONNX_FILE, Run, zoo_parent_pin  # noqa: E402
from fercomp.train.teacher_cache import teacher_card  # noqa: E402

# What each tier promises (issue 12): the card states the limit next to the measured figure.
TIERS = {
    "tiny": {"max_params": 60_000, "target_test_acc": 0.665, "about": "the fastest: at most 60K parameters"},
    "compact": {"max_params": 250_000, "target_test_acc": 0.68, "about": "at most 250K parameters, INT8 ONNX"},
    "standard": {"max_params": 2_000_000, "target_test_acc": 0.705, "about": "at most 2M parameters, FP32 and INT8"},
    "ferplus": {"max_params": 2_000_000, "target_test_acc": 0.85, "about": "FER+ majority-vote labels, 8 classes"},
}
DATA_TERMS = ("Trained on FER2013 (Goodfellow et al., 2013, ICML 2013 Challenges in Representation Learning), "
              "released for research; the FER+ labels (Barsoum et al., 2016) are MIT-licensed. Check the data's "
              "terms before any commercial use of these weights.")
SHIPPED_FILES = (MODEL_FILE, ONNX_FILE)


class UsageError(Exception):
    """Bad flags or runs: one line, exit status 2, nothing written."""


def without_folders(text: str) -> str:
    """A command or path without this machine's folders: data files by name, run folders by their last part."""
    # commas end a path: `--teacher zoo:a,/x/b,/x/c` lists three models
    return re.sub(r"(?<![\w.~])(?:/|\.\./|~/)(?:[^\s/'\",]+/)*([^\s/'\",]+)", r"\1", text)


def strip_manifest(manifest: dict[str, Any], name: str, parent: str | None) -> dict[str, Any]:
    """The packaged run's manifest: no absolute paths, lineage through zoo names, only shipped files."""
    out = json.loads(without_folders(json.dumps(manifest)))
    out.update(name=name, parent=parent, parent_abs=None, zoo=name)
    if "config" in out:
        out["config"]["out"] = None
    out.pop("export", None)  # describes the folder it was exported in; the card has the figures
    return out


def relabel_onnx(path: Path, source: str) -> None:
    """Point the ONNX metadata's source run at the zoo name instead of this machine's folder."""
    model = onnx.load(str(path))
    meta = read_metadata(model)
    meta["source_run"] = source
    write_metadata(model, meta)
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))


def stage(run: Run, name: str, parent: str | None, files: dict[str, Path]) -> Path:
    """The entry's folder built beside the shipped ones (hidden, not in the index): measured there,
    then swapped in by `install`, so a failure leaves the shipped entry as it was."""
    folder = zoo.MODELS_DIR / f".staging-{name}"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for target, source in files.items():
        shutil.copy2(source, folder / target)
    if ONNX_FILE in files:
        relabel_onnx(folder / ONNX_FILE, f"{zoo.PREFIX}{name}")
    manifest = strip_manifest(run.manifest, name, parent)
    if parent is not None:  # pinned: Run.parent refuses it once zoo:PARENT is another model
        manifest.update(zoo_parent_pin(Run.load(parent)))
    manifest["files"] = {f: sha256_file(folder / f) for f in files}
    write_json(folder / MANIFEST, manifest)
    return folder


def install(staged: Path, name: str) -> Path:
    """Swap the staged folder in for the shipped one (two renames; the old folder goes last)."""
    folder, old = zoo.MODELS_DIR / name, zoo.MODELS_DIR / f".old-{name}"
    if old.exists():
        shutil.rmtree(old)
    if folder.exists():
        folder.rename(old)
    staged.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def lineage_commands(run: Run) -> list[str]:
    return [without_folders(command) for command in run.commands()]


def teacher_recipes(run: Run) -> list[dict[str, Any]]:
    """Each distillation teacher of the run's lineage as it was when it taught (a zoo name may since
    point at a newer model, a run folder may be gone): its weights' digest and, where recorded or
    still readable, its PrivateTest accuracy and recipe."""
    teachers = []
    for r in run.lineage():
        distillation = r.manifest.get("distillation") or {}
        refs = distillation.get("teachers", [])
        digests = distillation.get("weights_sha256") or [None] * len(refs)
        # teacher_cards: runs since 2026-12-02; zoo_cards: earlier runs, which recorded zoo teachers only
        cards = distillation.get("teacher_cards") or distillation.get("zoo_cards") or {}
        for ref, digest in zip(refs, digests):
            taught = dict(cards.get(ref) or {})
            if not taught and zoo.zoo_name(ref) is None and (Path(ref) / MANIFEST).is_file():
                taught = teacher_card(ref)  # a run from before folder teachers were recorded
            if "recipe" in taught:
                taught["recipe"] = [without_folders(command) for command in taught["recipe"]]
            teachers.append({"ref": without_folders(ref), **({"weights_sha256": digest} if digest else {}), **taught})
    return teachers


def measure(folder: Path, data: Path, threads: int) -> dict[str, Any]:
    """Accuracy from the packaged files (torch or ONNX Runtime) and bench latency."""
    from fercomp.bench import BenchConfig
    from fercomp.bench.run import run_bench
    from fercomp.train import evaluate_run

    scores = {}
    for split in ("val", "test"):
        report = evaluate_run(str(folder), data=str(data), split=split, threads=threads, write=False)
        scores[split] = {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"], "images": report["n"],
                         "backend": report["backend"]}
    bench = run_bench(BenchConfig(models=[str(folder)], backends=("torch", "onnxruntime"), batch_sizes=(1, 64),
                                  threads=threads, data=str(data), accuracy=False, export_missing=False),
                      REPO / "artifacts" / "zoo-bench" / folder.name, peak=False, progress=False)
    latency = {}
    for row in bench["rows"]:  # bench adds the lineage root: keep this entry's rows
        if row.get("status") == "ok" and row["run"] == folder.name:
            latency[f"{row['backend']}_b{row['batch']}"] = {"p50_ms": round(row["p50_ms"], 4),
                                                           "images_per_s": round(row["images_per_s"], 1)}
    return {"scores": scores, "latency": latency, "host": bench.get("host") or host_info(), "threads": threads}


def data_record(data: Path, labels: str) -> dict[str, str]:
    """Which labels the entry learnt and which splits chose and scored it."""
    which = "FER+ majority-vote labels (Barsoum et al. 2016), 8 classes, " if labels.startswith("ferplus8") else "FER2013 "
    return {"file": data.name, "sha256": sha256_file(data), "labels": labels,
            "selected_on": f"val ({which}PublicTest)", "reported_on": f"test ({which}PrivateTest)"}


def make_card(run: Run, name: str, tier: str, folder: Path, measured: dict, data: Path, summary: str,
              teachers: list[dict[str, Any]]) -> dict:
    m = run.manifest
    spec = m["model"]
    return {
        "folder": name,
        "tier": tier,
        "summary": summary,
        "tier_rule": TIERS[tier]["about"],
        "architecture": spec["name"],
        "kwargs": spec["kwargs"],
        "params": m.get("params"),
        "macs": m.get("macs"),
        "precision": "int8" if m["stage"] == "quantize" else "fp32",
        "class_names": spec["class_names"],
        "input": f"{spec['in_chans']}x{spec['input_size'][0]}x{spec['input_size'][1]} grayscale",
        "normalization": spec["normalization"],
        "data": data_record(data, (training_config(run) or {}).get("labels", "fer2013")),
        "recipe": lineage_commands(run),
        **({"teachers": teachers} if teachers else {}),
        "val": measured["scores"]["val"],
        "test": measured["scores"]["test"],
        "target_test_acc": TIERS[tier]["target_test_acc"],
        "latency": {"threads": measured["threads"], "cpu": measured["host"].get("cpu"), **measured["latency"]},
        "terms": DATA_TERMS,
        "files": json.loads((folder / MANIFEST).read_text())["files"] | {MANIFEST: sha256_file(folder / MANIFEST)},
    }


def onnx_is_current(run: Run) -> bool:
    """The run's ONNX exists and was exported (parity-checked) after its weights were last written
    (a resumed or extended run rewrites model.pt)."""
    onnx_path = run.path / ONNX_FILE
    return onnx_path.is_file() and onnx_path.stat().st_mtime >= run.model_path.stat().st_mtime


def read_index() -> dict[str, Any]:
    return json.loads(zoo.INDEX_FILE.read_text()) if zoo.INDEX_FILE.is_file() else \
        {"format": zoo.INDEX_FORMAT, "default": None, "models": {}}


def add_entry(name: str, run_path: Path, tier: str, summary: str, int8: bool, data: Path, threads: int,
              onnx_too: bool = True) -> list[str]:
    from fercomp.compress.quantize import QuantizeConfig, quantize_run
    from fercomp.deploy.export import ExportConfig, export_run

    run = Run.load(run_path).require_complete()
    limit = TIERS[tier]["max_params"]
    if run.manifest["params"] > limit:
        raise UsageError(f"{run_path}: {run.manifest['params']:,} params is over the {tier} tier's {limit:,}")
    index = read_index()
    if not int8 and f"{name}-int8" in index["models"]:
        raise UsageError(f"--add {name}=...: zoo:{name}-int8 was quantized from the zoo:{name} it replaces; "
                         "pass --int8 to quantize the new one")
    if onnx_too and not onnx_is_current(run):
        export_run(ExportConfig(run=str(run.path), threads=threads))
    teachers = teacher_recipes(run)  # before the entry is replaced: a teacher may be the model it replaces
    files = {MODEL_FILE: run.model_path, **({ONNX_FILE: run.path / ONNX_FILE} if onnx_too else {})}
    entries = [(name, run, None, files)]
    if int8:
        q_path = run.path.parent / f"{run.name}-ptq-int8"
        q_run = Run.load(q_path) if (q_path / MANIFEST).is_file() else quantize_run(
            QuantizeConfig(parent=str(run.path), mode="ptq", out=str(q_path), threads=threads))
        if q_run.parent is None or q_run.parent.path.resolve() != run.path.resolve():
            raise UsageError(f"{q_path}: quantized from another run than {run.path}; remove it")
        if "benchmarks/zoo.py" in q_run.manifest.get("command", ""):  # made in-process: say it as its CLI command
            q_run.update(command=f"fercomp quantize {run.path} --threads {threads} --out {q_path}")
        entries.append((f"{name}-int8", q_run, f"{zoo.PREFIX}{name}", {ONNX_FILE: q_run.path / ONNX_FILE}))
    for entry_name, entry_run, parent, files in entries:
        staged = stage(entry_run, entry_name, parent, files)
        try:
            measured = measure(staged, data, threads)
            int8_words = " INT8 (PTQ, weights in [-64, 64] so every x86 CPU computes the same, QDQ ONNX for ONNX Runtime)"
            what = summary + (int8_words if entry_run.stage == "quantize" else "")
            card = make_card(entry_run, entry_name, tier, staged, measured, data, what, teachers)
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)  # the shipped entry stays as it was
            raise
        install(staged, entry_name)
        index["models"][entry_name] = card
        write_json(zoo.INDEX_FILE, index)  # before the next entry: an INT8 entry's parent resolves through it
        zoo.forget()
        print(f"zoo:{entry_name}: test {measured['scores']['test']['accuracy']:.2%} "
              f"val {measured['scores']['val']['accuracy']:.2%}", flush=True)
    return [e[0] for e in entries]


def _ms(row: dict) -> str:
    return f"{row['p50_ms']:.3f} ms" if "p50_ms" in row else "—"


def _per_s(row: dict) -> str:
    return f"{row['images_per_s']:,.0f}" if "images_per_s" in row else "—"


def remeasure(index: dict[str, Any], data: Path, threads: int) -> None:
    """Time (and score) every packaged entry again, e.g. on a quiet machine; the cards keep the rest."""
    for name, card in index["models"].items():
        measured = measure(zoo.MODELS_DIR / card["folder"], data, threads)
        card.update(val=measured["scores"]["val"], test=measured["scores"]["test"],
                    latency={"threads": threads, "cpu": measured["host"].get("cpu"), **measured["latency"]})
        print(f"zoo:{name}: test {card['test']['accuracy']:.2%}, latency {card['latency']}", flush=True)


def render(index: dict[str, Any]) -> str:
    lines = [
        "# fercomp model zoo",
        "",
        "Models shipped inside the package (`fercomp/zoo/`), usable as `zoo:NAME` wherever a run folder is.",
        "Selected on PublicTest, reported on PrivateTest (FER2013's, or FER+'s majority-vote labels where the",
        "labels column says FER+), single model, no test-time augmentation.",
        "Generated by `python benchmarks/zoo.py` from `fercomp/zoo/index.json`; latency measured by",
        "`fercomp bench` on this CPU (named below), batch 1 p50 and batch 64 throughput.",
        "",
        "| name | tier | arch | params | MACs | prec | labels | PublicTest | **PrivateTest** | target | macro-F1 | ORT b1 p50 | ORT b64 img/s | torch b1 p50 |",
        "|---|---|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, c in index["models"].items():
        lat = c["latency"]
        ort1, ort64, t1 = lat.get("onnxruntime_b1", {}), lat.get("onnxruntime_b64", {}), lat.get("torch_b1", {})
        target = c["target_test_acc"]
        met = "met" if c["test"]["accuracy"] >= target else "missed"
        lines.append(
            f"| `zoo:{name}`{' (default)' if name == index.get('default') else ''} | {c['tier']} | {c['architecture']} "
            f"| {c['params']:,} | {c['macs'] / 1e6:.1f} M | {c['precision']} | {zoo.labels_of(c)} | {c['val']['accuracy']:.2%} "
            f"| **{c['test']['accuracy']:.2%}** | {target:.1%} ({met}) | {c['test']['macro_f1']:.2%} "
            f"| {_ms(ort1)} | {_per_s(ort64)} | {_ms(t1)} |")
    lines += ["", "Recipes (exact commands, data files by name):", ""]
    for name, c in index["models"].items():
        lines.append(f"- **zoo:{name}** ({c['latency'].get('cpu')}, {c['latency']['threads']} threads):")
        lines += [f"  - `{cmd}`" for cmd in c["recipe"]]
        for teacher in c.get("teachers", []):
            taught = f" ({teacher['test_acc']:.2%} PrivateTest then)" if "test_acc" in teacher else ""
            weights = f", weights sha256 {teacher['weights_sha256'][:12]}" if "weights_sha256" in teacher else ""
            recipe = "; ".join(f"`{cmd}`" for cmd in teacher.get("recipe", [])) or "recipe not recorded"
            restore = f" (restore: `{teacher['restore']}`)" if "restore" in teacher else ""
            lines.append(f"  - teacher {teacher['ref']}{taught}{weights}{restore}: {recipe}")
    lines += ["", "Data terms: " + DATA_TERMS, ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--add", action="append", default=[], metavar="NAME=RUN", help="package a finished run")
    parser.add_argument("--tier", help="tiny | compact | standard | ferplus (default: the NAME)")
    parser.add_argument("--summary", default="", help="one line for `fercomp models`")
    parser.add_argument("--int8", action="store_true", help="also ship an INT8 (PTQ) entry NAME-int8")
    parser.add_argument("--no-onnx", action="store_true",
                        help="ship the checkpoint only (the zoo's 25 MB budget); `fercomp export zoo:NAME` makes the ONNX")
    parser.add_argument("--default", help="the zoo model `predict` uses without --model")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--render", action="store_true", help="only regenerate the tables")
    parser.add_argument("--remeasure", action="store_true", help="time and score every entry again")
    args = parser.parse_args()
    try:
        adds = parse_adds(args.add, args.tier)
        if args.default and args.default not in set(read_index()["models"]) | {n for n, _, _ in adds}:
            raise UsageError(f"--default {args.default}: not in the zoo and not being added")
        for name, path, tier in adds:
            add_entry(name, path, tier, args.summary, args.int8, args.data, args.threads, onnx_too=not args.no_onnx)
    except (UsageError, FercompError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if not zoo.INDEX_FILE.is_file():
        print("error: no zoo index yet: --add a run first", file=sys.stderr)
        raise SystemExit(2)
    index = read_index()
    if args.remeasure:
        remeasure(index, args.data, args.threads)
        write_json(zoo.INDEX_FILE, index)
    if args.default:
        index["default"] = args.default
        write_json(zoo.INDEX_FILE, index)
    table = render(index)
    write_result_text(RESULTS / "zoo.md", table)
    write_result_json(RESULTS / "zoo.json", index)
    write_text(zoo.ZOO_DIR / "MODEL_CARD.md", table)
    print(table)


def parse_adds(items: list[str], tier: str | None) -> list[tuple[str, Path, str]]:
    """(name, run folder, tier) of each --add NAME=RUN, checked before anything is built."""
    adds = []
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"--add {item}: expected NAME=RUN_FOLDER")
        entry_tier = tier or name.split("-")[0]
        if entry_tier not in TIERS:
            raise UsageError(f"--add {item}: tier {entry_tier!r} is not one of {', '.join(TIERS)} (pass --tier)")
        folder = Path(path).expanduser()
        if not (folder / MANIFEST).is_file():
            raise UsageError(f"--add {item}: {folder} is not a run folder (no {MANIFEST})")
        adds.append((name, folder, entry_tier))
    return adds


if __name__ == "__main__":
    main()
