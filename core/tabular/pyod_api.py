"""PyOD's detector outputs (``pyod.models.base.BaseDetector``) for unmask's estimators.

A user's PyOD code reads ``labels_``, ``decision_scores_``, ``threshold_`` and calls
``predict(X, return_confidence=True)``, ``predict_proba(X, method="linear"|"unify")``,
``predict_confidence(X)`` and ``fit_predict(X)``. :class:`PyODOutputsMixin` gives these
PyOD's exact semantics on top of what an estimator already has: ``decision_function``
(higher = more anomalous), the training rows' ``decision_scores_``, ``threshold_`` and a
float ``contamination``. Like PyOD, ``predict`` says 1 above ``threshold_``.

Example:
    >>> det = TabularDetector(contamination=0.05).fit(X)       # doctest: +SKIP
    >>> det.labels_.mean(), det.predict_proba(X_new)[:, 1]     # doctest: +SKIP
"""
from __future__ import annotations

import numpy as np
from scipy.special import erf
from scipy.stats import binom

PROBA_METHODS = ("linear", "unify")


class PyODOutputsMixin:
    """``labels_``, ``predict``, ``predict_proba``, ``predict_confidence``, ``fit_predict``.

    The host class supplies ``fit``, ``decision_function``, ``_check_fitted``,
    ``decision_scores_``, ``threshold_`` and ``contamination``.
    """

    @property
    def labels_(self) -> np.ndarray:
        """Training rows' labels ``(n,)`` int: 1 where ``decision_scores_ > threshold_``."""
        self._check_fitted()
        return (self.decision_scores_ > self.threshold_).astype(np.int64)

    def fit_predict(self, X, y=None) -> np.ndarray:
        """``fit(X)`` then the training labels (PyOD's ``labels_``, 0/1 -- not
        scikit-learn's -1/1 of ``OutlierMixin``)."""
        return self.fit(X, y).labels_

    def predict(self, X, return_confidence: bool = False):
        """1 where the score exceeds ``threshold_``, else 0.

        Args:
            X: rows to label.
            return_confidence: also return :meth:`predict_confidence` (as PyOD).

        Returns:
            ``(n,)`` int64 labels, or ``(labels, confidence)``.
        """
        scores = self.decision_function(X)
        labels = (scores > self.threshold_).astype(np.int64)
        if return_confidence:
            return labels, self._confidence(scores, labels)
        return labels

    def predict_proba(self, X, method: str = "linear", return_confidence: bool = False):
        """Outlier probability ``(n, 2)``: columns ``[P(normal), P(outlier)]`` (PyOD's rule).

        Args:
            X: rows to score.
            method: ``"linear"`` -- min-max scaling by the training scores, clipped to
                [0, 1]; ``"unify"`` -- ``erf((s - mean) / (std * sqrt 2))`` of the training
                scores, clipped (Kriegel et al., 2011).
            return_confidence: also return :meth:`predict_confidence`.
        """
        if method not in PROBA_METHODS:
            raise ValueError(f"method must be one of {PROBA_METHODS}, got {method!r}")
        scores = self.decision_function(X)
        train = self.decision_scores_
        if method == "linear":
            span = train.max() - train.min()
            outlier = (scores - train.min()) / (span if span > 0 else 1.0)
        else:
            outlier = erf((scores - train.mean()) / (train.std() * np.sqrt(2.0)))
        outlier = np.clip(outlier, 0.0, 1.0)
        probs = np.column_stack([1.0 - outlier, outlier])
        if return_confidence:
            return probs, self._confidence(scores, (scores > self.threshold_).astype(np.int64))
        return probs

    def predict_confidence(self, X) -> np.ndarray:
        """How consistently ``predict`` would say the same under a perturbed training set,
        in [0, 1] (Perini et al., 2020; PyOD's ``predict_confidence``)."""
        scores = self.decision_function(X)
        return self._confidence(scores, (scores > self.threshold_).astype(np.int64))

    def _confidence(self, scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
        train = np.sort(self.decision_scores_)
        n = train.size
        n_below = np.searchsorted(train, scores, side="right")  # #{train <= s}
        posterior = (1.0 + n_below) / (2.0 + n)  # Bayesian outlier probability
        confidence = 1.0 - binom.cdf(n - int(n * self.contamination), n, posterior)
        return np.where(labels == 1, confidence, 1.0 - confidence)
