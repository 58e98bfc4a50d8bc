"""core.estimator.Estimator: the shared model shell, exercised through a tiny toy model."""
import doctest
import json

import numpy as np
import pytest
import torch

import core.estimator
from core.bundle import read_bundle_config
from core.calibration import ScoreCalibration
from core.errors import BundleError, NotFittedError, UnmaskError
from core.estimator import Estimator


class MeanDistance(Estimator):
    """Toy model: L1 distance to the training mean, calibrated on the last 50 rows."""

    bundle_kind = "toy-mean-distance"
    bundle_version = 3

    def __init__(self, contamination=0.05):
        self.contamination = contamination

    def fit(self, X):
        X = np.asarray(X, dtype=np.float64)
        self.mean_ = X[:-50].mean(axis=0)
        return self._calibrate(self._score(X[-50:]))

    def _score(self, X):
        return np.abs(np.asarray(X, dtype=np.float64) - self.mean_).sum(axis=1)

    def _bundle_state(self):
        return {"contamination": self.contamination}, {"mean": torch.as_tensor(self.mean_)}

    @classmethod
    def _from_bundle(cls, config, tensors):
        model = cls(config["contamination"])
        model.mean_ = tensors["mean"].double().numpy()
        return model


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(250, 3))
    test = np.vstack([rng.normal(size=(40, 3)), rng.normal(size=(5, 3)) + 8.0])
    return train, test


def test_unfitted_model_refuses_every_use_in_one_line(tmp_path, data):
    model = MeanDistance()
    calls = [model.decision_function, model.predict, model.p_values, model.alerts]
    for call in calls:
        with pytest.raises(NotFittedError) as err:
            call(data[1])
        assert str(err.value) == "MeanDistance is not fitted: call fit() or load() first"
        assert isinstance(err.value, UnmaskError)
    with pytest.raises(NotFittedError):
        model.save(tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_scoring_methods_follow_the_calibration(data):
    train, test = data
    model = MeanDistance().fit(train)
    held_out = np.abs(train[-50:] - train[:-50].mean(axis=0)).sum(axis=1)
    reference = ScoreCalibration(0.05).fit(held_out)
    scores = model.decision_function(test)
    assert scores.dtype == np.float64 and scores.shape == (45,)
    assert model.threshold_ == reference.threshold_
    np.testing.assert_array_equal(model.predict(test), (scores > reference.threshold_).astype(int))
    np.testing.assert_array_equal(model.p_values(test), reference.p_values(scores))
    assert model.predict(test)[-5:].tolist() == [1] * 5  # the shifted rows
    fdr = model.alerts(test, fdr=0.2)
    np.testing.assert_array_equal(fdr, reference.alerts(scores, fdr=0.2))
    assert fdr[-5:].all()
    assert np.flatnonzero(model.alerts(test, budget=3)).tolist() == sorted(
        np.argsort(-scores)[:3].tolist())
    with pytest.raises(UnmaskError, match="either fdr or budget"):
        model.alerts(test, fdr=0.1, budget=3)


def test_save_load_round_trip(tmp_path, data):
    train, test = data
    model = MeanDistance(contamination=0.1).fit(train)
    path = model.save(tmp_path / "m")
    meta = read_bundle_config(path)
    assert meta["kind"] == "toy-mean-distance" and meta["format_version"] == 3
    assert meta["config"]["calibration"]["threshold"] == model.threshold_
    loaded = MeanDistance.load(path)
    assert loaded.contamination == 0.1 and loaded.threshold_ == model.threshold_
    np.testing.assert_array_equal(loaded.decision_function(test), model.decision_function(test))
    np.testing.assert_array_equal(loaded.p_values(test), model.p_values(test))


def _rewrite(path, change):
    meta = json.loads((path / "config.json").read_text())
    change(meta)
    (path / "config.json").write_text(json.dumps(meta))


def test_load_refuses_other_kinds_versions_and_content(tmp_path, data):
    path = MeanDistance().fit(data[0]).save(tmp_path / "m")

    class Other(MeanDistance):
        bundle_kind = "toy-other"

    with pytest.raises(BundleError, match="holds a 'toy-mean-distance' model, expected 'toy-other'"):
        Other.load(path)
    _rewrite(path, lambda m: m.update(format_version=2))
    with pytest.raises(BundleError, match=r"version 2 .* is older than this unmask reads \(3\); "
                                          "retrain the model$"):
        MeanDistance.load(path)
    _rewrite(path, lambda m: m.update(format_version=4))
    with pytest.raises(BundleError, match="newer than this unmask supports"):
        MeanDistance.load(path)
    _rewrite(path, lambda m: (m.update(format_version=3), m["config"].pop("calibration")))
    with pytest.raises(BundleError, match="does not describe a MeanDistance") as err:
        MeanDistance.load(path)
    assert "\n" not in str(err.value)


def test_docstring_example_runs():
    result = doctest.testmod(core.estimator, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
