"""ConformalAlerts: conformal p-values and Benjamini–Hochberg over PyOD and scikit-learn."""
import warnings

import numpy as np
import pytest
from scipy.stats import betabinom, false_discovery_control
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor

from core import ConformalAlerts, DataValidationError, NotFittedError
from core.errors import UnmaskWarning

pyod_iforest = pytest.importorskip("pyod.models.iforest")


def normal_rows(rng, n, d=4):
    return rng.normal(size=(n, d))


def detectors():
    return {"pyod IForest": pyod_iforest.IForest(n_estimators=50, random_state=0),
            "sklearn IsolationForest": IsolationForest(n_estimators=50, random_state=0),
            "sklearn LOF (novelty)": LocalOutlierFactor(n_neighbors=20, novelty=True)}


@pytest.mark.parametrize("name", list(detectors()))
def test_planted_anomalies_get_small_p_values_whatever_the_direction(name):
    rng = np.random.default_rng(0)
    conf = ConformalAlerts(detectors()[name], calibration_fraction=0.4,
                           random_state=0).fit(normal_rows(rng, 1000))
    X = np.vstack([normal_rows(rng, 200), normal_rows(rng, 20) + 6.0])
    p = conf.p_values(X)
    assert p[200:].max() < 0.01 < np.median(p[:200])
    alerts = conf.alerts(X, fdr=0.1)
    assert alerts[200:].all() and alerts[:200].sum() <= 5
    # higher = more anomalous after the wrapper, whichever way the detector points
    scores = conf.decision_function(X)
    assert scores[200:].min() > np.median(scores[:200])


def test_direction_detected_and_declared():
    rng = np.random.default_rng(1)
    X = normal_rows(rng, 300)
    assert ConformalAlerts(pyod_iforest.IForest(random_state=0)).fit(X).higher_is_anomalous_
    assert not ConformalAlerts(IsolationForest(random_state=0)).fit(X).higher_is_anomalous_
    # declaring the wrong direction turns the p-values of planted anomalies large
    wrong = ConformalAlerts(IsolationForest(random_state=0), higher_is_anomalous=True,
                            random_state=0).fit(X)
    assert wrong.p_values(normal_rows(rng, 10) + 6.0).min() > 0.5


def test_p_values_of_held_out_normal_rows_are_uniform():
    """Marginal validity: P(p <= 0.1) = 0.1 for a new normal row.

    Given the n = 800 calibration scores, the chance that a new normal row gets p <= 0.1 is
    Beta(80, 721)-distributed (split-conformal coverage; mean 80 / 801), so the count among
    2000 new rows is beta-binomial: a binomial bound widened by the calibration draw.
    """
    rng = np.random.default_rng(2)
    low, high = betabinom.ppf([0.0005, 0.9995], 2000, 80, 721)
    for name, detector in detectors().items():
        conf = ConformalAlerts(detector, calibration_fraction=0.5,
                               random_state=0).fit(normal_rows(rng, 1600))
        assert conf.calibration_.calibration_scores_.size == 800
        p = conf.p_values(normal_rows(rng, 2000))
        assert low <= int((p <= 0.1).sum()) <= high, name
        assert abs(np.median(p) - 0.5) < 0.1, name


def test_benjamini_hochberg_decisions_equal_scipys():
    rng = np.random.default_rng(3)
    conf = ConformalAlerts(IsolationForest(n_estimators=20, random_state=0),
                           random_state=0).fit(normal_rows(rng, 2000))
    X = np.vstack([normal_rows(rng, 300), normal_rows(rng, 30) + rng.uniform(1, 5, (30, 1))])
    p = conf.p_values(X)
    for fdr in (0.01, 0.05, 0.2):
        expected = false_discovery_control(p, method="bh") <= fdr
        np.testing.assert_array_equal(conf.alerts(X, fdr=fdr), expected)
    assert 0 < conf.alerts(X, fdr=0.2).sum() < len(X)


def test_benjamini_hochberg_on_random_p_values_equals_scipys():
    from core.calibration import benjamini_hochberg  # what ConformalAlerts.alerts applies

    rng = np.random.default_rng(4)
    for _ in range(200):
        m = int(rng.integers(1, 60))
        p = np.where(rng.random(m) < 0.3, rng.random(m) * 0.01, rng.random(m))
        alpha = float(rng.uniform(0.01, 0.3))
        np.testing.assert_array_equal(benjamini_hochberg(p, alpha),
                                      false_discovery_control(p, method="bh") <= alpha)


def test_errors_and_warnings():
    rng = np.random.default_rng(5)
    X = normal_rows(rng, 40)
    with pytest.raises(NotFittedError):
        ConformalAlerts(IsolationForest()).p_values(X)
    with pytest.raises(DataValidationError, match="calibration_fraction"):
        ConformalAlerts(IsolationForest(), calibration_fraction=1.0).fit(X)

    class Scorer:  # fit + decision_function, but no way to tell its direction
        def get_params(self, deep=False):
            return {}

        def fit(self, X):
            return self

        def decision_function(self, X):
            return np.zeros(len(X))

    with pytest.raises(DataValidationError, match="higher_is_anomalous"):
        ConformalAlerts(Scorer()).fit(X)
    detector = IsolationForest(random_state=0)
    conf = ConformalAlerts(detector, calibration_fraction=0.25).fit(X)  # 10 calibration rows
    assert not hasattr(detector, "estimators_")  # the user's object is left unfitted
    with pytest.warns(UnmaskWarning, match="calibrated on 10 normal scores"):
        assert not conf.alerts(X, fdr=0.05).any()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        conf.alerts(X, fdr=0.2)
