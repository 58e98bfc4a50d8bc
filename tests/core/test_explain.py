"""SHAP wrappers: additivity, agreement with exact values for a linear score."""
import numpy as np
import pytest

from core.explain import ShapResult, check_additivity, feature_shap, region_shap


def test_linear_score_matches_exact_shap():
    rng = np.random.default_rng(0)
    weights = np.array([2.0, -1.0, 0.0, 0.5])
    background = rng.normal(size=(20, 4))
    X = rng.normal(size=(3, 4))
    result = feature_shap(lambda m: m @ weights, X, background, feature_names=list("abcd"))
    exact = (X - background.mean(0)) * weights  # SHAP of a linear model (independent masker)
    np.testing.assert_allclose(result.values, exact, atol=1e-8)
    assert result.feature_names == list("abcd")
    np.testing.assert_allclose(result.values.sum(1) + result.base_values, result.scores)


def test_region_shap_additive():
    weights = np.array([1.0, 3.0, 0.0])
    result = region_shap(lambda keep: keep @ weights + keep[:, 0] * keep[:, 1], 3)
    assert result.values.shape == (1, 3)
    assert result.scores[0] == pytest.approx(5.0) and result.base_values[0] == pytest.approx(0.0)
    np.testing.assert_allclose(result.values[0], [1.5, 3.5, 0.0], atol=1e-8)


def test_additivity_violation_raises():
    bad = ShapResult(np.ones((1, 2)), np.zeros(1), np.array([5.0]), ["a", "b"])
    with pytest.raises(ArithmeticError, match="additivity"):
        check_additivity(bad)


def test_shap_kernels_are_cacheable_and_give_the_same_values():
    """The cached stand-in for shap's link-taking kernel matches shap's own kernel."""
    import shap
    from shap.utils import _masked_model

    from core._shap_kernels import fixed_single_output_identity
    from core.explain import _import_shap

    _import_shap()
    patched = _masked_model._build_fixed_single_output
    assert patched.unmask_patched
    rng = np.random.default_rng(0)
    outputs, positions = rng.normal(size=10), np.array([0, 4, 4, 8, 10])
    varying = np.array([[True, True, True, True]] * 3 + [[False, True, False, True]])
    counts = np.array([4, 0, 4, 2])
    mine, theirs = np.zeros(4), np.zeros(4)
    fixed_single_output_identity(mine, np.zeros(4), outputs, positions, varying, counts)
    patched.original(theirs, np.zeros(4), outputs, positions, varying, counts, shap.links.identity, None)
    np.testing.assert_allclose(mine, theirs)
    assert len(set(np.round(mine, 12))) == 3  # the carried-over batch repeats the one before
