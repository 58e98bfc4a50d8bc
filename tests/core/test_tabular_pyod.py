"""TabularDetector drops into code written for PyOD: same attributes, methods and semantics."""
import numpy as np
import pytest
from tabular_data import TINY

from core import TabularDetector

pyod_iforest = pytest.importorskip("pyod.models.iforest")
pyod_data = pytest.importorskip("pyod.utils.data")


def pyod_user_code(detector, X_train, X_test, y_test, capsys):
    """What a PyOD user writes (the IForest example of PyOD's README), detector swapped in."""
    detector.fit(X_train)
    y_train_pred = detector.labels_  # binary labels (0: inliers, 1: outliers)
    y_train_scores = detector.decision_scores_  # raw outlier scores
    y_test_pred, confidence = detector.predict(X_test, return_confidence=True)
    y_test_scores = detector.decision_function(X_test)
    y_test_proba = detector.predict_proba(X_test)
    y_test_unify = detector.predict_proba(X_test, method="unify")
    pyod_data.evaluate_print("detector", y_test, y_test_scores)
    report = capsys.readouterr().out
    return dict(train_pred=y_train_pred, train_scores=y_train_scores, test_pred=y_test_pred,
                confidence=confidence, test_scores=y_test_scores, proba=y_test_proba,
                unify=y_test_unify, threshold=detector.threshold_, report=report)


@pytest.fixture(scope="module")
def detectors():
    return {"pyod": pyod_iforest.IForest(contamination=0.05, random_state=0),
            "unmask": TabularDetector(contamination=0.05, random_state=0, **TINY)}


def test_pyod_code_runs_unchanged_with_the_same_shapes_and_meaning(detectors, synthetic,
                                                                    capsys):
    X_train, X_test, y_test = synthetic
    out = {name: pyod_user_code(det, X_train, X_test, y_test, capsys)
           for name, det in detectors.items()}
    for name, o in out.items():
        assert o["train_pred"].shape == (len(X_train),) and set(o["train_pred"]) <= {0, 1}
        np.testing.assert_array_equal(o["train_pred"], o["train_scores"] > o["threshold"])
        np.testing.assert_array_equal(o["test_pred"], o["test_scores"] > o["threshold"])
        for key in ("proba", "unify"):
            assert o[key].shape == (len(X_test), 2)
            np.testing.assert_allclose(o[key].sum(axis=1), 1.0)
            assert o[key].min() >= 0.0 and o[key].max() <= 1.0
        assert o["confidence"].shape == (len(X_test),)
        assert o["confidence"].min() >= 0.0 and o["confidence"].max() <= 1.0
        # the outlier column ranks like the scores (higher = more anomalous), anomalies on top
        order = np.argsort(o["test_scores"])
        assert np.all(np.diff(o["proba"][order, 1]) >= 0)
        assert o[key][y_test == 1, 1].mean() > o[key][y_test == 0, 1].mean()
        assert o["report"].startswith("detector ROC:")
    # contamination sets the share of flagged training rows (PyOD: exactly; unmask: on
    # held-out rows, so about)
    assert out["pyod"]["train_pred"].mean() == pytest.approx(0.05, abs=0.002)
    assert 0.025 <= out["unmask"]["train_pred"].mean() <= 0.1


def test_outputs_equal_pyods_own_formulas(detectors, synthetic):
    """PyOD's BaseDetector methods, run on TabularDetector's state, give our numbers."""
    X_train, X_test, _ = synthetic
    ours = detectors["unmask"].fit(X_train)
    reference = pyod_iforest.IForest(contamination=ours.contamination).fit(X_train[:50])
    # PyOD's methods read these attributes and call decision_function: give them ours
    reference.decision_scores_ = ours.decision_scores_
    reference.threshold_ = ours.threshold_
    reference.labels_ = ours.labels_
    reference._mu, reference._sigma = ours.decision_scores_.mean(), ours.decision_scores_.std()
    reference.decision_function = ours.decision_function
    for method in ("linear", "unify"):
        np.testing.assert_allclose(ours.predict_proba(X_test, method=method),
                                   reference.predict_proba(X_test, method=method))
    np.testing.assert_allclose(ours.predict_confidence(X_test),
                               reference.predict_confidence(X_test))
    labels, confidence = ours.predict(X_test, return_confidence=True)
    ref_labels, ref_confidence = reference.predict(X_test, return_confidence=True)
    np.testing.assert_array_equal(labels, ref_labels)
    np.testing.assert_allclose(confidence, ref_confidence)
    with pytest.raises(ValueError, match="method"):
        ours.predict_proba(X_test, method="softmax")


def test_fit_predict_and_labels_after_reload(synthetic, tmp_path):
    X_train, _, _ = synthetic
    det = TabularDetector(contamination=0.05, random_state=0, **TINY)
    labels = det.fit_predict(X_train[:400])
    np.testing.assert_array_equal(labels, det.labels_)
    assert labels.dtype == np.int64 and 0 < labels.sum() < 400
    det.save(tmp_path / "model")
    again = TabularDetector.load(tmp_path / "model")
    np.testing.assert_array_equal(again.labels_, labels)
    np.testing.assert_allclose(again.predict_proba(X_train[:20]), det.predict_proba(X_train[:20]))
    assert not hasattr(TabularDetector(), "labels_")


def test_offset_name_is_not_sklearns(fitted_frame_detector, frame):
    """scikit-learn's offset_ is ``score_samples - decision_function``; ours was another
    quantity, so it has its own name and the old one warns."""
    det = fitted_frame_detector
    errors = det.feature_errors(frame.iloc[:10]).to_numpy().sum(axis=1)
    np.testing.assert_allclose(errors - det.feature_errors_offset_,
                               det.decision_function(frame.iloc[:10]), atol=1e-9)
    with pytest.warns(FutureWarning, match="feature_errors_offset_"):
        assert det.offset_ == det.feature_errors_offset_
