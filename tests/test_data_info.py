"""data_info on a hand-built set with known defects, and on the real FER2013 npz."""

from __future__ import annotations

import numpy as np
import pytest
from rich.console import Console

from fercomp.data import FerData, Split, data_info, load_data, render_data_info


def distinct_images(n: int, offset: int) -> np.ndarray:
    rng = np.random.default_rng(offset)
    return rng.integers(0, 256, (n, 48, 48), dtype=np.uint8)


@pytest.fixture()
def hand_built() -> FerData:
    train_x = distinct_images(6, 0)
    train_x[1] = train_x[0]  # duplicate, same label
    train_x[3] = train_x[2]  # duplicate, conflicting label
    train_x[4] = 0  # blank
    train_x[5] = 100
    train_x[5, 0, 0] = 101  # nearly blank (std < 2)
    train_y = [0, 0, 1, 2, 3, 3]
    val_x = distinct_images(3, 1)
    val_x[0] = train_x[2]  # also in train
    test_x = distinct_images(2, 2)
    test_x[1] = val_x[1]  # also in val
    return FerData({
        "train": Split(train_x, train_y),
        "val": Split(val_x, [1, 4, 5]),
        "test": Split(test_x, [6, 4]),
    }, source="hand-built")


def test_data_info_finds_known_defects(hand_built):
    info = data_info(hand_built)
    train = info["splits"]["train"]
    assert train["n"] == 6
    assert list(train["per_class"].items()) == [
        ("angry", 2), ("disgust", 1), ("fear", 1), ("happy", 2), ("sad", 0), ("surprise", 0), ("neutral", 0)]
    assert (train["blank"], train["blank_indices"]) == (1, [4])
    assert (train["near_blank"], train["near_blank_indices"]) == (1, [5])
    assert train["duplicate_groups"] == 2 and train["duplicate_images"] == 4 and train["surplus_copies"] == 2
    assert train["conflicting_groups"] == 1
    assert info["splits"]["val"]["duplicate_groups"] == 0 and info["splits"]["val"]["blank"] == 0
    assert info["cross_split"] == {"val∩train": 1, "test∩train": 0, "test∩val": 1}


def test_render_data_info_shows_the_numbers(hand_built):
    console = Console(record=True, width=140)
    tables = render_data_info(data_info(hand_built))
    assert len(tables) == 3
    console.print(*tables)
    text = console.export_text()
    assert "Images per class (hand-built)" in text
    assert "val∩train" in text and "conflicting groups" in text
    train_row = next(line for line in text.splitlines() if line.strip("│ ").startswith("train"))
    assert [c.strip() for c in train_row.strip("│").split("│")][:7] == ["train", "6", "1", "1", "2", "2", "1"]


def test_data_info_without_some_splits():
    data = FerData({"train": Split(distinct_images(3, 0), [0, 1, 2])})
    info = data_info(data)
    assert info["cross_split"] == {} and info["splits"]["train"]["duplicate_groups"] == 0


# --- real FER2013 (skipped when ../shared/data is absent) ---------------------------------------

README_COUNTS = {
    "train": [3995, 436, 4097, 7215, 4830, 3171, 4965],
    "val": [467, 56, 496, 895, 653, 415, 607],
    "test": [491, 55, 528, 879, 594, 416, 626],
}


@pytest.fixture(scope="module")
def real_info(fer2013_npz):
    data = load_data(fer2013_npz)
    return data, data_info(data)


def test_real_counts_match_readme(real_info):
    data, info = real_info
    assert data.meta["sha256"] == "611e0e0bed24679ec90569c457f91c2e9d04846398c06532e38a8333de0ffd45"
    assert data.meta["carved"] == {}
    for split, counts in README_COUNTS.items():
        assert list(info["splits"][split]["per_class"].values()) == counts
        assert np.bincount(data.split(split).y).tolist() == counts


def test_real_blanks_and_duplicates_match_readme(real_info):
    _, info = real_info
    splits = info["splits"]
    assert [splits[s]["blank"] for s in ("train", "val", "test")] == [11, 1, 0]
    assert [splits[s]["near_blank"] for s in ("train", "val", "test")] == [1, 0, 0]
    train = splits["train"]
    assert (train["duplicate_groups"], train["duplicate_images"], train["surplus_copies"]) == (1035, 2271, 1236)
    assert [splits[s]["conflicting_groups"] for s in ("train", "val", "test")] == [39, 1, 2]
    assert (splits["val"]["duplicate_groups"], splits["val"]["duplicate_images"]) == (26, 52)
    assert (splits["test"]["duplicate_groups"], splits["test"]["duplicate_images"]) == (16, 33)
    assert info["cross_split"] == {"val∩train": 280, "test∩train": 288, "test∩val": 44}
