"""The scoring state and the alert threshold are fitted on every frame of the calibration
logs: a normal-but-rare episode that the calibration drives hold before their last fifth
leaves new drives that hold one too within twice the nominal alert rate."""
from dataclasses import replace

import numpy as np
import pytest

from driving.schema import VEHICLE
from driving.scoring.surprise import score_log

FRAMES = 60
EPISODE = slice(15, 30)          # a quarter of each drive, well before its calibration tail


def with_episode(log, seed: int):
    """``log`` with a normal-but-rare stretch: in the ``EPISODE`` frames a car-sized block
    appears at a new place ahead of the ego in every frame (what the network cannot predict
    from the frames before)."""
    rng = np.random.default_rng(seed)
    semantic, truth = log.semantic.copy(), log.semantic_true.copy()
    h, w = semantic.shape[1:]
    for t in range(EPISODE.start, EPISODE.stop):
        r, c = rng.integers(4, h // 2 - 4), rng.integers(4, w - 8)
        block = (slice(r, r + 4), slice(c, c + 4))
        truth[t][block] = VEHICLE
        semantic[t][block] = np.where(log.visible[t][block], VEHICLE, semantic[t][block])
    return replace(log, semantic=semantic, semantic_true=truth)


@pytest.fixture(scope="module")
def episode_drives(load_demo_predictor, normal_logs):
    """The tiny demo model recalibrated on 4 normal drives that each hold an episode before
    their tail; 4 new drives with one too."""
    calibration = [with_episode(log, i) for i, log in enumerate(normal_logs(4, FRAMES, seed=21))]
    new = [with_episode(log, 10 + i) for i, log in enumerate(normal_logs(4, FRAMES, seed=22))]
    return load_demo_predictor().calibrate(calibration), new


def test_new_drives_with_the_episode_alert_within_twice_the_nominal_rate(episode_drives):
    predictor, new = episode_drives
    scores = np.concatenate([score_log(predictor, log).score for log in new])
    assert np.mean(scores > predictor.threshold_) <= 2 * predictor.contamination


def test_the_calibration_scores_cover_every_frame_of_the_calibration_drives(episode_drives):
    predictor, _ = episode_drives
    assert predictor.calibration_.calibration_scores_.size == 4 * FRAMES
