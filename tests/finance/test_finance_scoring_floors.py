"""The unsupervised score's two parts on a features frame built to show what they are for:
a fraud that stands out on two features only (a moderately high amount, consistent across
the amount features, and card-not-present on a card that rarely does it) against
legitimate rows that are moderately unusual on many features at once (tiny amounts: low on
every amount feature). The right tails and the per-feature floors rank the frauds first;
ECOD's rule (whose left sums count a tiny amount once per amount feature) did not.
Plus: the fitted floors survive save/load, the fast attribution stays additive, and a model
of the previous format is refused with one line."""
import json

import numpy as np
import pandas as pd
import pytest

from core.errors import BundleError
from core.metrics import auprc
from finance.detector import FinanceModel, FinanceModelConfig, draw_heldout

FAST = {"components": ["network", "knn"], "max_steps": 150, "max_epochs": 10, "knn_k": 5}
AMOUNT = ["log_amount", "amount_vs_median_30d", "amount_robust_z_30d", "card_sum_1h", "card_sum_24h"]


def _rows(R, n, names, amount_level=None, cnp=None):
    frame = pd.DataFrame(R.normal(size=(n, len(names))), columns=names)
    level = R.normal(size=n) if amount_level is None else np.full(n, amount_level)
    for col in AMOUNT:                     # one amount, seen by five features
        frame[col] = level + 0.3 * R.normal(size=n)
    frame["card_not_present"] = (R.random(n) < 0.1).astype(float) if cnp is None else float(cnp)
    return frame


@pytest.fixture(scope="module")
def world():
    R = np.random.default_rng(0)
    names = FinanceModel(FinanceModelConfig()).feature_names
    train = _rows(R, 3000, names)
    test = pd.concat([_rows(R, 600, names), _rows(R, 30, names, amount_level=-2.0),      # tiny amounts
                      _rows(R, 15, names, amount_level=2.0, cnp=1)], ignore_index=True)  # the frauds
    truth = np.r_[np.zeros(630), np.ones(15)]
    model = FinanceModel(FinanceModelConfig(detector_params=FAST, calibration_rows=600)).fit(train)
    return model, test, truth


def test_frauds_on_two_features_rank_above_rows_moderate_on_many(world):
    model, test, truth = world
    scores = model.score(test)
    assert auprc(truth, scores) >= 0.5          # 0.62 (ECOD's rule, no floors: 0.37)
    tiny = scores[630 - 30:630]
    assert np.median(scores[truth == 1]) > np.quantile(tiny, 0.9)


def test_draw_heldout_gives_the_rows_fit_standardises_and_calibrates_on():
    """bench.experiments.finance_score_variants replays a fit's held-out rows with
    draw_heldout: they must be exactly the rows fit took its floors, part statistics and
    calibration from (the row cap's sample included)."""
    R = np.random.default_rng(1)
    names = FinanceModel(FinanceModelConfig()).feature_names
    rows = _rows(R, 1500, names)
    cfg = FinanceModelConfig(detector_params={**FAST, "max_steps": 30, "max_epochs": 2}, random_state=7,
                             max_train_rows=1000, calibration_rows=150)
    model = FinanceModel(cfg).fit(rows)
    heldout, rest = draw_heldout(rows, cfg, np.random.default_rng(cfg.random_state))
    assert len(heldout) == 150 and model.n_train_ == len(rest) == 850
    assert not set(heldout.index) & set(rest.index)
    cells = model._cell_terms(heldout)
    assert np.array_equal(model.floors_["network"], np.quantile(cells["network"], 0.99, axis=0))
    assert model._part_stats(model._parts(cells)) == model.part_stats_
    assert np.array_equal(model.calibration_.calibration_scores_, np.sort(model.score(heldout)))


def test_floors_reload_and_attribution_stays_additive(world, tmp_path):
    model, test, _ = world
    assert set(model.floors_) == {"network", "tails"}
    assert all(f.shape == (len(model.feature_names),) for f in model.floors_.values())
    model.save(tmp_path / "model")
    again = FinanceModel.load(tmp_path / "model")
    assert np.abs(again.score(test) - model.score(test)).max() <= 1e-6
    attribution = again.error_attribution(test.iloc[:50])
    assert np.allclose(attribution.values.sum(axis=1), attribution.scores - attribution.base_values, atol=1e-6)


def test_a_model_of_the_previous_format_is_refused_with_one_line(world, tmp_path):
    model, _, _ = world
    model.save(tmp_path / "model")
    config = tmp_path / "model" / "finance.json"
    state = json.loads(config.read_text())
    state["format_version"] = 4
    config.write_text(json.dumps(state))
    with pytest.raises(BundleError, match="retrain") as err:
        FinanceModel.load(tmp_path / "model")
    assert "\n" not in str(err.value)
