"""`fercomp pipeline` (the `make demo` job): every stage on synthetic faces, chained by manifests."""

from fercomp.cli import main
from fercomp.runs import Run


def test_pipeline_runs_every_stage_end_to_end(capsys, tmp_path):
    out = tmp_path / "pipe"
    code = main(["pipeline", "--out", str(out), "--epochs", "4", "--finetune-epochs", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0, err
    for stage in ("train", "prune 0.5", "quantize int8"):
        assert f"{stage}: {out}" in err  # every stage names its run folder
    runs = sorted(out.iterdir())
    assert len(runs) == 3
    final = next(Run.load(p) for p in runs if Run.load(p).stage == "quantize")
    chain = final.lineage()
    assert [r.stage for r in chain] == ["train", "prune", "quantize"]
    assert chain[1].manifest["macs"] < 0.4 * chain[0].manifest["macs"]
    assert final.manifest["metrics"]["test_acc"] > 0.3  # synthetic: 7 classes, chance 14%
