"""SHAP values of anomaly scores, computed with the ``shap`` library.

Two entry points:

* :func:`feature_shap` — features of tabular rows (background = sample of training rows).
* :func:`region_shap` — regions of a volume or grid: the "features" are on/off switches
  per region (1 = keep the input's region, 0 = replace it by a baseline), so the caller
  supplies ``score_of_keep(keep) -> scores`` for a batch of 0/1 switch vectors.

Both use ``shap.PermutationExplainer`` (antithetic permutations), whose values satisfy
additivity by construction: ``sum(values) == score - expected_score`` up to float error.
:func:`check_additivity` verifies it and raises if it is off by more than ``tolerance``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ADDITIVITY_TOLERANCE = 1e-4  # relative to max(1, |score|)


@dataclass
class ShapResult:
    """SHAP values ``(n, n_features)``, expected score ``(n,)`` and explained scores ``(n,)``."""

    values: np.ndarray
    base_values: np.ndarray
    scores: np.ndarray
    feature_names: list[str]

    def additivity_error(self) -> float:
        gap = np.abs(self.values.sum(axis=1) + self.base_values - self.scores)
        return float((gap / np.maximum(1.0, np.abs(self.scores))).max(initial=0.0))


def check_additivity(result: ShapResult, tolerance: float = ADDITIVITY_TOLERANCE) -> ShapResult:
    err = result.additivity_error()
    if err > tolerance:
        raise ArithmeticError(f"SHAP additivity violated: relative gap {err:.2e} > {tolerance:.0e}")
    return result


_SHAP_JIT = (("shap.maskers._tabular", "_delta_masking"),
             ("shap.links", "identity"), ("shap.links", "_identity_inverse"))


def _import_shap():
    """``import shap``, with on-disk caching for the numba kernels its permutation
    explainer compiles: compiling them cost 20-60 s in every new process on a busy
    machine (a scoring job, a test); cached, later processes load them. One kernel takes
    shap's link function as an argument, which numba cannot cache; for the identity link
    it is replaced by an equivalent cached one (``core._shap_kernels``). Best effort:
    where caching cannot be enabled, shap compiles as usual."""
    import importlib

    import shap

    for module_name, name in _SHAP_JIT:
        try:
            dispatcher = getattr(importlib.import_module(module_name), name)
            if getattr(dispatcher, "_cache", None) is not None and \
                    type(dispatcher._cache).__name__ == "NullCache":
                dispatcher.enable_caching()
        except Exception:  # a shap version without this kernel, or an unwritable cache
            continue
    try:  # the one kernel that takes the link as an argument cannot be cached: stand in for it
        from shap.utils import _masked_model

        from . import _shap_kernels  # lazy: patches shap, which loads only when explaining

        original = _masked_model._build_fixed_single_output
        if not getattr(original, "unmask_patched", False):
            _masked_model._build_fixed_single_output = _shap_kernels.patched(original, shap.links.identity)
    except Exception:  # another shap layout: shap compiles its own kernel
        pass
    return shap


def _permutation_explain(score_fn, X, background, max_evals, seed) -> tuple[np.ndarray, np.ndarray]:
    shap = _import_shap()

    n_features = X.shape[1]
    masker = shap.maskers.Independent(background, max_samples=len(background))
    explainer = shap.PermutationExplainer(score_fn, masker, seed=seed)
    evals = max(int(max_evals or 0), 2 * n_features + 1)
    explanation = explainer(X, max_evals=evals, silent=True)
    return np.asarray(explanation.values, dtype=np.float64), np.asarray(
        explanation.base_values, dtype=np.float64).reshape(len(X))


def feature_shap(score_fn, X, background, feature_names=None, max_evals: int | None = None,
                 seed: int = 0, tolerance: float = ADDITIVITY_TOLERANCE) -> ShapResult:
    """SHAP values of ``score_fn`` for rows ``X`` against ``background`` rows.

    Args:
        score_fn: maps an ``(n, d)`` float array to ``(n,)`` scores.
        X: rows to explain, ``(n, d)``.
        background: reference rows, ``(b, d)``; the expected score is their mean score.
        feature_names: names for the ``d`` columns.
        max_evals: evaluation budget per row (at least ``2 d + 1``).
        seed: permutation seed.
        tolerance: additivity tolerance checked before returning.
    """
    X = np.asarray(X, dtype=np.float64)
    background = np.asarray(background, dtype=np.float64)
    values, base = _permutation_explain(score_fn, X, background, max_evals, seed)
    scores = np.asarray(score_fn(X), dtype=np.float64).reshape(len(X))
    names = list(feature_names) if feature_names is not None else [f"x{i}" for i in range(X.shape[1])]
    return check_additivity(ShapResult(values, base, scores, names), tolerance)


def region_shap(score_of_keep, n_regions: int, region_names=None, max_evals: int | None = None,
                seed: int = 0, tolerance: float = ADDITIVITY_TOLERANCE) -> ShapResult:
    """SHAP values of one item's score over ``n_regions`` regions.

    Args:
        score_of_keep: maps an ``(m, n_regions)`` 0/1 array (1 = region as observed,
            0 = region replaced by its baseline) to ``(m,)`` scores.
        n_regions: number of regions.
        region_names: labels for the regions.

    Returns:
        ``ShapResult`` with one row; ``base_values`` is the all-baseline score.
    """
    keep_all = np.ones((1, n_regions))
    baseline = np.zeros((1, n_regions))
    values, base = _permutation_explain(score_of_keep, keep_all, baseline, max_evals, seed)
    score = np.asarray(score_of_keep(keep_all), dtype=np.float64).reshape(1)
    names = list(region_names) if region_names is not None else [f"region {i}" for i in range(n_regions)]
    return check_additivity(ShapResult(values, base, score, names), tolerance)
