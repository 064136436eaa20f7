import numpy as np
import pytest

from fercomp.train.metrics import classification_report, confusion_matrix, evaluate_probabilities


def test_confusion_matrix_matches_hand_count():
    y_true = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 0, 2, 2, 1, 2])
    cm = confusion_matrix(y_true, y_pred, 3)
    assert cm.tolist() == [[1, 1, 0], [1, 2, 0], [0, 1, 3]]


def test_report_matches_hand_computation():
    cm = np.array([[1, 1, 0], [1, 2, 0], [0, 1, 3]])
    r = classification_report(cm, ["a", "b", "c"])
    assert r["n"] == 9
    assert r["accuracy"] == pytest.approx(6 / 9)
    # class b: precision 2/4, recall 2/3, F1 = 2*0.5*0.667/(1.167) = 4/7
    assert r["per_class"]["b"]["precision"] == pytest.approx(0.5)
    assert r["per_class"]["b"]["recall"] == pytest.approx(2 / 3)
    assert r["per_class"]["b"]["f1"] == pytest.approx(4 / 7)
    f1_a = 2 * 0.5 * 0.5 / 1.0
    f1_c = 2 * 1.0 * 0.75 / 1.75
    assert r["macro_f1"] == pytest.approx((f1_a + 4 / 7 + f1_c) / 3)
    assert r["per_class"]["c"]["support"] == 4


def test_absent_class_does_not_drag_macro_f1():
    cm = np.array([[2, 0, 0], [0, 2, 0], [0, 0, 0]])
    r = classification_report(cm, ["a", "b", "never"])
    assert r["macro_f1"] == pytest.approx(1.0)
    assert r["per_class"]["never"]["f1"] == 0.0


def test_evaluate_probabilities_uses_argmax():
    probs = np.array([[0.7, 0.3], [0.2, 0.8], [0.6, 0.4]])
    r = evaluate_probabilities(probs, np.array([0, 1, 1]), ["x", "y"])
    assert r["confusion"] == [[1, 0], [1, 1]]
