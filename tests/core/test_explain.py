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
