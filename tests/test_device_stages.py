"""--device (and --amp where a stage trains) on every stage: one shared option, checked before anything
is written, recorded where the stage records what it did."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from fercomp.cli import main
from fercomp.runs import Run
from fercomp.train import TrainConfig, fit

REPO = Path(__file__).resolve().parents[1]
IMAGE = REPO / "examples" / "astronaut.jpg"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("device")
    return fit(TrainConfig(model="separable_cnn", synthetic_per_class=12, epochs=1, batch_size=16, threads=1,
                           out=str(root / "base")), progress=False)


def _stage_argv(run: Path, out: Path) -> dict[str, list[str]]:
    return {
        "prune": ["prune", str(run), "--finetune-epochs", "1", "--out", str(out)],
        "quantize-qat": ["quantize", str(run), "--mode", "qat", "--epochs", "1", "--out", str(out)],
        "gan": ["gan", "train", "--epochs", "1", "--synthetic-per-class", "12", "--out", str(out)],
        "evaluate": ["evaluate", str(run), "--split", "val"],
        "ensemble": ["ensemble", str(run), str(run), "--out", str(out)],
        "predict": ["predict", str(IMAGE), "--model", str(run), "--out", str(out), "--no-detect"],
        "explain": ["explain", str(run), str(IMAGE), "--out", str(out), "--no-detect"],
        "search": ["search", "--grid", "lr=0.1", "--epochs", "1", "--synthetic-per-class", "12", "--out", str(out)],
    }


STAGES = ["prune", "quantize-qat", "gan", "evaluate", "ensemble", "predict", "explain", "search"]


@pytest.mark.parametrize("stage", STAGES)
def test_unavailable_cuda_is_one_line_exit_2_and_writes_nothing(stage, tiny_run, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this host has CUDA")
    out = tmp_path / "out"
    before = sorted(p.name for p in tiny_run.path.iterdir())
    code = main([*_stage_argv(tiny_run.path, out)[stage], "--device", "cuda", "--no-progress"]
                if stage not in ("evaluate", "ensemble") else [*_stage_argv(tiny_run.path, out)[stage], "--device", "cuda"])
    err = capsys.readouterr().err
    assert code == 2 and "--device cuda" in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()
    assert sorted(p.name for p in tiny_run.path.iterdir()) == before  # evaluate wrote no report either


@pytest.mark.parametrize("stage, argv, flag", [
    ("prune", ["--amp", "fp8"], "--amp"),
    ("gan", ["--device", "cpu", "--amp", "fp16"], "--amp fp16"),
    ("quantize-qat", ["--amp", "bf16"], "--amp bf16"),  # fake quantization trains in fp32
    ("search", ["--device", "tpu"], "--device"),
])
def test_bad_amp_and_device_values_are_one_line(stage, argv, flag, tiny_run, tmp_path, capsys):
    out = tmp_path / "out"
    code = main([*_stage_argv(tiny_run.path, out)[stage], *argv, "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and flag in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_stages_record_the_device_they_ran_on(tiny_run, tmp_path):
    from fercomp.compress import PruneConfig, prune_run
    from fercomp.deploy.predict import PredictConfig, predict_sources
    from fercomp.gan.train import GanConfig, train_gan
    from fercomp.train import evaluate_run
    from fercomp.train.ensemble import EnsembleConfig, ensemble_runs

    pruned = prune_run(PruneConfig(parent=str(tiny_run.path), finetune_epochs=1, device="cpu", amp="bf16",
                                   out=str(tmp_path / "p")), progress=False)
    assert pruned.manifest["placement"] == {"device": "cpu", "amp": "bf16"}
    gan = train_gan(GanConfig(epochs=1, synthetic_per_class=12, batch_size=16, width=8, device="auto",
                              out=str(tmp_path / "g")), progress=False)
    assert Run.load(gan.path).manifest["placement"] == {"device": "cpu", "amp": "off"}
    ens = ensemble_runs(EnsembleConfig(runs=[str(tiny_run.path), str(pruned.path)], out=str(tmp_path / "e"),
                                       device="cpu"), progress=False)
    assert ens.manifest["placement"] == {"device": "cpu"}
    assert evaluate_run(tiny_run.path, split="val", device="cpu", write=False)["device"] == "cpu"
    summary = predict_sources(PredictConfig(sources=[str(IMAGE)], model=str(tiny_run.path), detect=False,
                                            annotate=False, out=str(tmp_path / "pred"), device="auto"), progress=False)
    assert summary["device"] == "cpu"


def test_a_gan_run_resumes_with_another_precision_and_records_it(tmp_path):
    from fercomp.gan.train import GanConfig, train_gan

    def stop(epoch, record):
        raise KeyboardInterrupt

    cfg = GanConfig(epochs=2, synthetic_per_class=12, batch_size=16, width=8, device="cpu", amp="off",
                    out=str(tmp_path / "g"))
    with pytest.raises(KeyboardInterrupt):
        train_gan(cfg, progress=False, on_epoch_end=stop)
    run = train_gan(GanConfig(amp="bf16"), resume=tmp_path / "g", progress=False)
    m = Run.load(run.path).manifest
    assert m["status"] == "complete" and m["placement"] == {"device": "cpu", "amp": "bf16"}
    assert m["config"]["amp"] == "off"  # the recorded recipe is unchanged


def test_bench_cuda_rows_need_cuda_one_line_and_nothing_written(tiny_run, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this host has CUDA")
    out = tmp_path / "bench"
    code = main(["bench", str(tiny_run.path), "--backends", "torch", "--device", "cuda", "--out", str(out),
                 "--no-peak", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "--device cuda" in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_bench_torch_rows_on_the_cpu_keep_one_precision_and_the_host_label(tiny_run):
    from fercomp.bench.measure import BenchConfig, bench_models

    rows = bench_models(BenchConfig(models=[str(tiny_run.path)], backends=("torch",), batch_sizes=(1,), iters=2,
                                    warmup=0, device="cpu"), device="Test CPU")
    assert [(r["backend"], r["precision"], r["device"], r["status"]) for r in rows] == [("torch", "fp32", "Test CPU", "ok")]
    assert rows[0]["compute_p50_ms"] is None  # CUDA-event compute timing exists only on a GPU


def test_cuda_event_timing_summarises_event_pairs(monkeypatch):
    """measure_cuda against a stand-in for torch.cuda's events: warm-up synchronised, one pair per call."""
    from fercomp.bench import cuda_timing

    clock = {"t": 0.0, "syncs": 0}

    class Event:
        def __init__(self, enable_timing=False):
            assert enable_timing
            self.at = None

        def record(self):
            self.at = clock["t"]

        def elapsed_time(self, end):  # milliseconds, as torch.cuda.Event does
            assert clock["syncs"] >= 2, "read before synchronising"
            return end.at - self.at

    calls = []

    def work():
        calls.append(1)
        clock["t"] += 2.0 + len(calls) % 2  # 2 or 3 "ms" per call

    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: clock.__setitem__("syncs", clock["syncs"] + 1))
    stats = cuda_timing.measure_cuda(work, warmup=3, iters=10, batch_size=4)
    assert len(calls) == 13 and stats["iters"] == 10 and clock["syncs"] == 2
    assert stats["p50_ms"] == pytest.approx(2.5) and stats["mean_ms"] == pytest.approx(2.5)
    assert stats["images_per_s"] == pytest.approx(4 * 1000 / 2.5)


def test_compile_falls_back_to_eager_with_one_warning(monkeypatch):
    from fercomp.device import CompiledOrEager

    def broken_compile(module):
        def fail(*args, **kwargs):
            raise RuntimeError("inductor: no C++ compiler found\nlong trace")
        return fail

    monkeypatch.setattr(torch, "compile", broken_compile)
    warnings = []
    model = torch.nn.Linear(3, 2)
    step = CompiledOrEager(model, warnings.append)
    x = torch.randn(4, 3)
    torch.testing.assert_close(step(x), model(x))
    torch.testing.assert_close(step(x), model(x))
    assert len(warnings) == 1 and "no C++ compiler found" in warnings[0] and "long trace" not in warnings[0]


@pytest.mark.slow  # inductor compiles C++ for a minute on this CPU
def test_compiled_training_matches_eager(tmp_path):
    """--compile changes how the step runs, not what it computes: same losses as eager, to float tolerance."""
    import json

    common = dict(model="separable_cnn", synthetic_per_class=10, epochs=1, batch_size=16, threads=1, evaluate_test=False)
    eager = fit(TrainConfig(**common, out=str(tmp_path / "eager")), progress=False)
    compiled = fit(TrainConfig(**common, compile=True, out=str(tmp_path / "compiled")), progress=False)
    loss = [json.loads(line)["train_loss"] for run in (eager, compiled)
            for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert loss[0] == pytest.approx(loss[1], rel=1e-3)
    assert compiled.manifest["config"]["compile"] is True
