"""Evaluation metrics: thin wrappers, scikit-learn where it has them.

All take ``y_true`` with 1 = anomaly/foreground and scores where higher = more anomalous.
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from .errors import DataValidationError


def _check_binary(y_true) -> np.ndarray:
    y = np.asarray(y_true).ravel()
    if y.size == 0:
        raise DataValidationError("metrics need at least one label")
    if np.unique(y).size < 2:
        raise DataValidationError("metrics need both classes (anomalies and normals) in y_true")
    return y


def auroc(y_true, scores) -> float:
    """Area under the ROC curve."""
    return float(roc_auc_score(_check_binary(y_true), np.asarray(scores).ravel()))


def auprc(y_true, scores) -> float:
    """Average precision (area under the precision-recall curve)."""
    return float(average_precision_score(_check_binary(y_true), np.asarray(scores).ravel()))


def precision_at_k(y_true, scores, k: int) -> float:
    """Fraction of true anomalies among the ``k`` highest scores."""
    y = np.asarray(y_true).ravel()
    s = np.asarray(scores).ravel()
    if not 0 < k <= y.size:
        raise DataValidationError(f"k must be in [1, {y.size}], got {k}")
    top = np.argsort(-s, kind="stable")[:k]
    return float(y[top].mean())


def f1_at_threshold(y_true, scores, threshold: float) -> float:
    """F1 of the prediction ``score > threshold``."""
    y = _check_binary(y_true)
    return float(f1_score(y, (np.asarray(scores).ravel() > threshold).astype(int), zero_division=0))


def dice(y_true, y_pred, eps: float = 1e-8) -> float:
    """Dice overlap of two binary masks (1.0 when both are empty)."""
    a = np.asarray(y_true, dtype=bool)
    b = np.asarray(y_pred, dtype=bool)
    if a.shape != b.shape:
        raise DataValidationError(f"dice: shapes differ {a.shape} vs {b.shape}")
    denom = a.sum() + b.sum()
    if denom == 0:
        return 1.0
    return float(2.0 * np.logical_and(a, b).sum() / (denom + eps))


def iou(y_true, y_pred) -> float:
    """Intersection over union of two binary masks (1.0 when both are empty)."""
    a = np.asarray(y_true, dtype=bool)
    b = np.asarray(y_pred, dtype=bool)
    if a.shape != b.shape:
        raise DataValidationError(f"iou: shapes differ {a.shape} vs {b.shape}")
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def soft_iou(y_true, probabilities, eps: float = 1e-8) -> float:
    """Soft IoU as in the Waymo occupancy benchmark: sum(p*y) / sum(p + y - p*y)."""
    y = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise DataValidationError(f"soft_iou: sizes differ {y.size} vs {p.size}")
    inter = (p * y).sum()
    union = (p + y - p * y).sum()
    return float(inter / (union + eps)) if union > 0 else 1.0
