"""Fixtures for core tests: small synthetic tables with known anomalies, tiny detectors."""
import numpy as np
import pytest
from tabular_data import TINY, correlated_rows, mixed_frame  # noqa: F401  (TINY: used by tests)

@pytest.fixture(scope="session")
def synthetic():
    """``(X_train, X_test, y_test)``: anomalies break the correlation structure."""
    rng = np.random.default_rng(0)
    train = correlated_rows(rng, 1200)
    normal = correlated_rows(rng, 300)
    anomalies = correlated_rows(rng, 30)
    cols = rng.integers(0, 8, size=30)
    anomalies[np.arange(30), cols] += rng.choice([-3.0, 3.0], size=30)  # one broken cell
    X_test = np.vstack([normal, anomalies])
    y_test = np.r_[np.zeros(300), np.ones(30)].astype(int)
    return train, X_test, y_test


@pytest.fixture(scope="session")
def frame():
    return mixed_frame(np.random.default_rng(1), 600)


@pytest.fixture(scope="session")
def fitted_frame_detector(frame):
    from core import TabularDetector

    return TabularDetector(random_state=0, **TINY).fit(frame)


@pytest.fixture(scope="session")
def fitted_array_detector(synthetic):
    from core import TabularDetector

    return TabularDetector(random_state=0, **TINY).fit(synthetic[0])
