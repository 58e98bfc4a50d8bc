"""Conformal p-values and false-discovery-rate alerts on top of any detector.

:class:`ConformalAlerts` wraps a PyOD or scikit-learn outlier detector (or unmask's own):
it fits a copy of the detector on part of the training rows and keeps the other part's
scores as the conformal reference (split conformal), so a new normal row's p-value is
uniform whatever the detector, and ``alerts(X, fdr=0.05)`` applies Benjamini–Hochberg.
The p-values and the selection are :mod:`core.calibration`'s.

Score direction differs between libraries: PyOD's and unmask's ``decision_function`` is
higher = more anomalous, scikit-learn's (``IsolationForest``, ``LocalOutlierFactor``,
``OneClassSVM``) is higher = more *normal*. ``higher_is_anomalous`` says which; left at
``None`` it is detected: a fitted detector with PyOD's ``decision_scores_`` is
higher = anomalous, a scikit-learn outlier detector higher = normal.

Example:
    >>> from pyod.models.iforest import IForest                      # doctest: +SKIP
    >>> conf = ConformalAlerts(IForest(random_state=0)).fit(X_train)  # doctest: +SKIP
    >>> conf.p_values(X_new); conf.alerts(X_new, fdr=0.05)            # doctest: +SKIP
"""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator, clone, is_outlier_detector
from sklearn.model_selection import train_test_split

from .calibration import ScoreCalibration
from .errors import DataValidationError, NotFittedError, UnmaskWarning


class ConformalAlerts(BaseEstimator):
    """Split-conformal p-values and Benjamini–Hochberg alerts for any detector.

    Args:
        detector: an unfitted detector with ``fit(X)`` and ``decision_function(X)``; it is
            cloned, the given object is left as it is.
        calibration_fraction: share of the ``fit`` rows held out to calibrate (the copy
            is fitted on the rest); more rows make smaller p-values possible: the
            smallest is ``1 / (n_calibration + 1)``.
        higher_is_anomalous: the detector's ``decision_function`` direction; ``None``
            detects it (see the module docstring).
        random_state: seed of the split.

    Attributes (after ``fit``):
        detector_: the fitted copy.
        calibration_: :class:`core.calibration.ScoreCalibration` on the held-out rows'
            anomaly scores.
        higher_is_anomalous_: the direction used.
    """

    def __init__(self, detector, calibration_fraction: float = 0.3,
                 higher_is_anomalous: bool | None = None, random_state=None):
        self.detector = detector
        self.calibration_fraction = calibration_fraction
        self.higher_is_anomalous = higher_is_anomalous
        self.random_state = random_state

    def fit(self, X, y=None) -> "ConformalAlerts":
        """Fit a copy of the detector on part of ``X`` (normal rows), calibrate on the rest.

        ``y`` is ignored. Returns ``self``.
        """
        if not 0.0 < self.calibration_fraction < 1.0:
            raise DataValidationError("calibration_fraction must be in (0, 1), "
                                      f"got {self.calibration_fraction}")
        fit_rows, calibration_rows = train_test_split(
            X, test_size=self.calibration_fraction, random_state=self.random_state)
        self.detector_ = clone(self.detector).fit(fit_rows)
        self.higher_is_anomalous_ = _direction(self.detector_, self.higher_is_anomalous)
        self.calibration_ = ScoreCalibration().fit(self.decision_function(calibration_rows))
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "calibration_"):
            raise NotFittedError("this ConformalAlerts is not fitted; call fit(X) first")

    def decision_function(self, X) -> np.ndarray:
        """The detector's scores turned higher = more anomalous ``(n,)``."""
        scores = np.asarray(self.detector_.decision_function(X), dtype=np.float64).ravel()
        return scores if self.higher_is_anomalous_ else -scores

    def p_values(self, X) -> np.ndarray:
        """Conformal p-values ``(n,)``: small = unlike the held-out normal rows."""
        self._check_fitted()
        return self.calibration_.p_values(self.decision_function(X))

    def alerts(self, X, fdr: float = 0.05) -> np.ndarray:
        """Boolean alerts ``(n,)``: Benjamini–Hochberg on the p-values at level ``fdr``.

        Warns (:class:`core.errors.UnmaskWarning`) when the calibration set is too small
        for any alert at this level.
        """
        self._check_fitted()
        reason = self.calibration_.fdr_unreachable(fdr)
        if reason:
            warnings.warn(reason, UnmaskWarning, stacklevel=2)
        return self.calibration_.alerts(self.decision_function(X), fdr=fdr)


def _direction(detector, declared: bool | None) -> bool:
    """True when ``detector.decision_function`` is higher = more anomalous."""
    if declared is not None:
        return bool(declared)
    if hasattr(detector, "decision_scores_"):  # PyOD's BaseDetector (and unmask's)
        return True
    if isinstance(detector, BaseEstimator) and is_outlier_detector(detector):
        # scikit-learn: decision_function < 0 is an outlier
        return False
    raise DataValidationError(
        f"cannot tell which way {type(detector).__name__}.decision_function points; "
        "pass higher_is_anomalous=True or False")
