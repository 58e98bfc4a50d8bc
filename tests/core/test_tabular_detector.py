"""TabularDetector: quality floor, contract, determinism, categories, calibration."""
import numpy as np
import pandas as pd
import pytest
from tabular_data import TINY, correlated_rows, mixed_frame

from core import DataValidationError, NotFittedError, TabularDetector
from core.metrics import auroc


def test_auroc_floor_and_beats_isolation_forest(synthetic, fitted_array_detector):
    from sklearn.ensemble import IsolationForest

    train, X_test, y_test = synthetic
    ours = auroc(y_test, fitted_array_detector.decision_function(X_test))
    forest = IsolationForest(n_estimators=100, random_state=0).fit(train)
    theirs = auroc(y_test, -forest.score_samples(X_test))
    assert ours >= 0.9
    assert ours >= theirs


@pytest.mark.parametrize("component", ["reference", "network"])
def test_each_component_alone_detects(synthetic, component):
    train, X_test, y_test = synthetic
    det = TabularDetector(random_state=0, components=(component,), **TINY).fit(train)
    assert auroc(y_test, det.decision_function(X_test)) >= 0.75


def test_fitted_attributes(fitted_array_detector, fitted_frame_detector, frame, synthetic):
    det = fitted_array_detector
    assert det.n_features_in_ == 8 and not hasattr(det, "feature_names_in_")
    assert det.decision_scores_.shape == (len(synthetic[0]),)
    assert det.decision_scores_.dtype == np.float64
    assert det.calibration_.threshold_ == det.threshold_
    assert list(fitted_frame_detector.feature_names_in_) == list(frame.columns)
    assert fitted_frame_detector.preprocessor_.kinds_ == [
        "numeric", "numeric", "categorical", "categorical", "categorical"]


def test_predict_matches_threshold(fitted_array_detector, synthetic):
    X = synthetic[1]
    scores = fitted_array_detector.decision_function(X)
    pred = fitted_array_detector.predict(X)
    assert set(np.unique(pred)) <= {0, 1}
    np.testing.assert_array_equal(pred, (scores > fitted_array_detector.threshold_).astype(int))
    assert pred[synthetic[2] == 1].mean() > pred[synthetic[2] == 0].mean()


def test_deterministic_scoring_and_fitting(synthetic, fitted_array_detector):
    X = synthetic[1]
    first = fitted_array_detector.decision_function(X)
    np.testing.assert_array_equal(first, fitted_array_detector.decision_function(X))
    # row order / batch composition does not change a row's score
    np.testing.assert_allclose(fitted_array_detector.decision_function(X[::-1])[::-1], first,
                               rtol=1e-5, atol=1e-5)
    again = TabularDetector(random_state=0, **TINY).fit(synthetic[0])
    np.testing.assert_allclose(again.decision_function(X), first, rtol=1e-6, atol=1e-6)


def test_unknown_category_scores_without_crash(fitted_frame_detector, frame):
    rows = frame.head(20).copy()
    base = fitted_frame_detector.decision_function(rows)
    base_errors = fitted_frame_detector.feature_errors(rows)
    rows["channel"] = pd.Categorical(["never-seen"] * 20)
    novel = fitted_frame_detector.decision_function(rows)
    assert np.isfinite(novel).all()
    # an unseen category is evidence of anomaly, attributed to its column
    assert (fitted_frame_detector.feature_errors(rows)["channel"] > base_errors["channel"]).all()
    assert novel.mean() > base.mean()


def test_categorical_dependency_is_learned(frame):
    det = TabularDetector(random_state=0, **TINY).fit(frame)
    test = mixed_frame(np.random.default_rng(7), 600)
    test = test[(test["amount"] < 12) | (test["amount"] > 30)].head(200)  # clear-cut rows
    flipped = test.copy()
    flipped["kind"] = np.where(test["kind"] == "large", "small", "large")  # breaks amount->kind
    y = np.r_[np.zeros(len(test)), np.ones(len(test))]
    assert auroc(y, det.decision_function(pd.concat([test, flipped]))) >= 0.85


def test_feature_errors_sum_to_score(fitted_frame_detector, frame):
    rows = frame.head(10)
    errors = fitted_frame_detector.feature_errors(rows)
    assert list(errors.columns) == list(frame.columns)
    assert (errors.index == rows.index).all()
    np.testing.assert_allclose(errors.sum(axis=1).to_numpy() - fitted_frame_detector.offset_,
                               fitted_frame_detector.decision_function(rows), atol=1e-6)


def test_feature_errors_point_at_broken_cell(fitted_array_detector, synthetic):
    _, X_test, y_test = synthetic
    anomalies = X_test[y_test == 1]
    errors = fitted_array_detector.feature_errors(anomalies)
    assert isinstance(errors, np.ndarray) and errors.shape == (30, 8)
    # the broken cell is the one farthest from the normal rows' 3-D subspace
    basis = np.random.default_rng(123).normal(size=(3, 8))  # as in conftest.correlated_rows
    coef, *_ = np.linalg.lstsq(basis.T, anomalies.T, rcond=None)
    broken = np.argmax(np.abs(anomalies - (basis.T @ coef).T), axis=1)
    assert (np.argmax(errors, axis=1) == broken).mean() >= 0.6


def test_fdr_on_pure_normal_data_flags_few(synthetic):
    from tabular_data import correlated_rows

    det = TabularDetector(random_state=1, components=("reference",), **TINY).fit(synthetic[0])
    flagged = []
    for draw in range(20):
        rows = correlated_rows(np.random.default_rng(100 + draw), 200)
        flagged.append(det.alerts(rows, fdr=0.1).sum())
    # BH controls the FDR; with no anomalies any alert is false: most draws flag nothing
    assert np.mean(np.array(flagged) > 0) <= 0.3
    assert np.mean(flagged) <= 5
    p = det.p_values(correlated_rows(np.random.default_rng(99), 500))
    assert 0.35 <= p.mean() <= 0.65  # roughly uniform p-values on normal rows


def test_alerts_budget_and_threshold(fitted_array_detector, synthetic):
    X = synthetic[1]
    assert fitted_array_detector.alerts(X, budget=7).sum() == 7
    np.testing.assert_array_equal(fitted_array_detector.alerts(X),
                                  fitted_array_detector.predict(X).astype(bool))


def test_bad_inputs_name_the_problem(fitted_frame_detector, frame):
    det = fitted_frame_detector
    with pytest.raises(DataValidationError, match="0 sample"):
        TabularDetector().fit(np.zeros((0, 3)))
    with pytest.raises(DataValidationError, match="'x1'.*1 missing"):
        TabularDetector().fit(np.array([[1.0, 2.0], [3.0, np.nan]]))
    with pytest.raises(DataValidationError, match="'x0'.*1 infinite"):
        TabularDetector().fit(np.array([[np.inf, 2.0], [3.0, 1.0]]))
    with pytest.raises(DataValidationError, match="2-D"):
        TabularDetector().fit(np.zeros(5))
    bad = frame.head(3).copy()
    bad["amount"] = bad["amount"].astype(object)
    bad.loc[bad.index[1], "amount"] = "twelve"
    with pytest.raises(DataValidationError, match="'amount'.*'twelve'"):
        det.decision_function(bad)
    with pytest.raises(DataValidationError, match=r"missing \['hour'\], unexpected \['hours'\]"):
        det.decision_function(frame.head(3).rename(columns={"hour": "hours"}))
    with pytest.raises(DataValidationError, match="X has 3 features, but TabularDetector is expecting 5"):
        det.decision_function(np.zeros((2, 3)))
    missing_cat = frame.head(3).copy()
    missing_cat["kind"] = [None, "small", "large"]
    with pytest.raises(DataValidationError, match="'kind'.*1 missing"):
        det.decision_function(missing_cat)
    with pytest.raises(DataValidationError, match="components"):
        TabularDetector(components=("magic",)).fit(frame)


def test_reordered_columns_are_aligned(fitted_frame_detector, frame):
    rows = frame.head(5)
    np.testing.assert_allclose(fitted_frame_detector.decision_function(rows[rows.columns[::-1]]),
                               fitted_frame_detector.decision_function(rows))


def test_not_fitted():
    with pytest.raises(NotFittedError, match="not fitted"):
        TabularDetector().decision_function(np.zeros((2, 2)))


def test_shap_additivity(fitted_frame_detector, frame):
    rows = frame.head(3)
    result = fitted_frame_detector.explain(rows, background=frame.iloc[100:116])
    assert result.values.shape == (3, 5)
    assert result.feature_names == list(frame.columns)
    np.testing.assert_allclose(result.values.sum(1) + result.base_values, result.scores,
                               atol=1e-4)
    np.testing.assert_allclose(result.scores, fitted_frame_detector.decision_function(rows),
                               atol=1e-6)


def test_tiny_inputs_fit(frame):
    det = TabularDetector(random_state=0, **TINY).fit(np.random.default_rng(0).normal(size=(5, 1)))
    assert det.decision_function(np.array([[0.0], [10.0]])).argmax() == 1


def test_parallel_chunks_match_sequential(fitted_array_detector, synthetic):
    import torch

    X = np.vstack([synthetic[1]] * 4)  # several scoring chunks
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        sequential = fitted_array_detector.decision_function(X)
        torch.set_num_threads(2)
        parallel = fitted_array_detector.decision_function(X)
        assert torch.get_num_threads() == 2  # restored after scoring
    finally:
        torch.set_num_threads(before)
    np.testing.assert_allclose(parallel, sequential, atol=1e-6, rtol=0)


def test_numeric_array_fast_path_matches_frame_route(fitted_array_detector, synthetic):
    X = synthetic[1]
    pre = fitted_array_detector.preprocessor_
    fast = pre.transform(X)  # plain numeric array: the fast path
    slow = pre.transform(pd.DataFrame(X))  # DataFrame: the general route
    np.testing.assert_array_equal(fast.numeric, slow.numeric)
    assert fast.codes.shape == (len(X), 0)
    bad = X.copy()
    bad[3, 2] = np.inf  # bad values still get the specific message
    with pytest.raises(DataValidationError, match="column 'x2' has 0 missing .* 1 infinite"):
        fitted_array_detector.decision_function(bad)
    with pytest.raises(DataValidationError, match="expecting 8 features"):
        fitted_array_detector.decision_function(X[:, :5])


def test_calibration_matches_fresh_normal_rows_when_every_row_is_stored():
    """Every training row in the memory: held-out calibration rows are scored leave-one-out,
    so fresh normal rows cross the threshold at about the contamination rate."""
    rng = np.random.default_rng(5)
    params = {**TINY, "n_reference": 4096, "contamination": 0.05}
    det = TabularDetector(random_state=0, components=["reference", "knn"], **params)
    det.fit(correlated_rows(rng, 800))
    fresh = correlated_rows(rng, 2000)
    assert 0.02 < det.predict(fresh).mean() < 0.10
    assert det.alerts(fresh, fdr=0.1).sum() <= 20


def test_local_component_finds_anomalies_by_the_density_of_their_region():
    """Two clusters, one 10x denser: anomalies near the dense one are as far from their
    neighbours as normal rows of the sparse one are, so a plain KNN distance misses them;
    the local component (distance over the neighbours' own distances) does not."""
    rng = np.random.default_rng(0)

    def rows(n):
        return np.vstack([0.1 * rng.normal(size=(n // 2, 4)), 4.0 + rng.normal(size=(n // 2, 4))])

    train = rows(1200)
    direction = rng.normal(size=(20, 4))
    anomalies = 0.8 * direction / np.linalg.norm(direction, axis=1, keepdims=True)
    test, y = np.vstack([rows(400), anomalies]), np.r_[np.zeros(400), np.ones(20)]
    plain = TabularDetector(random_state=0, components=("reference", "knn"), n_reference=256)
    assert auroc(y, plain.fit(train).decision_function(test)) < 0.7
    default = TabularDetector(random_state=0, n_reference=256).fit(train)
    assert "local" in default.components_
    assert auroc(y, default.decision_function(test)) >= 0.93
