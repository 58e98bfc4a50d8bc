"""bench.experiments.finance_score_variants: the lexicographic tie-break orders only ties,
and the pairwise joint tails count co-occurring surprise on held-out rows."""
import numpy as np

from bench.experiments.finance_score_variants import joint_tails, lexicographic


def test_tie_break_orders_ties_and_never_reorders_distinct_scores():
    primary = np.array([0.0, 0.0, 0.0, 1.0, 1.0 + 1e-9, 2.0])
    secondary = np.array([5.0, -3.0, 1.0, 100.0, -100.0, 0.0])   # would reverse 3 and 4 if added whole
    score = lexicographic(lambda t, h: primary, lambda t, h: secondary)({}, {})
    assert list(np.argsort(score[:3])) == [1, 2, 0]               # the tied rows, by the secondary score
    assert np.array_equal(np.argsort(score[3:]), np.argsort(primary[3:]))
    assert score[2] < score[3]


def test_joint_tails_see_a_pair_that_is_rare_together():
    R = np.random.default_rng(0)
    held = R.normal(size=(4000, 2))
    held[:, 1] = -held[:, 0] + 0.1 * R.normal(size=4000)           # high on both never happens
    test = np.array([[2.0, 2.0], [2.0, -2.0]])
    h, t = joint_tails({"right": held}, {"right": test}, n_bins=16)
    assert h.shape == (4000, 1) and t.shape == (2, 1)
    assert t[0, 0] > t[1, 0] + 3                                   # (high, high): nowhere in training
