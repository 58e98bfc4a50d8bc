"""Drift panel data: a run's scores against the calibration reference in its manifest.

Scoring commands write ``summary["calibration_reference"]`` (``core.drift``); the test
itself is ``core.drift.score_drift``. This module reads the run's scores and alert flags
and puts the result into plain words.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from core.drift import MIN_EXPECTED, ScoreDrift, score_drift
from core.errors import DataValidationError

from . import run_stats

# The output holding each vertical's scores: (manifest ``outputs`` name, default file).
SCORE_OUTPUT = {"finance": ("scores", "scores.parquet"), "medical": ("scores", "scores.parquet"),
                "driving": ("frames", "frames.parquet")}
REFERENCE_KEY = "calibration_reference"


@dataclass(frozen=True)
class DriftReport:
    """The drift panel: the test, the run's alert rate and a one-line verdict."""

    drift: ScoreDrift
    n_alerts: int
    alert_rate: float
    verdict: str


def verdict(drift: ScoreDrift) -> str:
    """The result in plain words."""
    if not drift.tested:
        return (f"too few scores to compare with calibration ({drift.n_scores}; at least "
                f"{2 * MIN_EXPECTED} needed)")
    if drift.drifted:
        return f"scores differ from calibration: p = {drift.p_value:.2g}"
    return f"scores look like the calibration data (p = {drift.p_value:.2g})"


def run_drift(scores_path, summary: dict) -> DriftReport | None:
    """Drift of the run whose scores are in ``scores_path``; None when its manifest
    ``summary`` holds no calibration reference (runs scored before one was recorded).

    The result is kept in the run's ``cache/`` folder (:mod:`dashboard.run_stats`): the test
    reads every score, and scipy's import alone costs a fresh server's first page a second.

    Raises:
        DataValidationError: the scores file is missing or the reference is malformed.
    """
    reference = summary.get(REFERENCE_KEY)
    if reference is None:
        return None
    stored = run_stats.cached(scores_path, "drift", lambda: dataclasses.asdict(
        drift_test(scores_path, reference)), key=reference)
    return DriftReport(**{**stored, "drift": ScoreDrift(**stored["drift"])})


def drift_test(scores_path, reference: dict) -> DriftReport:
    """The test itself: reads every score and alert flag of the run."""
    import pyarrow.parquet as pq  # lazy: only a run's first visit computes it

    try:
        table = pq.read_table(scores_path, columns=["score", "is_alert"])
    except (OSError, KeyError, ValueError) as err:
        raise DataValidationError(f"{scores_path}: cannot read the scores ({err})") from None
    scores = table.column("score").to_numpy(zero_copy_only=False).astype(np.float64)
    alerts = table.column("is_alert").to_numpy(zero_copy_only=False).astype(bool)
    drift = score_drift(reference, scores, where=f"run summary {REFERENCE_KEY!r}")
    rate = float(alerts.mean()) if alerts.size else float("nan")
    return DriftReport(drift=drift, n_alerts=int(alerts.sum()), alert_rate=rate,
                       verdict=verdict(drift))
