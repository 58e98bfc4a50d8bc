"""The alert threshold is read off cross-fitted scores: each calibration log scored by a
scoring state fitted without it, as a new drive is scored."""

import numpy as np
import pytest

from core.calibration import threshold_from_contamination
from driving.scoring.state import new_prior, state_from_maps
from driving.scoring.surprise import raw_maps, result_from_maps, score_log


@pytest.fixture(scope="module")
def recalibrated(load_demo_predictor, normal_logs):
    """The tiny demo model recalibrated on 4 normal logs; 4 other normal drives."""
    calibration, new = normal_logs(4, 60, seed=11), normal_logs(4, 60, seed=12)
    return load_demo_predictor().calibrate(calibration), calibration, new


def _in_sample_threshold(predictor, logs) -> float:
    """The threshold read off the frames the scoring state was fitted on (whole logs, as
    ``calibrate`` fits the state), each log scored by the state that saw it."""
    maps = [raw_maps(predictor, log, context_prior=new_prior(predictor)) for log in logs]
    state, context_maps = state_from_maps(predictor, logs, maps, predictor.scoring_.smooth,
                                          predictor.scoring_.frame_scorer)
    scores = [result_from_maps(state, log, m).score for log, m in zip(logs, context_maps)]
    return threshold_from_contamination(np.concatenate(scores), predictor.contamination)


def test_new_normal_drives_alert_nearer_the_nominal_rate_than_an_in_sample_threshold(recalibrated):
    predictor, calibration, new = recalibrated
    scores = np.concatenate([score_log(predictor, log).score for log in new])
    in_sample = np.mean(scores > _in_sample_threshold(predictor, calibration))
    cross_fitted = np.mean(scores > predictor.threshold_)
    nominal = predictor.contamination
    assert abs(cross_fitted - nominal) < abs(in_sample - nominal)
    assert cross_fitted <= 2 * nominal                        # the target, here 7.5 %


def test_the_final_state_is_fitted_on_every_calibration_log(recalibrated):
    predictor, calibration, _ = recalibrated
    maps = [raw_maps(predictor, log, context_prior=new_prior(predictor)) for log in calibration]
    state, _ = state_from_maps(predictor, calibration, maps, predictor.scoring_.smooth,
                               predictor.scoring_.frame_scorer)
    np.testing.assert_allclose(predictor.scoring_.context_prior.counts_, state.context_prior.counts_)
    for mine, full in zip(predictor.scoring_.frame_scorer.tails_, state.frame_scorer.tails_):
        np.testing.assert_allclose(mine.knots_, full.knots_)
