"""Score drift: do a run's scores still look like the model's calibration scores?

A model is calibrated on held-out normal scores (``core.calibration``). A scoring run keeps
a small summary of those scores -- the *calibration reference*: quantile bins and how many
calibration scores fell in each -- in its manifest, and :func:`score_drift` compares the
run's scores with it by a binned two-sample chi-square test (a 2 x k contingency table:
reference counts against run counts over the same bins). The bins are the reference's own
quantiles, so each holds about the same share of calibration scores and the test is equally
sensitive along the whole range, tail included.

The p-value answers "could these scores come from the calibration distribution?"; a run of
a million scores will flag shifts too small to matter, so the share of scores above the
calibration threshold is reported beside it, against the share the calibration expects.

Example:
    >>> import numpy as np
    >>> from core.calibration import ScoreCalibration
    >>> rng = np.random.default_rng(0)
    >>> reference = calibration_reference(ScoreCalibration(0.05).fit(rng.normal(size=2000)))
    >>> score_drift(reference, rng.normal(size=500)).drifted
    False
    >>> score_drift(reference, rng.normal(0.5, size=500)).drifted
    True
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .calibration import ScoreCalibration
from .errors import DataValidationError

REFERENCE_VERSION = 1
REFERENCE_BINS = 20
# Chi-square is trusted when every bin expects at least this many run scores; smaller runs
# merge neighbouring bins, and a run that cannot fill two bins is not tested.
MIN_EXPECTED = 5
DRIFT_ALPHA = 0.01


def calibration_reference(calibration: ScoreCalibration, bins: int = REFERENCE_BINS) -> dict:
    """The calibration scores summarised for a run manifest (JSON-ready, ~1 kB).

    Args:
        calibration: a fitted ``ScoreCalibration``.
        bins: number of quantile bins (fewer when the scores have ties).

    Returns:
        ``{"version", "n", "edges", "counts", "contamination", "threshold"}``: ``edges`` are
        the interior bin edges (ascending); bin ``j`` holds scores ``s`` with
        ``edges[j-1] < s <= edges[j]``; ``counts`` has ``len(edges) + 1`` entries.
    """
    scores = np.asarray(calibration.to_dict()["calibration_scores"], dtype=np.float64)
    edges = np.unique(np.quantile(scores, np.arange(1, bins) / bins))
    counts = np.bincount(np.searchsorted(edges, scores, side="left"), minlength=edges.size + 1)
    return {"version": REFERENCE_VERSION, "n": int(scores.size), "edges": edges.tolist(),
            "counts": counts.tolist(), "contamination": float(calibration.contamination),
            "threshold": float(calibration.threshold_)}


@dataclass(frozen=True)
class ScoreDrift:
    """A run's scores against the calibration reference.

    Attributes:
        n_scores: finite run scores compared. n_reference: calibration scores.
        bins: bins the test used (0: too few scores to test).
        statistic: chi-square statistic (NaN when not tested), with ``bins - 1`` degrees
            of freedom.
        p_value: its p-value (NaN when not tested).
        share_above_threshold: share of run scores above the calibration threshold.
        nominal_rate: the share the calibration expects there (its contamination).
        alpha: the p-value below which the scores are said to differ.
    """

    n_scores: int
    n_reference: int
    bins: int
    statistic: float
    p_value: float
    share_above_threshold: float
    nominal_rate: float
    alpha: float = DRIFT_ALPHA

    @property
    def tested(self) -> bool:
        return not np.isnan(self.p_value)

    @property
    def drifted(self) -> bool:
        return self.tested and self.p_value < self.alpha


def _check_reference(reference, where: str) -> tuple[np.ndarray, np.ndarray]:
    """``(edges, counts)`` of a reference read from a file, or one clear error."""
    if not isinstance(reference, dict) or reference.get("version") != REFERENCE_VERSION:
        found = reference.get("version") if isinstance(reference, dict) else type(reference).__name__
        raise DataValidationError(f"{where}: calibration reference version {found!r} is not "
                                  f"{REFERENCE_VERSION}; score the data again to write one")
    try:
        edges = np.asarray(reference["edges"], dtype=np.float64)
        counts = np.asarray(reference["counts"], dtype=np.int64)
        float(reference["contamination"]), float(reference["threshold"])
    except (KeyError, TypeError, ValueError) as err:
        raise DataValidationError(f"{where}: calibration reference is incomplete ({err})") from None
    if (edges.ndim != 1 or counts.shape != (edges.size + 1,) or (counts < 0).any()
            or counts.sum() < 1 or not np.isfinite(edges).all() or (np.diff(edges) <= 0).any()):
        raise DataValidationError(f"{where}: calibration reference needs ascending finite edges "
                                  "and one non-negative count more than edges")
    return edges, counts


def _merge_bins(counts: np.ndarray, groups: int) -> np.ndarray:
    """Group index of each reference bin: ``groups`` runs of neighbouring bins holding about
    equal shares of the reference."""
    share = counts / counts.sum()
    middle = np.cumsum(share) - share / 2.0            # (k,) reference CDF at bin centres
    return np.minimum((middle * groups).astype(np.int64), groups - 1)


def score_drift(reference: dict, scores, alpha: float = DRIFT_ALPHA,
                where: str = "run manifest") -> ScoreDrift:
    """Compare ``scores`` with a :func:`calibration_reference` (binned chi-square test).

    Args:
        reference: the run manifest's ``summary["calibration_reference"]``.
        scores: the run's scores (non-finite values are left out).
        alpha: p-value below which ``drifted`` is True. Under no drift the test flags a
            run at about this rate.
        where: what holds ``reference``, for error messages.

    Raises:
        DataValidationError: a malformed reference.
    """
    from scipy.stats import chi2_contingency

    edges, counts = _check_reference(reference, where)
    values = np.asarray(scores, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    above = float((values > float(reference["threshold"])).mean()) if values.size else float("nan")
    groups = min(counts.size, values.size // MIN_EXPECTED)
    base = dict(n_scores=int(values.size), n_reference=int(counts.sum()),
                share_above_threshold=above, nominal_rate=float(reference["contamination"]),
                alpha=alpha)
    if groups < 2:
        return ScoreDrift(bins=0, statistic=float("nan"), p_value=float("nan"), **base)
    group = _merge_bins(counts, groups)
    run_counts = np.bincount(np.searchsorted(edges, values, side="left"), minlength=counts.size)
    table = np.stack([np.bincount(group, counts, groups), np.bincount(group, run_counts, groups)])
    table = table[:, table.sum(axis=0) > 0]                # (2, bins) without empty bins
    if table.shape[1] < 2:                                 # every score in one bin, both sides
        return ScoreDrift(bins=1, statistic=0.0, p_value=1.0, **base)
    result = chi2_contingency(table, correction=False)
    return ScoreDrift(bins=int(table.shape[1]), statistic=float(result.statistic),
                      p_value=float(result.pvalue), **base)
