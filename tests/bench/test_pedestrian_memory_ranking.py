"""The pedestrian-memory experiment's average precision: split over cells and reweighted
over logs, it must stay scikit-learn's average precision."""
import numpy as np
import pytest

from bench.experiments.driving_pedestrian_memory import Ranking, bootstrap_ratio, strata
from core.metrics import auprc
from driving.schema import LAYOUT_CLASSES, OBJECT_CLASSES, UNOBSERVED


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


def test_leaving_a_log_out_is_the_ratio_on_the_other_logs():
    """Persistence differs from unmask on log 0 alone: without it the ratio is 1."""
    truth, score, log = _cells(3, 2)
    other = np.where(log == 0, np.round(score + 0.3 * truth, 2), score)
    ranked = {"unmask": Ranking(truth, score, log), "persistence": Ranking(truth, other, log)}
    left_out = bootstrap_ratio(ranked, draws=10)["leave_one_log_out"]
    for i, ratio in enumerate(left_out):
        kept = log != i
        expected = auprc(truth[kept], score[kept]) / auprc(truth[kept], other[kept])
        assert ratio == pytest.approx(expected, rel=1e-9)
    assert left_out[0] == pytest.approx(1.0) and left_out[1] < 0.99


def test_which_ways_partition_the_cells():
    """The docstrings' claim: every way's strata are disjoint, and all but the two age ways
    cover every cell (those leave out never-seen cells, or hold remembered pedestrians alone)."""
    rng = np.random.default_rng(2)
    n = 5000
    classes = np.r_[list(LAYOUT_CLASSES), list(OBJECT_CLASSES), UNOBSERVED].astype(np.uint8)
    data = {"remembered": rng.choice(classes, n), "age_s": rng.exponential(2.0, n).astype(np.float32),
            "distance_m": rng.uniform(0, 45, n).astype(np.float32), "standing": rng.random(n) < 0.5,
            "persistence_memory": rng.choice(classes, n)}
    covered = {way: sum(mask.astype(int) for mask in groups.values()) for way, groups in strata(data).items()}
    assert all(c.max() == 1 for c in covered.values())
    partial = {way for way, c in covered.items() if c.min() == 0}
    assert partial == {"age since seen", "age, remembered pedestrian"}
    assert (covered["age since seen"] == 0).tolist() == (data["remembered"] == UNOBSERVED).tolist()
