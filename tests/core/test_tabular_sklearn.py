"""TabularDetector against scikit-learn's estimator checks (tiny configuration)."""
import numpy as np
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from core import TabularDetector

TINY_CHECK = dict(n_reference=64, n_reference_masks=4, n_learned_masks=2, hidden=8, latent=4,
                  max_epochs=2, max_steps=4, batch_size=64)

# Checks we fail on purpose, and why.
EXPECTED_FAILURES = {
    # object columns are categorical by design (strings, dicts alike are categories)
    "check_dtype_object": "object columns are treated as categorical features",
}


@parametrize_with_checks([TabularDetector(random_state=0, **TINY_CHECK)],
                         expected_failed_checks=lambda est: EXPECTED_FAILURES)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_clone_and_params():
    det = TabularDetector(random_state=3, contamination=0.05, components=("reference",))
    twin = clone(det)
    assert twin.get_params() == det.get_params() and twin is not det
    assert twin.set_params(n_reference=10) is twin and twin.n_reference == 10
    X = np.random.default_rng(0).normal(size=(40, 3))
    assert twin.fit(X) is twin
    assert not hasattr(clone(twin), "threshold_")
