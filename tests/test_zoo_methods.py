"""benchmarks/zoo_methods.py: a method's figures survive the loss of its run folder (a fresh machine)."""

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import zoo_methods  # noqa: E402


def finished_run(folder: Path, test_acc: float) -> None:
    folder.mkdir(parents=True)
    manifest = {"status": "complete", "command": "fercomp train ...",
                "metrics": {"val_acc": test_acc - 0.01, "test_acc": test_acc, "epochs_run": 3}}
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_gone_run_keeps_its_recorded_figures_and_a_present_run_wins(tmp_path, monkeypatch):
    runs, out = tmp_path / "runs", tmp_path / "results"
    base, new = zoo_methods.COMPARISONS[0][2:4]
    finished_run(runs / base, 0.60)
    finished_run(runs / new, 0.62)
    out.mkdir()
    monkeypatch.setattr(sys, "argv", ["zoo_methods.py", "--runs", str(runs), "--out", str(out)])
    zoo_methods.main()

    # Next machine: the baseline's folder is gone, the other run was trained again and scored better.
    (runs / base / "manifest.json").unlink()
    finished_run(runs / f"{new}-again", 0.0)  # unrelated folder: must not matter
    (runs / new / "manifest.json").write_text(json.dumps(
        {"status": "complete", "command": "c", "metrics": {"val_acc": 0.64, "test_acc": 0.65}}))
    zoo_methods.main()

    row = json.loads((out / "zoo_methods.json").read_text())["rows"][0]
    assert row["without"]["status"] == "complete" and row["without"]["test_acc"] == 0.60
    assert row["with"]["test_acc"] == 0.65
    assert "+5.00 (+5.00)" in (out / "zoo_methods.md").read_text()  # 65 - 60, 64 - 59
    # A run never finished anywhere is still shown as missing, not invented.
    missing = json.loads((out / "zoo_methods.json").read_text())["rows"][-1]["with"]
    assert missing["status"] == "missing"
