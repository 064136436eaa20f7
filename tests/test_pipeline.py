"""`fercomp pipeline` (the `make demo` job): every stage on synthetic faces, chained by manifests."""

import json
import tarfile

import pytest

from fercomp.cli import main
from fercomp.runs import Run


@pytest.mark.slow  # runs in CI (FERCOMP_ALL_TESTS=1); left out of the quick `make test`
def test_pipeline_runs_every_stage_end_to_end(capsys, tmp_path):
    out = tmp_path / "pipe"
    code = main(["pipeline", "--out", str(out), "--epochs", "4", "--finetune-epochs", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0, err
    for stage in ("train", "prune 0.5", "quantize int8"):
        assert f"{stage}: {out}" in err  # every stage names its run folder
    runs = sorted(p for p in out.iterdir() if (p / "manifest.json").exists())
    assert len(runs) == 3
    final = next(Run.load(p) for p in runs if Run.load(p).stage == "quantize")
    chain = final.lineage()
    assert [r.stage for r in chain] == ["train", "prune", "quantize"]
    assert chain[1].manifest["macs"] < 0.4 * chain[0].manifest["macs"]
    assert final.manifest["metrics"]["test_acc"] > 0.3  # synthetic: 7 classes, chance 14%
    # export, bench and deploy closed the loop
    assert chain[1].manifest["export"]["parity"]["top1_agreement"] >= 0.999
    report = json.loads((out / "bench" / "report.json").read_text())
    measured = {(r["run"], r["backend"], r["batch"]) for r in report["rows"] if r["status"] == "ok"}
    assert (final.name, "onnxruntime", 64) in measured and (chain[0].name, "torch", 1) in measured
    int8_row = next(r for r in report["rows"] if r["run"] == final.name and r["batch"] == 64 and r["status"] == "ok")
    assert int8_row["vs_root"]["macs_x"] < 0.4 and int8_row["vs_root"]["speedup_x"] > 0
    assert "speed-up" in err and "Jetson bundle" in err
    bundle = out / f"{chain[1].name}-jetson.tar.gz"
    with tarfile.open(bundle) as tar:
        assert f"{chain[1].name}-jetson/build_engine.sh" in tar.getnames()


def test_pipeline_rejects_a_bad_prune_ratio_before_training(capsys, tmp_path):
    out = tmp_path / "pipe"
    assert main(["pipeline", "--out", str(out), "--prune-ratio", "1.5", "--no-progress"]) == 2
    assert "--prune-ratio" in capsys.readouterr().err
    assert not out.exists()  # nothing was trained
