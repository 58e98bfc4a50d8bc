"""The marginal tails (ECOD) beside the detector: checked against PyOD's ECOD, additive,
saved and loaded exactly; and in the finance model, a consistently extreme transaction."""
import numpy as np
import pytest
from scipy.stats import spearmanr

from finance.tails import MarginalTails


@pytest.fixture(scope="module")
def skewed():
    R = np.random.default_rng(0)
    return np.column_stack([R.lognormal(size=3000), -R.lognormal(size=3000), R.normal(size=3000),
                            (R.random(3000) < 0.2).astype(float)])


def test_tails_match_pyods_ecdf_tails_under_the_papers_rule(skewed):
    """PyOD's per-cell tail estimates (U_l, U_r, U_skew), combined by ECOD's rule as the
    paper states it (the largest of the three sums; PyOD's code takes the per-cell maximum
    instead, a two-sided score that drowns a consistently extreme row in noise)."""
    from pyod.models.ecod import ECOD

    ours = MarginalTails(n_sample=10_000).fit(skewed).score(skewed)
    ecod = ECOD().fit(skewed)
    theirs = np.max([ecod.U_l.sum(axis=1), ecod.U_r.sum(axis=1), ecod.U_skew.sum(axis=1)], axis=0)
    assert spearmanr(ours, theirs).statistic > 0.999
    assert np.abs(ours - theirs).max() < 0.05 * theirs.max()


def test_tails_are_additive_and_point_the_right_way(skewed):
    tails = MarginalTails().fit(skewed)
    rows = np.array([[0.5, -0.5, 0.0, 0.0], [50.0, -0.5, 0.0, 0.0], [0.5, -50.0, 0.0, 0.0]])
    terms = tails.feature_scores(rows)
    assert np.allclose(terms.sum(axis=1), tails.score(rows))
    score = tails.score(rows)
    assert score[1] > score[0] and score[2] > score[0]
    assert terms[1].argmax() == 0 and terms[2].argmax() == 1          # the extreme feature says why
    assert list(tails.right_skewed_[:2]) == [True, False]


def test_tails_save_and_load_score_the_same(skewed, tmp_path):
    tails = MarginalTails(n_sample=500, random_state=3).fit(skewed)
    tails.save(tmp_path / "tails")
    again = MarginalTails.load(tmp_path / "tails")
    assert np.array_equal(tails.score(skewed), again.score(skewed))
    assert again.sorted_.shape == (500, 4)
