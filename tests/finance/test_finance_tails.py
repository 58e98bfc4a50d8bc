"""The right tails (ECOD's) beside the detector: checked against PyOD's ECOD, additive,
one-sided, saved and loaded exactly."""
import numpy as np
import pytest
from scipy.stats import spearmanr

from finance.tails import MarginalTails


@pytest.fixture(scope="module")
def skewed():
    R = np.random.default_rng(0)
    return np.column_stack([R.lognormal(size=3000), -R.lognormal(size=3000), R.normal(size=3000),
                            (R.random(3000) < 0.2).astype(float)])


def test_tails_match_pyods_right_tail_estimates(skewed):
    """PyOD's per-cell right-tail estimates (ECOD's U_r), summed over features."""
    from pyod.models.ecod import ECOD

    ours = MarginalTails(n_sample=10_000).fit(skewed).score(skewed)
    theirs = ECOD().fit(skewed).U_r.sum(axis=1)
    assert spearmanr(ours, theirs).statistic > 0.999
    assert np.abs(ours - theirs).max() < 0.05 * theirs.max()


def test_tails_are_additive_and_only_the_high_side_counts(skewed):
    tails = MarginalTails().fit(skewed)
    rows = np.array([[0.5, -0.5, 0.0, 0.0], [50.0, -0.5, 0.0, 0.0], [0.5, 50.0, 0.0, 0.0],
                     [0.5, -50.0, 0.0, 0.0]])
    terms = tails.feature_scores(rows)
    assert np.allclose(terms.sum(axis=1), tails.score(rows))
    score = tails.score(rows)
    assert score[1] > score[0] and score[2] > score[0]
    assert terms[1].argmax() == 0 and terms[2].argmax() == 1          # the extreme feature says why
    assert terms[3, 1] == 0.0                                         # far below: not surprising
def test_tails_save_and_load_score_the_same(skewed, tmp_path):
    tails = MarginalTails(n_sample=500, random_state=3).fit(skewed)
    tails.save(tmp_path / "tails")
    again = MarginalTails.load(tmp_path / "tails")
    assert np.array_equal(tails.score(skewed), again.score(skewed))
    assert again.sorted_.shape == (500, 4)
