"""TabularDetector on duplicated rows: ties must not collapse the score's scales.

Network-traffic tables hold many exact copies of the same row. Most held-out rows then have
an exact twin in the memory and reconstruct with error 0, so a component's inter-quartile
range (its scale) and the median neighbour distance (the softmax temperature) are 0.
"""
import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from core import TabularDetector
from core.metrics import auprc, auroc


def _prototype_rows(rng, n, share_copies):
    """Rows that are exact copies of 300 prototypes (``share_copies`` of them) or noisy."""
    protos = np.round(np.random.default_rng(7).normal(size=(300, 4))
                      @ np.random.default_rng(8).normal(size=(4, 4)), 1)
    rows = protos[rng.integers(300, size=n)].copy()
    noisy = rng.random(n) >= share_copies
    rows[noisy] += 0.3 * rng.normal(size=(int(noisy.sum()), 4))
    return rows


@pytest.fixture(scope="module")
def duplicated():
    """``(train, test, y_test)``: 80 % exact copies; anomalies: a copy with one cell moved."""
    rng = np.random.default_rng(1)
    train = _prototype_rows(rng, 3000, 0.8)
    anomalies = _prototype_rows(rng, 12, 1.0)
    anomalies[np.arange(12), rng.integers(4, size=12)] += rng.choice([-1.5, 1.5], size=12)
    test = np.vstack([_prototype_rows(rng, 1000, 0.8), anomalies])
    mean, std = train.mean(0), train.std(0)
    return (train - mean) / std, (test - mean) / std, np.r_[np.zeros(1000), np.ones(12)]


def test_duplicated_rows_keep_every_component_in_the_score(duplicated):
    train, test, y_test = duplicated
    det = TabularDetector(random_state=0, n_reference=4096).fit(train)
    for name, stats in det.component_stats_.items():
        assert stats["scale"] > 1e-3, (name, stats)  # a collapsed IQR gave 1e-12
    assert det.modules_["memory"].temperature.min() > 1e-4  # not a hard arg-min
    assert np.isfinite(det.threshold_) and det.threshold_ < 100  # was ~1e12
    scores = det.decision_function(test)
    knn = NearestNeighbors(n_neighbors=5).fit(train).kneighbors(test)[0][:, -1]
    assert auroc(y_test, scores) >= 0.93
    assert auprc(y_test, scores) >= 0.8 * auprc(y_test, knn)


def test_all_rows_identical_scores_without_blowing_up():
    train = np.tile([[1.0, 2.0, 3.0]], (200, 1))
    det = TabularDetector(random_state=0, n_reference=256).fit(train)
    scores = det.decision_function(np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 9.0]]))
    assert np.all(np.isfinite(scores)) and scores[1] > scores[0]
    assert all(s["scale"] == 1.0 for s in det.component_stats_.values())
