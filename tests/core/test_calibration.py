"""Calibration: thresholds, conformal p-values and Benjamini–Hochberg on pure-normal data."""
import numpy as np
import pytest

from core import DataValidationError, NotFittedError
from core.calibration import (ScoreCalibration, benjamini_hochberg, conformal_p_values,
                              group_levels, threshold_from_contamination, threshold_from_groups,
                              top_k_mask)


def test_conformal_p_values_formula():
    p = conformal_p_values([1.0, 2.0, 3.0], [0.5, 2.0, 9.0])
    np.testing.assert_allclose(p, [4 / 4, 3 / 4, 1 / 4])


def test_p_values_are_uniform_on_exchangeable_scores():
    rng = np.random.default_rng(0)
    p = conformal_p_values(rng.normal(size=2000), rng.normal(size=5000))
    assert abs(p.mean() - 0.5) < 0.02
    assert abs((p <= 0.1).mean() - 0.1) < 0.02


def test_benjamini_hochberg_against_hand_computation():
    p = np.array([0.01, 0.04, 0.03, 0.20, 0.005])
    # sorted: .005 .01 .03 .04 .2 vs alpha*k/m = .01 .02 .03 .04 .05 -> first four pass
    np.testing.assert_array_equal(benjamini_hochberg(p, 0.05), [True, True, True, False, True])
    assert not benjamini_hochberg(np.array([0.5, 0.9]), 0.05).any()
    with pytest.raises(DataValidationError, match="FDR level"):
        benjamini_hochberg(p, 1.5)


def test_bh_on_pure_normal_data_flags_few_over_repeated_draws():
    rng = np.random.default_rng(1)
    cal = ScoreCalibration(0.01).fit(rng.normal(size=1000))
    any_alert = [cal.alerts(rng.normal(size=300), fdr=0.1).any() for _ in range(200)]
    # all nulls: FDR = P(any alert) <= 10 % (plus conformal slack)
    assert np.mean(any_alert) <= 0.15


def test_bh_finds_planted_anomalies():
    rng = np.random.default_rng(2)
    cal = ScoreCalibration().fit(rng.normal(size=2000))
    scores = np.r_[rng.normal(size=300), rng.normal(loc=6, size=20)]
    alerts = cal.alerts(scores, fdr=0.1)
    assert alerts[300:].mean() >= 0.9 and alerts[:300].sum() <= 5


def test_threshold_budget_and_round_trip():
    scores = np.arange(100.0)
    assert threshold_from_contamination(scores, 0.1) == pytest.approx(89.1)
    np.testing.assert_array_equal(np.flatnonzero(top_k_mask(scores[::-1], 3)), [0, 1, 2])
    cal = ScoreCalibration(0.05).fit(scores)
    assert cal.alerts(scores).sum() == 5
    assert cal.alerts(scores, budget=7).sum() == 7
    again = ScoreCalibration.from_dict(cal.to_dict())
    assert again.threshold_ == cal.threshold_
    np.testing.assert_array_equal(again.p_values(scores), cal.p_values(scores))


def test_calibration_errors():
    with pytest.raises(NotFittedError):
        ScoreCalibration().p_values([1.0])
    with pytest.raises(DataValidationError, match="finite"):
        ScoreCalibration().fit([1.0, np.nan])
    with pytest.raises(DataValidationError, match="contamination"):
        ScoreCalibration(0.7).fit([1.0, 2.0])
    with pytest.raises(DataValidationError, match="either fdr or budget"):
        ScoreCalibration().fit([1.0, 2.0]).alerts([1.0], fdr=0.1, budget=1)
    with pytest.raises(DataValidationError, match="budget"):
        top_k_mask([1.0], -1)


def test_fdr_unreachable_says_when_the_calibration_set_is_too_small():
    small = ScoreCalibration().fit([0.1, 0.2, 0.3, 0.4])           # smallest p-value 1/5
    message = small.fdr_unreachable(0.1)
    assert message.startswith("calibrated on 4 normal scores: no p-value can be below 0.2")
    assert message.endswith("calibrate on at least 9")
    assert not small.alerts([5.0, 6.0, 7.0], fdr=0.1).any()         # what the message explains
    assert small.fdr_unreachable(0.25) is None
    assert ScoreCalibration().fit(np.arange(9.0)).fdr_unreachable(0.1) is None
    assert ScoreCalibration().fit(np.arange(9.0)).alerts([100.0], fdr=0.1).all()


def test_non_finite_scores_are_never_flagged_by_the_low_level_functions():
    calib = np.arange(100.0)
    scores = np.array([50.0, np.nan, 1e9, np.inf, -np.inf])
    p = conformal_p_values(calib, scores)
    assert p[1] == 1.0 and p[3] == 1.0 and p[4] == 1.0    # NaN used to get the smallest p
    assert p[2] == pytest.approx(1 / 101)
    np.testing.assert_array_equal(benjamini_hochberg([np.nan, 0.001, 0.5], 0.1), [False, True, False])
    np.testing.assert_array_equal(top_k_mask(scores, 2), [True, False, True, False, False])


@pytest.mark.parametrize("kwargs", [{}, {"fdr": 0.1}, {"budget": 1}])
def test_calibration_refuses_nan_scores_with_one_line(kwargs):
    cal = ScoreCalibration(contamination=0.05).fit(np.arange(100.0))
    scores = np.array([1.0, 200.0, np.nan, 3.0, np.nan])
    with pytest.raises(DataValidationError, match=r"^2 of 5 scores are not finite \(first at "
                                                  r"position 2: nan\)"):
        cal.alerts(scores, **kwargs)
    with pytest.raises(DataValidationError, match="first at position 0: inf"):
        cal.p_values([np.inf])


def _drifting_groups(rng, n_groups=6, size=200):
    """Normal groups whose means differ (drive logs, patients): the case the group rule is for."""
    return [rng.normal(rng.normal(0.0, 0.5), 1.0, size=size) for _ in range(n_groups)]


@pytest.mark.parametrize("contamination", [0.3, 0.0005])
def test_group_threshold_searches_around_any_contamination(contamination):
    # the levels searched reach past the contamination and include it, so a large or tiny
    # contamination is honoured rather than clipped to a fixed (0.001, 0.2) grid
    rng = np.random.default_rng(3)
    groups = [rng.normal(size=4000) for _ in range(5)]          # exchangeable: level ~ contamination
    pooled = np.concatenate(groups)
    threshold = threshold_from_groups(groups, contamination)
    share = np.mean(pooled > threshold)
    assert 0.9 * contamination <= share <= 1.1 * contamination
    assert contamination in group_levels(contamination)


def test_group_threshold_refuses_an_empty_group():
    rng = np.random.default_rng(4)
    groups = _drifting_groups(rng) + [np.array([])]
    with pytest.raises(DataValidationError, match="group 6 has none"):
        threshold_from_groups(groups, 0.05)
    cal = ScoreCalibration(0.05)
    with pytest.raises(DataValidationError, match="group 6"):
        cal.fit_groups(groups)
    assert cal.threshold_ is None and cal.calibration_scores_ is None     # nothing half-fitted


def test_group_threshold_refuses_scores_that_are_not_finite():
    rng = np.random.default_rng(5)
    groups = _drifting_groups(rng)
    groups[2][7] = np.nan
    with pytest.raises(DataValidationError, match="not finite"):
        threshold_from_groups(groups, 0.05)


def test_group_threshold_holds_its_rate_on_new_groups():
    # leave-one-group-out: new groups drawn like the fitted ones exceed the threshold at
    # about the nominal rate, where the pooled quantile is exceeded more often
    rng = np.random.default_rng(6)
    groups = _drifting_groups(rng, n_groups=12)
    new_groups = _drifting_groups(rng, n_groups=400)
    rate = lambda t: np.mean([np.mean(g > t) for g in new_groups])
    pooled = threshold_from_contamination(np.concatenate(groups), 0.05)
    assert rate(threshold_from_groups(groups, 0.05)) < rate(pooled)


def test_drives_unlike_each_other_raise_the_threshold_over_the_pooled_quantile():
    rng = np.random.default_rng(0)
    calm = [rng.exponential(1.0, 200) for _ in range(5)]
    busy = rng.exponential(1.0, 200) + np.r_[np.zeros(150), np.full(50, 6.0)]   # one drive's episode
    pooled = threshold_from_contamination(np.concatenate(calm + [busy]), 0.05)
    assert threshold_from_groups(calm + [busy], 0.05) > pooled
    # drives alike: the threshold is the pooled quantile at a level of the searched grid near
    # the nominal 5 %; a left-out drive's share above (200 scores) has a standard deviation
    # of 1.5 points, their mean over 6 drives about 0.6, so the level chosen lies within 1
    # point of 5 % (about 2 standard deviations; exactly 5 % is not guaranteed)
    same = [rng.exponential(1.0, 200) for _ in range(6)]
    pooled_same = np.concatenate(same)
    threshold = threshold_from_groups(same, 0.05)
    chosen = [level for level in group_levels(0.05) if np.quantile(pooled_same, 1 - level) == threshold]
    assert chosen and min(abs(level - 0.05) for level in chosen) <= 0.01
