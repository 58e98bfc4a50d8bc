"""Score drift against the calibration reference: a shift is found, same-distribution runs
are flagged at about the stated rate, and the reference is small and checked."""
import doctest
import json

import numpy as np
import pytest

import core.drift
from core.calibration import ScoreCalibration
from core.drift import calibration_reference, score_drift
from core.errors import DataValidationError


def reference_of(scores, contamination=0.05):
    return calibration_reference(ScoreCalibration(contamination).fit(scores))


def test_reference_is_small_json_with_equal_share_bins():
    rng = np.random.default_rng(0)
    reference = reference_of(rng.gamma(2.0, size=20_000))
    assert len(json.dumps(reference)) < 2_000                    # fits in a run manifest
    assert reference["n"] == 20_000 and len(reference["counts"]) == 20
    assert reference["counts"] == [1000] * 20                     # quantile bins
    assert reference["threshold"] == pytest.approx(np.quantile(rng.gamma(2.0, size=200_000),
                                                               0.95), rel=0.05)


def test_a_shift_is_found_and_same_distribution_runs_are_flagged_at_the_stated_rate():
    """At alpha = 0.05 over 200 same-distribution runs the test flags at most 9 % (mean 5 %,
    sd 1.5 %), and it finds a shift of a third of a standard deviation in 400 scores in at
    least 90 % of 50 runs."""
    rng = np.random.default_rng(1)
    same, shifted = [], []
    for trial in range(200):
        reference = reference_of(rng.gamma(2.0, size=2000))
        same.append(score_drift(reference, rng.gamma(2.0, size=400), alpha=0.05).drifted)
        if trial < 50:
            moved = rng.gamma(2.0, size=400) + np.sqrt(2.0) / 3.0
            shifted.append(score_drift(reference, moved, alpha=0.05).drifted)
    assert np.mean(same) <= 0.09
    assert np.mean(shifted) >= 0.9


def test_statistic_agrees_with_a_chi_square_by_hand():
    reference = {"version": 1, "n": 300, "edges": [1.0, 2.0], "counts": [100, 100, 100],
                 "contamination": 0.1, "threshold": 2.5}
    scores = [0.5] * 10 + [1.5] * 20 + [2.0] * 10 + [3.0] * 30   # 2.0 falls in (1, 2]
    drift = score_drift(reference, scores)
    table = np.array([[100, 100, 100], [10, 30, 30]], float)
    expected = table.sum(1, keepdims=True) * table.sum(0) / table.sum()
    assert drift.bins == 3
    assert drift.statistic == pytest.approx(((table - expected) ** 2 / expected).sum())
    assert drift.share_above_threshold == pytest.approx(30 / 70) and drift.nominal_rate == 0.1


def test_small_runs_merge_bins_and_tiny_runs_are_not_tested():
    rng = np.random.default_rng(2)
    reference = reference_of(rng.normal(size=2000))
    assert score_drift(reference, rng.normal(size=23)).bins == 4          # 23 // 5 bins
    tiny = score_drift(reference, [0.1, np.nan, 0.2, np.inf])
    assert not tiny.tested and not tiny.drifted and tiny.n_scores == 2


def test_tied_scores_keep_the_atom_below_its_edge():
    """Nine in ten calibration scores are exactly 0: the zeros and the rest still fall in
    separate bins, so a run of only non-zero scores is flagged."""
    reference = reference_of(np.r_[np.zeros(900), np.linspace(1, 2, 100)])
    assert reference["counts"][0] == 900
    assert score_drift(reference, np.linspace(1, 2, 50)).drifted
    assert not score_drift(reference, np.r_[np.zeros(45), np.linspace(1, 2, 5)]).drifted


@pytest.mark.parametrize("reference, message", [
    ({"version": 2}, "version 2 is not 1"),
    ([1, 2], "version 'list' is not 1"),
    ({"version": 1, "edges": [1.0], "counts": [1, 1], "contamination": 0.1},
     "incomplete .*threshold"),
    ({"version": 1, "edges": [2.0, 1.0], "counts": [1, 1, 1], "contamination": 0.1,
      "threshold": 1.0}, "ascending finite edges"),
    ({"version": 1, "edges": [1.0], "counts": [1, 1, 1], "contamination": 0.1,
      "threshold": 1.0}, "one non-negative count more"),
])
def test_a_malformed_reference_is_one_clear_error(reference, message):
    with pytest.raises(DataValidationError, match=f"^runs/x/manifest.json: calibration reference .*{message}"):
        score_drift(reference, np.zeros(50), where="runs/x/manifest.json")


def test_docstring_example():
    assert doctest.testmod(core.drift).failed == 0
