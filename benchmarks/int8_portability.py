"""Does an INT8 model compute the same on every x86 CPU? Native CPU vs an emulated CPU without VNNI.

ONNX Runtime's uint8 x int8 kernels on CPUs without VNNI (AVX2; AVX-512 before Cascade Lake) sum
pairs of products in int16 and saturate (see fercomp/compress/weight_range.py). This runs each
INT8 ONNX on PrivateTest images twice: natively, and under `qemu-x86_64 -cpu max` (QEMU's TCG
emulates AVX2 but neither AVX-512 nor VNNI, so ONNX Runtime takes its AVX2 kernels), and compares
the logits. Prints a table and writes benchmarks/results/int8_portability.{json,md}.

    python benchmarks/int8_portability.py                       # the zoo's INT8 models
    python benchmarks/int8_portability.py --onnx a.onnx b.onnx  # any INT8 ONNX files
    (needs qemu-user: apt-get install qemu-user)
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from results_io import DEFAULT_DATA, portable, write_result_json, write_result_text  # noqa: E402

EMULATED_CPU = "max"  # QEMU TCG's most capable x86: AVX2, no AVX-512, no VNNI


def logits(onnx_path: Path, data: Path, images: int) -> np.ndarray:
    """One thread, the file's own preprocessing: the raw logits of the first `images` test images."""
    from fercomp.deploy.runtime import OnnxPredictor, preprocess

    predictor = OnnxPredictor(onnx_path, threads=1)
    with np.load(data) as d:
        x = preprocess(d["test_x"][:images], predictor.spec)
    return predictor.forward(x)


def emulated_logits(onnx_path: Path, data: Path, images: int) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "logits.npy"
        subprocess.run(["qemu-x86_64", "-cpu", EMULATED_CPU, sys.executable, __file__, "--worker", str(onnx_path),
                        str(data), str(images), str(out)], check=True, stdout=subprocess.DEVNULL)
        return np.load(out)


def native_has_vnni() -> bool:
    flags = Path("/proc/cpuinfo").read_text().split()
    return "avx512_vnni" in flags or "avx_vnni" in flags


def compare(onnx_path: Path, data: Path, images: int) -> dict:
    import onnx

    from fercomp.compress.weight_range import max_abs_weight, saturation_free

    with np.load(data) as d:
        labels = d["test_y"][:images]
    native, emulated = logits(onnx_path, data, images), emulated_logits(onnx_path, data, images)
    largest = max_abs_weight(onnx.load(str(onnx_path)))
    return {
        "onnx": portable(str(onnx_path.resolve())), "images": int(len(labels)),
        "max_abs_weight": largest, "saturation_free": saturation_free(largest),
        "native_accuracy": float((native.argmax(1) == labels).mean()),
        "emulated_accuracy": float((emulated.argmax(1) == labels).mean()),
        "top1_agreement": float((native.argmax(1) == emulated.argmax(1)).mean()),
        "max_abs_logit_diff": float(np.abs(native - emulated).max()),
    }


def zoo_int8_files() -> list[Path]:
    from fercomp import zoo

    return [zoo.resolve(f"zoo:{name}") / "model.onnx" for name in zoo.names() if zoo.card(name)["precision"] == "int8"]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":  # inside QEMU: compute and save the logits
        _, _, onnx_path, data, images, out = sys.argv
        np.save(out, logits(Path(onnx_path), Path(data), int(images)))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onnx", type=Path, nargs="*", help="INT8 ONNX files (default: the zoo's INT8 models)")
    parser.add_argument("--data", type=Path, default=REPO / DEFAULT_DATA)
    parser.add_argument("--images", type=int, default=500, help="first N PrivateTest images (QEMU is ~10x slower)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "int8_portability")
    args = parser.parse_args()
    if shutil.which("qemu-x86_64") is None:
        sys.exit("int8_portability: qemu-x86_64 not found (apt-get install qemu-user)")
    from fercomp.hostinfo import host_info

    rows = [compare(path, args.data, args.images) for path in (args.onnx or zoo_int8_files())]
    host = host_info()
    lines = [
        "# INT8 on a CPU with VNNI vs an emulated CPU without it",
        "",
        f"`{' '.join(['python', 'benchmarks/int8_portability.py', *map(portable, sys.argv[1:])])}`",
        "",
        f"Native: {host.get('cpu', '?')} (VNNI: {'yes' if native_has_vnni() else 'no'}); emulated: "
        f"`qemu-x86_64 -cpu {EMULATED_CPU}` (AVX2, no AVX-512, no VNNI). First {args.images} PrivateTest images, "
        "one thread, raw logits compared.",
        "",
        "| ONNX | max abs weight | saturation-free | native acc | emulated acc | top-1 agreement | max logit diff |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['onnx']} | {r['max_abs_weight']} | {'yes' if r['saturation_free'] else 'no'} | "
                     f"{r['native_accuracy']:.2%} | {r['emulated_accuracy']:.2%} | {r['top1_agreement']:.2%} | "
                     f"{r['max_abs_logit_diff']:.4f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    write_result_text(args.out.with_suffix(".md"), text)
    write_result_json(args.out.with_suffix(".json"), {"host": host, "native_vnni": native_has_vnni(),
                                                      "emulated_cpu": f"qemu-x86_64 -cpu {EMULATED_CPU}",
                                                      "rows": rows})


if __name__ == "__main__":
    main()
