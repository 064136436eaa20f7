"""CLI behaviour: every user mistake is one line on stderr, exit status 2, and nothing half-written."""

import json

import numpy as np
import pytest

from fercomp.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["train", "--model", "nope"], "nope"),
        (["train", "--epochs", "0"], "--epochs"),
        (["train", "--epochs", "abc"], "--epochs"),
        (["train", "--augment", "wild"], "--augment"),
        (["train", "--data", "missing.npz"], "missing.npz"),
        (["train", "--model-arg", "width"], "--model-arg"),
        (["train", "--resume", "no/such/run"], "no/such/run"),
        (["train", "--no-such-flag"], "--no-such-flag"),
        (["evaluate", "no/such/run"], "no/such/run"),
        (["data", "info", "missing.csv"], "missing.csv"),
        (["train", "--labels", "emoji"], "emoji"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(capsys, tmp_path, monkeypatch, argv, expected):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, *argv, *(["--no-progress"] if argv[0] == "train" and "--no-such-flag" not in argv else []))
    assert code == 2
    assert expected in one_line_error(err)
    assert not (tmp_path / "artifacts").exists(), "a failed command left outputs behind"


def test_bad_csv_row_is_named(capsys, tmp_path):
    csv = tmp_path / "fer.csv"
    good = " ".join(["128"] * 2304)
    csv.write_text(f"emotion,pixels,Usage\n3,{good},Training\n9,{good},Training\n")
    code, _, err = run_cli(capsys, "train", "--data", str(csv), "--out", str(tmp_path / "run"), "--no-progress")
    assert code == 2
    line = one_line_error(err)
    assert "fer.csv" in line and "3" in line  # the file and the offending line
    assert not (tmp_path / "run").exists()


def test_unknown_class_folder_lists_known_names(capsys, tmp_path):
    import cv2

    for cls in ("happy", "grumpy"):
        (tmp_path / "faces" / cls).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "faces" / cls / "a.png"), np.zeros((48, 48), np.uint8))
    code, _, err = run_cli(capsys, "data", "info", str(tmp_path / "faces"))
    assert code == 2
    line = one_line_error(err)
    assert "grumpy" in line and "happy" in line and "neutral" in line


def test_corrupt_image_is_named(capsys, tmp_path):
    import cv2

    folder = tmp_path / "faces" / "happy"
    folder.mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((48, 48), 100 + i, np.uint8))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    code, _, err = run_cli(capsys, "data", "info", str(tmp_path / "faces"))
    assert code == 2
    assert "broken.jpg" in one_line_error(err)


def test_evaluate_folder_without_model(capsys, tmp_path):
    from fercomp.runs import Run

    Run.create(tmp_path / "r", stage="train")
    code, _, err = run_cli(capsys, "evaluate", str(tmp_path / "r"))
    assert code == 2
    assert "no model" in one_line_error(err)


def test_train_then_evaluate_json(capsys, tmp_path):
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--model", "baseline_cnn", "--epochs", "1", "--synthetic-per-class", "20",
                           "--batch-size", "16", "--out", str(run), "--no-progress")
    assert code == 0, err
    assert str(run) in err  # the summary names the run folder
    code, out, err = run_cli(capsys, "evaluate", str(run), "--split", "val", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["split"] == "val" and report["n"] == sum(report["per_class"][c]["support"] for c in report["class_names"])
    assert (run / "eval_val.json").exists() and (run / "confusion_val.png").exists()


def test_models_table_lists_registry(capsys):
    code, out, _ = run_cli(capsys, "models", "--json")
    assert code == 0
    listing = json.loads(out)
    rows = {r["name"]: r for r in listing["architectures"]}
    for name, card in listing["zoo"].items():  # every pretrained model is listed under its architecture
        assert f"zoo:{name}" in rows[card["architecture"]]["pretrained"]
    assert {"baseline_cnn", "tuned_cnn", "separable_cnn", "se_resnet", "vgg_fer", "mobilenet_v2"} <= rows.keys()
    assert rows["separable_cnn"]["params"] <= 60_000
    assert rows["vgg_fer"]["macs"] > rows["separable_cnn"]["macs"] > 0


def test_version(capsys):
    code, _, err = run_cli(capsys, "--version")
    assert code == 0 and "fercomp" in err
