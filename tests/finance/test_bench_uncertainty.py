"""bench.finance_uncertainty: the paired stratified bootstrap says how sure a comparison is,
and bench.finance --uncertainty-only attaches it to saved runs without changing a number."""
import json
import re

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from bench.finance import _forest_scores, _split, _world2_canonical, add_uncertainty
from bench.finance_uncertainty import _Sorted, paired_bootstrap, stratified_weights, t_interval
from core.errors import DataValidationError
from core.metrics import auprc, auroc
from finance.world2 import World2Config, simulate_to_file


def _scores(seed=0, n=3000, fraud_share=0.03):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < fraud_share).astype(int)
    strong = rng.normal(size=n) + 2.5 * y              # separates the frauds well
    weak = rng.normal(size=n) + 0.5 * y                # barely
    return y, strong, weak


def test_weighted_resample_equals_sklearn_with_sample_weight_ties_included():
    y, strong, _ = _scores()
    tied = np.round(strong, 1)                         # many tied scores
    weights = next(stratified_weights(y, 4, np.random.default_rng(1)))
    au, ap = _Sorted(y, tied).auroc_ap(weights)
    for i, w in enumerate(weights):
        assert au[i] == pytest.approx(roc_auc_score(y, tied, sample_weight=w), abs=1e-12)
        assert ap[i] == pytest.approx(average_precision_score(y, tied, sample_weight=w), abs=1e-12)


def test_resamples_keep_the_fraud_and_legitimate_counts():
    y, _, _ = _scores()
    for weights in stratified_weights(y, 250, np.random.default_rng(0)):
        assert (weights[:, y == 1].sum(axis=1) == y.sum()).all()
        assert (weights[:, y == 0].sum(axis=1) == (y == 0).sum()).all()
        assert weights.min() >= 0 and not (weights == 1).all()   # really resampled


def test_clearly_better_scorer_interval_above_zero_and_swap_mirrors_it():
    y, strong, weak = _scores()
    better = paired_bootstrap(y, strong, weak, n_resamples=300)
    assert better["auroc_diff"] == pytest.approx(auroc(y, strong) - auroc(y, weak))
    assert better["ap_ratio"] == pytest.approx(auprc(y, strong) / auprc(y, weak))
    low, high = better["auroc_diff_ci95"]
    assert 0 < low < better["auroc_diff"] < high
    assert better["ap_ratio_ci95"][0] > 1.10 and better["share_ap_ratio_below_1.10"] == 0
    assert better["share_auroc_below"] == 0
    worse = paired_bootstrap(y, weak, strong, n_resamples=300)     # same resamples, roles swapped
    assert worse["auroc_diff_ci95"] == pytest.approx([-high, -low])
    # each resample's ratio inverts; the percentiles interpolate between resamples, so approximately
    assert worse["ap_ratio_ci95"] == pytest.approx([1 / better["ap_ratio_ci95"][1], 1 / better["ap_ratio_ci95"][0]],
                                                   rel=1e-3)
    assert worse["share_auroc_below"] == 1


def test_identical_scorers_zero_width_and_noise_straddles_zero():
    y, strong, _ = _scores()
    same = paired_bootstrap(y, strong, strong.copy(), n_resamples=200)
    assert same["auroc_diff_ci95"] == [0.0, 0.0] and same["ap_ratio_ci95"] == [1.0, 1.0]
    assert same["share_auroc_below"] == 0
    jitter = strong + np.random.default_rng(5).normal(scale=0.05, size=y.size)   # the same scorer, perturbed
    near = paired_bootstrap(y, strong, jitter, n_resamples=300)
    assert near["auroc_diff_ci95"][0] < 0 < near["auroc_diff_ci95"][1]


def test_t_interval_over_seeds():
    out = t_interval([0.01, 0.02, 0.03])
    assert out["mean"] == pytest.approx(0.02)
    assert out["ci95"] == pytest.approx([0.02 - 4.302653 * 0.01 / 3 ** 0.5, 0.02 + 4.302653 * 0.01 / 3 ** 0.5], rel=1e-5)


def _tiny_world2(path):
    """A tiny world-2 simulation written to ``path``; the data file."""
    data, _ = simulate_to_file(path, World2Config(n_cards=60, n_merchants=120, n_days=20, seed=3))
    return data


def test_split_refuses_a_missing_plain_feature(tmp_path):
    canonical = _world2_canonical(_tiny_world2(tmp_path / "world2.parquet"))
    row = canonical.index[canonical["amount"] >= 0][3]
    canonical.loc[row, "ship_a"] = np.nan          # a purchase without a shipping latitude
    # the forest would read the missing distance as 0 km; the split refuses it instead
    message = f"km_billing_shipping: NaN at transaction {canonical.loc[row, 'id']}"
    with pytest.raises(DataValidationError, match=re.escape(message)):
        _split(canonical, degrees=True)


@pytest.fixture
def saved_world2_run(tmp_path):
    """A tiny saved world-2 run: the data file, unmask's saved scores, and the committed file
    holding that run's numbers (as bench.finance --worlds wrote them)."""
    work = tmp_path / "W"
    work.mkdir()
    _, train_rows, test = _split(_world2_canonical(_tiny_world2(work / "world2.parquet")), degrees=True)
    y = test["fraud"].to_numpy()
    unmask = np.random.default_rng(0).normal(size=len(test)) + 2 * y
    pd.DataFrame({"transaction_id": test["id"], "score": unmask}).to_parquet(work / "world2_scores_1.parquet")
    forest = _forest_scores(train_rows, test, 1)
    run = {"split": {"test_purchases": len(test)},
           "results": {"unmask": {"auroc": auroc(y, unmask), "average_precision": auprc(y, unmask)},
                       "isolation_forest_plain7": {"auroc": auroc(y, forest), "average_precision": auprc(y, forest)}},
           "targets": {"ap_ratio": auprc(y, unmask) / auprc(y, forest)}}
    out = tmp_path / "finance_worlds.json"
    out.write_text(json.dumps({"own_simulator": {"per_seed": {}}, "world2_held_out": {"per_seed": {"1": run}}}))
    return work, out


def test_uncertainty_only_attaches_intervals_and_changes_no_number(saved_world2_run):
    work, out = saved_world2_run
    before = json.loads(out.read_text())
    after = json.loads(json.dumps(add_uncertainty([work], out)))
    assert json.loads(out.read_text()) == after
    run = after["world2_held_out"]["per_seed"]["1"]
    interval = run.pop("uncertainty")
    assert run == before["world2_held_out"]["per_seed"]["1"]
    assert interval["auroc_diff"] == pytest.approx(run["results"]["unmask"]["auroc"]
                                                   - run["results"]["isolation_forest_plain7"]["auroc"])
    assert interval["auroc_diff_ci95"][0] <= interval["auroc_diff"] <= interval["auroc_diff_ci95"][1]
    assert after["world2_held_out"]["over_seeds_interval"]["seeds"] == [1]


def test_uncertainty_only_refuses_a_forest_that_does_not_reproduce(saved_world2_run):
    work, out = saved_world2_run
    committed = json.loads(out.read_text())
    committed["world2_held_out"]["per_seed"]["1"]["results"]["isolation_forest_plain7"]["auroc"] += 1e-4
    out.write_text(json.dumps(committed))
    with pytest.raises(SystemExit, match="isolation_forest_plain7"):
        add_uncertainty([work], out)
    assert json.loads(out.read_text()) == committed               # nothing written
