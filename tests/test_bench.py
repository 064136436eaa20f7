"""`fercomp bench`: report schema, lineage ratios, Pareto front, merge, unavailable backends, end to end."""

import json

import pytest

from fercomp.bench import BenchConfig
from fercomp.bench.measure import bench_models
from fercomp.bench.peak import efficiency
from fercomp.bench.report import add_lineage_ratios, load_report, markdown, merge_reports, pareto_front
from fercomp.bench.run import run_bench, with_roots
from fercomp.cli import main
from fercomp.compress.quantize import QuantizeConfig, quantize_run
from fercomp.deploy.board.report_format import REPORT_SCHEMA, ROW_FIELDS, make_report, make_row
from fercomp.errors import ConfigError
from fercomp.train import TrainConfig, fit


def row(run, backend, batch, **kw):
    base = dict(run=run, backend=backend, batch=batch, device="cpu-x", precision="fp32", params=1000, macs=2e6,
                file_bytes=4000, accuracy=0.60, p50_ms=2.0, images_per_s=500.0)
    return make_row(**{**base, **kw})


def test_lineage_ratios_on_a_hand_built_family():
    rows = [
        row("base", "torch", 64),
        row("p50", "torch", 64, params=250, macs=0.5e6, file_bytes=1000, accuracy=0.59, images_per_s=1500.0),
        row("p50-int8", "onnxruntime", 64, params=250, macs=0.5e6, file_bytes=400, accuracy=0.585,
            images_per_s=5000.0, p50_ms=0.25, precision="int8"),
        row("p50-int8", "onnxruntime", 1, precision="int8"),  # no batch-1 root row: no ratios
        row("orphan", "torch", 64),  # its root was not measured
    ]
    add_lineage_ratios(rows, {"base": "base", "p50": "base", "p50-int8": "base", "orphan": "elsewhere"})
    r = rows[2]["vs_root"]
    assert r["root"] == "base" and r["params_x"] == 0.25 and r["macs_x"] == 0.25 and r["size_x"] == 0.1
    assert r["speedup_x"] == 10.0 and r["latency_p50_x"] == 8.0
    assert r["accuracy_delta_pt"] == pytest.approx(-1.5)
    assert rows[0]["vs_root"]["speedup_x"] == 1.0
    assert rows[3]["vs_root"] is None and rows[4]["vs_root"] is None


def test_efficiency_uses_the_peak_of_the_rows_precision():
    peak = {"fp32_macs_per_s": 1e11, "int8_macs_per_s": 4e11}
    achieved, fraction = efficiency(row("a", "onnxruntime", 64, macs=1e7, images_per_s=1000.0, precision="int8"), peak)
    assert achieved == 1e10 and fraction == pytest.approx(0.025)
    assert efficiency(row("a", "torch", 64, macs=1e7, images_per_s=1000.0), peak)[1] == pytest.approx(0.1)
    assert efficiency(make_row(run="a", status="unavailable", reason="no"), peak) == (None, None)


def test_pareto_front_keeps_only_undominated_points():
    points = [(1.0, 0.60), (2.0, 0.65), (1.5, 0.58), (3.0, 0.64), (0.5, 0.50), (2.5, 0.70)]
    assert pareto_front(points) == [4, 0, 1, 5]


def test_merge_of_two_devices_keeps_hosts_rows_and_ratios(tmp_path):
    cpu = make_report({"cpu": "x86"}, [row("base", "torch", 1, device="x86"),
                                       row("base-int8", "onnxruntime", 1, device="x86", p50_ms=0.5)])
    cpu.update(hosts={"x86": {"cpu": "x86", "cores": 2}}, roots={"base": "base", "base-int8": "base"})
    board = make_report({"cpu": "ARMv8", "jetson": {"board": "Jetson Orin Nano"}},
                        [row("base-int8", "tensorrt", 1, device="Jetson Orin Nano", p50_ms=0.2)])
    paths = []
    for name, report in (("cpu.json", cpu), ("board.json", board)):
        (tmp_path / name).write_text(json.dumps(report))
        paths.append(tmp_path / name)
    merged = merge_reports([load_report(p) for p in paths])
    assert merged["schema"] == REPORT_SCHEMA and len(merged["rows"]) == 3
    assert set(merged["hosts"]) == {"x86", "Jetson Orin Nano"}
    assert merged["rows"][1]["vs_root"]["latency_p50_x"] == 4.0
    assert merged["rows"][2]["vs_root"] is None  # the root was not measured on the board
    text = markdown(merged)
    assert "Jetson Orin Nano" in text and "base-int8" in text
    (tmp_path / "bad.json").write_text(json.dumps({"schema": "other", "rows": []}))
    with pytest.raises(ConfigError, match="not a fercomp bench report"):
        load_report(tmp_path / "bad.json")


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    base = fit(TrainConfig(model="separable_cnn", synthetic_per_class=30, epochs=2, out=str(root / "base")),
               progress=False)
    int8 = quantize_run(QuantizeConfig(parent=str(base.path), calib=64, out=str(root / "base-int8")), progress=False)
    return base, int8


def test_roots_are_added_so_ratios_have_a_base(family):
    base, int8 = family
    paths, roots, added = with_roots([str(int8.path)])
    assert added == [str(base.path)] and paths == [str(base.path), str(int8.path)]
    assert roots == {"base-int8": "base", "base": "base"}


def test_unavailable_backends_are_rows_with_reasons(family, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    _, int8 = family
    rows = bench_models(BenchConfig(models=[str(int8.path)], backends=("torch", "tensorrt"), batch_sizes=(1,),
                                    iters=2, warmup=0, accuracy=False), device="cpu")
    assert [(r["backend"], r["status"]) for r in rows] == [("torch", "unavailable"), ("tensorrt", "unavailable")]
    assert "QDQ ONNX" in rows[0]["reason"] and "TensorRT is not installed" in rows[1]["reason"]


@pytest.mark.slow  # runs in CI (FERCOMP_ALL_TESTS=1); left out of the quick `make test`
def test_bench_end_to_end_through_every_available_backend(family, tmp_path):
    base, int8 = family
    report = run_bench(BenchConfig(models=[str(int8.path)], batch_sizes=(1, 8), threads=1, iters=3, warmup=1),
                       tmp_path / "report", peak=True, progress=False)
    on_disk = json.loads((tmp_path / "report" / "report.json").read_text())
    assert on_disk["schema"] == REPORT_SCHEMA and on_disk["peak"] and on_disk["rows"] == report["rows"]
    assert (tmp_path / "report" / "pareto.png").stat().st_size > 0
    assert "| base-int8 | onnxruntime | int8 | 8 |" in (tmp_path / "report" / "report.md").read_text()
    measured = [r for r in report["rows"] if r["status"] == "ok"]
    assert {(r["run"], r["backend"], r["batch"]) for r in measured} == {
        ("base", "torch", 1), ("base", "torch", 8), ("base", "onnxruntime", 1), ("base", "onnxruntime", 8),
        ("base-int8", "onnxruntime", 1), ("base-int8", "onnxruntime", 8)}
    for r in measured:
        assert set(ROW_FIELDS) <= set(r) and r["threads"] == 1
        assert r["p50_ms"] > 0 and r["p95_ms"] >= r["p50_ms"] and r["images_per_s"] > 0 and r["peak_rss_mb"] > 0
        assert 0 < r["peak_fraction"] and r["vs_root"]["root"] == "base"
    # accuracy is the same predictor's: the INT8 row matches what the quantize stage measured in ORT
    int8_row = next(r for r in measured if r["run"] == "base-int8")
    assert int8_row["accuracy"] == pytest.approx(int8.manifest["metrics"]["test_acc"], abs=1e-9)
    torch_row = next(r for r in measured if r["run"] == "base" and r["backend"] == "torch")
    assert torch_row["accuracy"] == pytest.approx(base.manifest["metrics"]["test_acc"], abs=1e-9)
    assert {r["backend"] for r in report["rows"] if r["status"] == "unavailable"} == {"torch", "tensorrt"}


def test_bench_cli_merge_and_mistakes(tmp_path, capsys):
    a = make_report({"cpu": "a"}, [row("x", "torch", 1, device="a")])
    b = make_report({"cpu": "b"}, [row("x", "torch", 1, device="b")])
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    assert main(["bench", "--merge", str(tmp_path / "a.json"), "--merge", str(tmp_path / "b.json"),
                 "--out", str(tmp_path / "m"), "--no-progress"]) == 0
    assert len(json.loads((tmp_path / "m" / "report.json").read_text())["rows"]) == 2
    capsys.readouterr()
    for argv, expected in ((["bench"], "name at least one run"), (["bench", "x", "--batch-sizes", "1,a"], "--batch-sizes"),
                           (["bench", "--merge", str(tmp_path / "a.json")], "at least two")):
        assert main(argv + ["--out", str(tmp_path / "bad")]) == 2
        err = capsys.readouterr().err
        assert expected in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()


def test_row_format_rejects_unknown_fields():
    with pytest.raises(ValueError, match="unknown report fields"):
        make_row(run="a", latency=3)


def test_a_workers_peak_memory_is_its_own():
    """ru_maxrss survives exec (a worker would report its parent's peak); VmHWM does not."""
    import subprocess
    import sys

    import numpy as np

    from fercomp.timing import peak_rss_mb

    ballast = np.ones(300 * 2**20 // 8)  # 300 MB in this (parent) process
    child = subprocess.run([sys.executable, "-c", "from fercomp.deploy.board.timing import peak_rss_mb; "
                            "print(peak_rss_mb())"], capture_output=True, text=True, check=True)
    assert float(child.stdout) < peak_rss_mb() - 250 and ballast.sum() > 0


def test_tensorrt_rows_report_latency_with_and_without_copies(family, tmp_path, monkeypatch):
    """Through the fake TensorRT: an engine is benchmarked with copies (p50_ms) and without them
    (compute_p50_ms), and its CUDA stream and buffers are released afterwards."""
    import shutil

    import fake_tensorrt
    import torch

    from fercomp.deploy.export import ExportConfig, export_run

    base, _ = family
    run_path = tmp_path / "base"
    shutil.copytree(base.path, run_path)
    trt, cuda = fake_tensorrt.install(monkeypatch)
    export_run(ExportConfig(run=str(run_path), trt=True, max_batch=8, opt_batch=4, parity_images=20), progress=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # the fake stands in for the GPU
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "Fake GPU")
    copies_before = cuda.copies
    rows = bench_models(BenchConfig(models=[str(run_path)], backends=("tensorrt", "onnxruntime"), batch_sizes=(1, 8, 16),
                                    iters=3, warmup=1), device="cpu")
    trt_rows = [r for r in rows if r["backend"] == "tensorrt"]
    assert [r["status"] for r in trt_rows] == ["ok"] * 3 and trt_rows[0]["device"] == "Fake GPU"
    for r in trt_rows[:2]:
        assert r["p50_ms"] > 0 and r["compute_p50_ms"] > 0 and r["compute_p95_ms"] >= r["compute_p50_ms"]
    assert trt_rows[2]["compute_p50_ms"] is None  # 16 is two engine calls: no single copy-free call to time
    assert trt_rows[0]["accuracy"] == pytest.approx(base.manifest["metrics"]["test_acc"], abs=1e-9)
    assert all(r["compute_p50_ms"] is None for r in rows if r["backend"] == "onnxruntime")
    # timed with copies: 2 per call (in, out); without: one staging copy per batch size, then none
    timed_calls = 3 * (1 + 3)
    assert cuda.copies - copies_before >= 2 * timed_calls
    assert cuda.opened == cuda.closed and cuda.memory == {}


def test_pareto_plot_shows_every_backend(tmp_path, monkeypatch):
    """Every backend with a batch-1 row is a series of its own (its own colour and marker), a backend
    that was asked for but not measured is named, and two devices keep the same backend apart."""
    from fercomp.bench import report as report_module
    from fercomp.deploy.board.report_format import make_row

    backends = ("torch", "onnxruntime", "tensorrt", "openvino", "litert", "ncnn")
    rows = [make_row(run="tiny", backend=b, precision="fp32", device="cpu", batch=1, params=56_000, accuracy=0.64 + i / 100,
                     p50_ms=0.1 * (i + 1)) for i, b in enumerate(backends)]
    rows.append(make_row(run="tiny", backend="coreml", batch=1, status="unavailable", reason="not here"))
    assert list(report_module.pareto_series(rows)) == list(backends)
    drawn = []
    from fercomp.train.plots import plt

    original = plt.Axes.scatter

    def scatter(ax, *args, **kwargs):
        drawn.append((kwargs.get("label"), kwargs.get("color"), kwargs.get("marker")))
        return original(ax, *args, **kwargs)

    monkeypatch.setattr(plt.Axes, "scatter", scatter)
    assert report_module.plot_pareto(rows, tmp_path / "pareto.png")
    assert [d[0] for d in drawn] == list(backends)
    assert len({(d[1], d[2]) for d in drawn}) == len(backends)  # six different looks
    assert (tmp_path / "pareto.png").stat().st_size > 0
    # a merged report: ncnn on the PC and on a Raspberry Pi are two series in two colours
    pi = dict(rows[-2], device="Raspberry Pi 5")
    series = report_module.pareto_series([rows[-2], pi])
    assert sorted(series) == ["ncnn (Raspberry Pi 5)", "ncnn (cpu)"]
    drawn.clear()
    report_module.plot_pareto([rows[-2], pi], tmp_path / "merged.png")
    assert len({d[1] for d in drawn}) == 2
