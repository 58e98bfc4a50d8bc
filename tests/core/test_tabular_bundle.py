"""TabularDetector bundles: fresh-process round trip, and damaged bundles are refused."""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from core import BundleError, TabularDetector


def test_round_trip_in_a_fresh_process(fitted_frame_detector, frame, tmp_path):
    rows = frame.iloc[:50].copy()
    rows["channel"] = rows["channel"].astype(str)
    rows.loc[rows.index[0], "channel"] = "unseen"  # unknown category survives the trip
    data = tmp_path / "rows.parquet"
    rows.to_parquet(data)
    bundle = fitted_frame_detector.save(tmp_path / "model")
    assert sorted(p.name for p in bundle.iterdir()) == [".unmask", "config.json", "weights.safetensors"]
    script = textwrap.dedent(f"""
        import json, sys
        import pandas as pd
        from core import TabularDetector
        det = TabularDetector.load({str(bundle)!r})
        rows = pd.read_parquet({str(data)!r})
        out = {{"scores": det.decision_function(rows).tolist(), "threshold": det.threshold_,
               "errors": det.feature_errors(rows).to_numpy().tolist(),
               "p": det.p_values(rows).tolist(), "params": det.get_params()["n_reference"]}}
        sys.stdout.write(json.dumps(out))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env={"UNMASK_NUM_THREADS": "1", "PATH": ""})
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    np.testing.assert_allclose(out["scores"], fitted_frame_detector.decision_function(rows),
                               atol=1e-6, rtol=0)
    np.testing.assert_allclose(out["errors"], fitted_frame_detector.feature_errors(rows),
                               atol=1e-6, rtol=0)
    np.testing.assert_allclose(out["p"], fitted_frame_detector.p_values(rows))
    assert out["threshold"] == fitted_frame_detector.threshold_
    assert out["params"] == fitted_frame_detector.n_reference


def test_reload_in_process_keeps_everything(fitted_array_detector, synthetic, tmp_path):
    det = TabularDetector.load(fitted_array_detector.save(tmp_path / "m"))
    X = synthetic[1][:40]
    np.testing.assert_array_equal(det.predict(X), fitted_array_detector.predict(X))
    np.testing.assert_allclose(det.decision_scores_, fitted_array_detector.decision_scores_)
    assert det.get_params() == fitted_array_detector.get_params()
    assert not hasattr(det, "feature_names_in_") and det.n_features_in_ == 8
    result = det.explain(X[:2], max_evals=40)
    np.testing.assert_allclose(result.values.sum(1) + result.base_values, result.scores, atol=1e-4)


@pytest.fixture()
def bundle(fitted_array_detector, tmp_path):
    return fitted_array_detector.save(tmp_path / "model")


def test_tampered_weights_are_refused(bundle):
    weights = bundle / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="weights.safetensors: checksum mismatch"):
        TabularDetector.load(bundle)


def test_truncated_weights_are_refused(bundle):
    weights = bundle / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(BundleError, match="truncated"):
        TabularDetector.load(bundle)


def test_newer_format_is_refused(bundle):
    config = json.loads((bundle / "config.json").read_text())
    config["format_version"] = 99
    (bundle / "config.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match="format version 99 is newer"):
        TabularDetector.load(bundle)


def test_older_format_is_refused_with_retrain(bundle):
    """Version 2 bundles lack the stored rows' neighbour radii of the ``"local"``
    component; they get one line saying to retrain (no silent defaults)."""
    config = json.loads((bundle / "config.json").read_text())
    assert config["format_version"] == 3
    config["format_version"] = 2
    del config["config"]["params"]["local_floor"]
    (bundle / "config.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match="format version 2 .* is older than this unmask reads "
                                          r"\(3\); retrain the model$"):
        TabularDetector.load(bundle)


def test_wrong_kind_and_missing_bundle(bundle, tmp_path):
    config = json.loads((bundle / "config.json").read_text())
    config["kind"] = "ct-segmenter"
    (bundle / "config.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match="'ct-segmenter' model, expected 'tabular'"):
        TabularDetector.load(bundle)
    with pytest.raises(BundleError, match="no model bundle"):
        TabularDetector.load(tmp_path / "nothing")


def test_failed_save_leaves_old_bundle(fitted_array_detector, tmp_path, monkeypatch):
    path = fitted_array_detector.save(tmp_path / "model")
    before = (path / "config.json").read_text()
    import core.bundle

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        fitted_array_detector.save(path)
    assert (path / "config.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    del core.bundle


def test_frame_detector_scores_numpy_by_position(fitted_frame_detector, frame):
    rows = frame.head(4)
    as_objects = rows.to_numpy(dtype=object)
    np.testing.assert_allclose(fitted_frame_detector.decision_function(as_objects),
                               fitted_frame_detector.decision_function(rows))
    assert isinstance(fitted_frame_detector.feature_errors(rows), pd.DataFrame)


def test_network_component_round_trip(frame, tmp_path):
    from tabular_data import TINY

    det = TabularDetector(random_state=0, components=("reference", "knn", "network"),
                          **TINY).fit(frame)
    again = TabularDetector.load(det.save(tmp_path / "net"))
    assert again.history_["best_epoch"] == det.history_["best_epoch"]
    np.testing.assert_allclose(again.decision_function(frame.head(30)),
                               det.decision_function(frame.head(30)), atol=1e-6, rtol=0)
