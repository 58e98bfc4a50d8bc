"""The conflict experiment's design harness: the frame scores before the score's smoothing,
recovered from the smoothed ones, and the scorer its rule judged the candidate against."""
import numpy as np
import pytest

from bench.experiments.driving_conflict import CHANNEL, pedestrian_conflict_channel, unsmoothed
from bench.experiments.driving_five_channels import five_channel_scorer
from driving.scoring.surprise import causal_mean


@pytest.mark.parametrize("window", [1, 5])
def test_unsmoothed_inverts_the_causal_mean(window):
    raw = np.random.default_rng(0).exponential(size=250)
    np.testing.assert_allclose(unsmoothed(causal_mean(raw, window), window), raw, atol=1e-9)


def test_the_rule_judged_the_product_without_the_channel_against_it():
    before, candidate = five_channel_scorer(), pedestrian_conflict_channel()
    assert candidate.channels == before.channels + ((CHANNEL, False, 1),)
    assert set(candidate.observed_channels) - set(before.observed_channels) == {CHANNEL}
    assert CHANNEL not in before.min_scale and candidate.min_scale[CHANNEL] == 0.02
