"""The pedestrian-memory experiment's average precision: split over cells and reweighted
over logs, it must stay scikit-learn's average precision."""
import numpy as np
import pytest

from bench.experiments.driving_pedestrian_memory import Ranking
from core.metrics import auprc


def _cells(seed: int, decimals: int):
    rng = np.random.default_rng(seed)
    truth = rng.random(4000) < 0.05
    score = np.round(rng.random(4000) + 0.3 * truth, decimals)   # few decimals: many ties
    log = rng.integers(4, size=4000)
    return truth, score, log


@pytest.mark.parametrize("decimals", [1, 2, 6])
def test_mean_cell_precision_is_average_precision(decimals):
    truth, score, log = _cells(0, decimals)
    ranked = Ranking(truth, score, log)
    expected = auprc(truth, score)
    assert ranked.average_precision(np.ones(4)) == pytest.approx(expected, rel=1e-9)
    precision = ranked.cell_precision(len(truth))
    assert np.isnan(precision[~truth]).all()
    assert precision[truth].mean() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("counts", [[2, 0, 1, 1], [0, 3, 0, 1], [1, 1, 1, 1]])
def test_log_counts_weigh_as_repeated_logs(counts):
    truth, score, log = _cells(1, 2)
    repeat = np.repeat(np.arange(len(truth)), np.asarray(counts)[log])
    ranked = Ranking(truth, score, log)
    assert ranked.average_precision(np.asarray(counts, float)) == \
        pytest.approx(auprc(truth[repeat], score[repeat]), rel=1e-9)
