"""The normal-log alert rates the driving benchmark and the enriched step-out experiment
report: over all frames (a log with more frames weighs more) and per log."""
import numpy as np
import pytest

from bench.driving import alert_rates


def test_rates_over_all_frames_and_per_log():
    rates = alert_rates({"a": np.array([True, False, False, False]), "b": np.array([True, True])})
    assert rates["n_frames"] == 6
    assert rates["alert_rate"] == pytest.approx(0.5)
    assert rates["per_log"] == {"a": 0.25, "b": 1.0}
