"""The anomaly scorer as an estimator: fit/calibrate methods, the shared base's scoring and
fitted check, the bundle format version, and an import graph without cycles."""
from __future__ import annotations

import json

import numpy as np
import pytest

from core.errors import BundleError, NotFittedError
from medical.anomaly import AnomalyScorer
from medical.anomaly_config import AnomalyConfig
from medical.io import find_cases
from medical.networks import NetworkConfig
from medical.reconstruction import body_mask
from medical.transforms import Preprocessor, PreprocessConfig
from medical.volumes import prepare_case



def _grid(scorer, case):
    return prepare_case(case, Preprocessor(scorer.preprocess)).image.as_tensor()


def test_base_scoring_methods_match_the_case_scores(tiny_models, tiny_data):
    bundle, _, _, segmenter = tiny_models
    scorer = AnomalyScorer.load(bundle)
    images = [_grid(scorer, c) for c in find_cases(tiny_data[1])]
    by_hand = [scorer.case_score(scorer.error_map(x), body_mask(x.numpy()[0])) for x in images]
    np.testing.assert_array_equal(scorer.decision_function(images), by_hand)
    np.testing.assert_array_equal(scorer.p_values(images), scorer.calibration_.p_values(by_hand))
    assert scorer.threshold_ == scorer.calibration_.threshold_


def test_unfitted_scorer_refuses_to_score_or_save(tmp_path):
    scorer = AnomalyScorer(NetworkConfig(channels=(4, 8), strides=(2,), roi_size=(16, 16, 8)),
                           PreprocessConfig(), AnomalyConfig())
    with pytest.raises(NotFittedError, match="AnomalyScorer is not fitted"):
        scorer.p_values([np.zeros((1, 16, 16, 8), np.float32)])
    with pytest.raises(NotFittedError):
        scorer.save(tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_plain_calibration_switches_organ_scoring_off(tiny_models, tiny_data):
    """Calibrating without a segmenter calibrates plain maps, so label maps must no longer
    switch on organ scoring (its per-organ statistics would not match the calibration)."""
    _, model_dir, _, segmenter = tiny_models
    scorer = AnomalyScorer.load(model_dir / "anomaly")
    assert scorer.uses_organs
    healthy = find_cases(tiny_data[0])[:3]
    scorer.calibrate(healthy)
    assert not scorer.uses_organs
    x = _grid(scorer, healthy[0])
    labels = segmenter.predict_proba(x).argmax(0).numpy()
    np.testing.assert_array_equal(scorer.error_map(x, labels), scorer.error_map(x))


def test_an_older_anomaly_bundle_is_refused_with_one_line(tiny_models, tmp_path):
    bundle, _, scorer, _ = tiny_models
    scorer.save(tmp_path / "old")
    meta_path = tmp_path / "old" / "config.json"
    meta = json.loads(meta_path.read_text())
    meta["format_version"] = 1                      # what unmask wrote before this format
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(BundleError) as err:
        AnomalyScorer.load(tmp_path / "old")
    message = str(err.value)
    assert "\n" not in message and "retrain" in message and "format version 1" in message
