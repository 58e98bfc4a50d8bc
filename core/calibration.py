"""Calibration as fitted state: thresholds, conformal p-values, FDR control.

``ScoreCalibration`` is fitted on held-out *normal* scores and saved inside a bundle
(``to_dict``/``from_dict``), so a user can ask for "alerts at a 5 % FDR".

Example:
    >>> cal = ScoreCalibration(contamination=0.01).fit(heldout_normal_scores)  # doctest: +SKIP
    >>> p = cal.p_values(new_scores)                                            # doctest: +SKIP
    >>> alerts = cal.alerts(new_scores, fdr=0.05)                               # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import DataValidationError, NotFittedError
from .text import counted


def conformal_p_values(calibration_scores, scores) -> np.ndarray:
    """Split-conformal p-values: ``(1 + #{calib >= s}) / (n + 1)``.

    Valid (super-uniform) under exchangeability of a new normal score with the
    calibration scores; higher score -> smaller p-value. A score that is not finite says
    nothing about the input, so it gets p = 1 (never flagged); NaN would otherwise sort
    above every calibration score and get the smallest p-value.
    """
    calib = np.sort(np.asarray(calibration_scores, dtype=np.float64))
    s = np.asarray(scores, dtype=np.float64)
    if calib.size == 0:
        raise DataValidationError("conformal p-values need at least one calibration score")
    n_ge = calib.size - np.searchsorted(calib, s, side="left")  # count calib >= s
    return np.where(np.isfinite(s), (1.0 + n_ge) / (calib.size + 1.0), 1.0)


def benjamini_hochberg(p_values, alpha: float) -> np.ndarray:
    """Benjamini–Hochberg step-up selection at false-discovery rate ``alpha``.

    Returns:
        Boolean array, True where the hypothesis is rejected (an alert). A NaN p-value
        counts as 1 (never rejected).
    """
    if not 0.0 < alpha < 1.0:
        raise DataValidationError(f"FDR level must be in (0, 1), got {alpha}")
    p = np.nan_to_num(np.asarray(p_values, dtype=np.float64), nan=1.0)
    m = p.size
    if m == 0:
        return np.zeros(0, dtype=bool)
    order = np.argsort(p, kind="stable")
    passed = p[order] <= alpha * np.arange(1, m + 1) / m
    selected = np.zeros(m, dtype=bool)
    if passed.any():
        k = np.nonzero(passed)[0].max()
        selected[order[: k + 1]] = True
    return selected


def threshold_from_contamination(scores, contamination: float) -> float:
    """Score above which a fraction ``contamination`` of ``scores`` lies (PyOD's rule)."""
    if not 0.0 < contamination < 0.5:
        raise DataValidationError(f"contamination must be in (0, 0.5), got {contamination}")
    return float(np.quantile(np.asarray(scores, dtype=np.float64), 1.0 - contamination))


LEVEL_SPAN = 4          # levels searched reach LEVEL_SPAN * contamination (at most 0.5)
LEVEL_STEPS = 200       # levels searched: this many, evenly spaced, plus contamination itself


def group_levels(contamination: float) -> np.ndarray:
    """The quantile levels :func:`threshold_from_groups` searches, ascending: ``LEVEL_STEPS``
    evenly spaced in ``(0, min(0.5, LEVEL_SPAN * contamination)]`` and ``contamination``
    itself (at 5 %: 0.001, 0.002, ..., 0.2)."""
    top = min(0.5, LEVEL_SPAN * contamination)
    # i / (steps / top), not i * top / steps: at 5 % these are exactly 0.001 ... 0.2
    levels = np.arange(1, LEVEL_STEPS + 1) / (LEVEL_STEPS / top)
    return np.union1d(levels, [contamination])


def threshold_from_groups(groups, contamination: float) -> float:
    """Threshold that a new group of scores exceeds at rate ``contamination``, on average.

    Normal scores often come in groups (drive logs, patients) that differ from each other
    more than their members do: a new group exceeds the pooled ``1 - contamination``
    quantile more often than nominal. The level is chosen by leaving one group out at a
    time: the largest level (of :func:`group_levels`) at which the left-out groups' mean
    share above the other groups' pooled quantile is at most ``contamination``; the
    threshold is the pooled quantile at that level. One group: the pooled quantile.

    Raises:
        DataValidationError: ``contamination`` outside (0, 0.5), a group without scores,
            or a score that is not finite.
    """
    if not 0.0 < contamination < 0.5:
        raise DataValidationError(f"contamination must be in (0, 0.5), got {contamination}")
    groups = [check_finite(np.asarray(g, dtype=np.float64).ravel()) for g in groups]
    if not groups:
        raise DataValidationError("no groups of scores given")
    empty = [i for i, g in enumerate(groups) if g.size == 0]
    if empty:
        raise DataValidationError(f"every group needs at least one score; group {empty[0]} has none")
    pooled = np.concatenate(groups)
    if len(groups) < 2:
        return threshold_from_contamination(pooled, contamination)
    levels = group_levels(contamination)
    rates = np.empty((levels.size, len(groups)))           # (levels, groups)
    for i, g in enumerate(groups):
        rest = np.concatenate(groups[:i] + groups[i + 1:])
        thresholds = np.quantile(rest, 1.0 - levels)        # one pass over the rest, every level
        # share of the left-out group above each threshold: count of g > t over its size
        rates[:, i] = (g.size - np.searchsorted(np.sort(g), thresholds, side="right")) / g.size
    held_out = rates.mean(axis=1)                           # mean over groups, per level
    ok = levels[held_out <= contamination]
    level = float(ok.max()) if ok.size else float(levels[0])
    return float(np.quantile(pooled, 1.0 - level))


def top_k_mask(scores, budget: int) -> np.ndarray:
    """Boolean mask of the ``budget`` highest finite scores (ties broken by position)."""
    s = np.asarray(scores, dtype=np.float64)
    if budget < 0:
        raise DataValidationError(f"alert budget must be >= 0, got {budget}")
    mask = np.zeros(s.size, dtype=bool)
    finite = np.flatnonzero(np.isfinite(s))
    if budget:
        mask[finite[np.argsort(-s[finite], kind="stable")[:budget]]] = True
    return mask


def check_finite(scores) -> np.ndarray:
    """``scores`` as float64, refusing NaN and infinite values (a model that produced one
    cannot rank that input, and flagging or clearing it silently would both be wrong)."""
    s = np.asarray(scores, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(s.ravel()))
    if bad.size:
        raise DataValidationError(
            f"{bad.size} of {s.size} scores are not finite (first at position {bad[0]}: "
            f"{s.ravel()[bad[0]]}); check those inputs for missing or extreme values")
    return s


@dataclass
class ScoreCalibration:
    """Threshold + conformal reference scores, fitted on held-out normal scores.

    Args:
        contamination: expected anomaly fraction; sets ``threshold_``.
    """

    contamination: float = 0.01
    threshold_: float | None = None
    calibration_scores_: np.ndarray | None = field(default=None, repr=False)

    def fit(self, normal_scores) -> "ScoreCalibration":
        s = np.asarray(normal_scores, dtype=np.float64).ravel()
        if s.size == 0 or not np.isfinite(s).all():
            raise DataValidationError("calibration needs a non-empty set of finite scores")
        self.calibration_scores_ = np.sort(s)
        self.threshold_ = threshold_from_contamination(s, self.contamination)
        return self

    def fit_groups(self, groups) -> "ScoreCalibration":
        """:meth:`fit` on normal scores that come in groups (a list of arrays), the threshold
        by :func:`threshold_from_groups` (refuses an empty group or a score not finite).

        Only the threshold accounts for the groups; :meth:`p_values` and FDR alerts still
        pool every group's scores as one exchangeable reference set.
        """
        threshold = threshold_from_groups(groups, self.contamination)
        self.fit(np.concatenate([np.asarray(g, dtype=np.float64).ravel() for g in groups]))
        self.threshold_ = threshold
        return self

    def _check(self):
        if self.calibration_scores_ is None:
            raise NotFittedError("ScoreCalibration is not fitted; call fit(normal_scores)")

    def p_values(self, scores) -> np.ndarray:
        """Conformal p-values of ``scores``; refuses NaN or infinite scores."""
        self._check()
        return conformal_p_values(self.calibration_scores_, check_finite(scores))

    def scores_needed(self, fdr: float) -> int:
        """The fewest calibration scores with which some input can be flagged at ``fdr``."""
        return int(np.ceil(1.0 / fdr - 1.0 - 1e-9))

    def fdr_unreachable(self, fdr: float) -> str | None:
        """Why no alert can be raised at false-discovery rate ``fdr``, or None if one can.

        The smallest conformal p-value is ``1 / (n + 1)`` for ``n`` calibration scores,
        and Benjamini–Hochberg flags nothing unless some p-value is at most ``fdr``: with
        fewer than ``1 / fdr - 1`` calibration scores no input can ever be flagged.
        """
        self._check()
        n = self.calibration_scores_.size
        floor = 1.0 / (n + 1.0)
        if floor <= fdr:
            return None
        return (f"calibrated on {counted(n, 'normal score')}: no p-value can be "
                f"below {floor:.3g}, so nothing can be flagged at FDR {fdr:g} (inputs are still "
                f"ranked by score); calibrate on at least {self.scores_needed(fdr)}")

    def alerts(self, scores, fdr: float | None = None, budget: int | None = None) -> np.ndarray:
        """Alerts by FDR (Benjamini–Hochberg), by budget (top-k), or by ``threshold_``;
        refuses NaN or infinite scores."""
        self._check()
        if fdr is not None and budget is not None:
            raise DataValidationError("give either fdr or budget, not both")
        scores = check_finite(scores)
        if fdr is not None:
            return benjamini_hochberg(self.p_values(scores), fdr)
        if budget is not None:
            return top_k_mask(scores, budget)
        return scores > self.threshold_

    def to_dict(self) -> dict:
        self._check()
        return {"contamination": self.contamination, "threshold": self.threshold_,
                "calibration_scores": self.calibration_scores_.tolist()}

    @classmethod
    def from_dict(cls, state: dict) -> "ScoreCalibration":
        cal = cls(contamination=state["contamination"])
        cal.threshold_ = float(state["threshold"])
        cal.calibration_scores_ = np.asarray(state["calibration_scores"], dtype=np.float64)
        return cal
