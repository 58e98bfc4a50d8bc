"""Metrics against scikit-learn and hand-computed values."""
import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from core import DataValidationError
from core.metrics import auprc, auroc, dice, f1_at_threshold, precision_at_k, soft_iou


def test_against_sklearn():
    rng = np.random.default_rng(0)
    y = rng.random(200) < 0.2
    s = rng.normal(size=200) + y
    assert auroc(y, s) == pytest.approx(roc_auc_score(y, s))
    assert auprc(y, s) == pytest.approx(average_precision_score(y, s))
    assert f1_at_threshold(y, s, 0.5) == pytest.approx(f1_score(y, s > 0.5))


def test_hand_values():
    y = [0, 0, 1, 1]
    assert auroc(y, [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert precision_at_k(y, [0.9, 0.1, 0.8, 0.2], 2) == 0.5
    assert dice([1, 1, 0, 0], [1, 0, 1, 0]) == pytest.approx(0.5)
    assert dice(np.zeros(3), np.zeros(3)) == 1.0
    assert soft_iou([1, 0], [0.5, 0.5]) == pytest.approx(0.5 / 1.5)


def test_metric_errors():
    with pytest.raises(DataValidationError, match="both classes"):
        auroc([1, 1], [0.1, 0.2])
    with pytest.raises(DataValidationError, match="k must be"):
        precision_at_k([0, 1], [0.1, 0.2], 3)
    with pytest.raises(DataValidationError, match="shapes differ"):
        dice(np.zeros(3), np.zeros(4))
