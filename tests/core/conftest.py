"""Fixtures for core tests: small synthetic tables with known anomalies, tiny detectors."""
import numpy as np
import pandas as pd
import pytest

# A tiny detector configuration: seconds to fit, still both components.
TINY = dict(n_reference=256, n_reference_masks=8, n_learned_masks=4, hidden=32, latent=8,
            max_epochs=40, max_steps=300, batch_size=128)


def correlated_rows(rng, n, d=8):
    """Rows on a 3-D linear manifold plus small noise (normal data)."""
    basis = np.random.default_rng(123).normal(size=(3, d))
    return rng.normal(size=(n, 3)) @ basis + 0.1 * rng.normal(size=(n, d))


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


def mixed_frame(rng, n):
    """DataFrame with numeric and categorical columns; ``kind`` depends on ``amount``."""
    amount = rng.gamma(2.0, 10.0, size=n)
    kind = np.where(amount > 20, "large", "small")
    channel = rng.choice(["web", "shop", "phone"], size=n)
    return pd.DataFrame({"amount": amount, "hour": rng.integers(0, 24, size=n),
                         "kind": kind, "channel": pd.Categorical(channel),
                         "flag": rng.random(n) < 0.3})


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
