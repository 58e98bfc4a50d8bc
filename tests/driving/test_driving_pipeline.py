"""Predictor, surprise, run files and replay export on the tiny demo workspace."""
import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from core.errors import NotFittedError
from core.metrics import auroc
from driving.model.baselines import PersistenceBaseline, PositionalPrior, persistence_memory
from driving.model.predictor import OcclusionPredictor
from driving.schema import LANE_MARKING, ROAD, STATIC_OBSTACLE, list_logs, read_log
from driving.scoring.path import ego_path
from driving.scoring.surprise import score_log
from driving.warp import cell_offsets


@pytest.fixture(scope="module")
def trained(demo_run, load_demo_predictor):
    workspace, _ = demo_run
    logs = [read_log(p) for p in list_logs(workspace / "data" / "driving")]
    return load_demo_predictor(), logs


def _log_likelihood(probs, log):
    hidden = ~log.visible
    t, r, c = np.nonzero(hidden)
    p = probs[t, log.semantic_true[t, r, c], r, c]
    return float(np.log(np.maximum(p, 1e-6)).mean())


def test_predictor_beats_positional_prior_and_persistence_on_hidden_cells(trained):
    predictor, logs = trained
    prior = PositionalPrior().fit(logs)
    log = logs[-1]
    grids, speed = predictor.stack(log)
    probs = predictor.predict_proba(grids, speed)
    assert probs.shape == (len(log), 7) + log.meta.grid_shape
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)
    ours = _log_likelihood(probs, log)
    assert ours > _log_likelihood(prior.predict_proba(log), log)
    assert ours > _log_likelihood(PersistenceBaseline().predict_proba(log), log)


def test_persistence_remembers_what_it_saw(trained):
    _, logs = trained
    log = logs[0]
    memory = persistence_memory(log)
    assert (memory[log.visible] == log.semantic[log.visible]).all()
    assert (memory != 255).mean() > (log.semantic != 255).mean()   # memory fills hidden cells


def test_surprise_rises_when_debris_appears_in_a_driving_lane(trained):
    """Debris as the simulator's events place it: in a lane ahead of the ego, not at the
    kerb (where a bin at the curb is ordinary, see ``driving.scoring.context_prior``)."""
    from scipy.ndimage import distance_transform_edt

    predictor, logs = trained
    log = logs[0]
    rng = np.random.default_rng(0)
    altered = read_log(log.path)
    changed = []
    forward, right = cell_offsets(log.meta)
    path = ego_path(log.meta) & (np.hypot(forward, right) < 12.0) & (forward > 2.0)
    for t in range(5, len(log), 3):                  # paste a 2x2 m obstacle on visible lane
        kerb_m = distance_transform_edt(np.isin(log.semantic[t], (ROAD, LANE_MARKING))) * log.meta.resolution_m
        road = np.argwhere(((log.semantic[t] == ROAD) & (kerb_m >= 3.0) & path)[2:-2, 2:-2]) + 2
        if len(road):
            r, c = road[rng.integers(len(road))]
            altered.semantic[t, r - 2:r + 2, c - 2:c + 2] = STATIC_OBSTACLE
            altered.visible[t, r - 2:r + 2, c - 2:c + 2] = True
            changed.append(t)
    before = score_log(predictor, log).raw_score[changed]     # per frame, before smoothing
    result = score_log(predictor, altered)
    after = result.raw_score[changed]
    labels = np.r_[np.zeros(len(changed)), np.ones(len(changed))]
    assert auroc(labels, np.r_[before, after]) > 0.8
    assert np.median(after - before) > 0
    # the replay's cell error shows the debris, not only the frame score
    pasted = (altered.semantic != log.semantic)[changed]
    errors = result.cell_error[changed]
    assert np.median(errors[pasted]) > 2 * np.median(errors[result.object_cells[changed] & ~pasted])


def test_bundle_reload_scores_identically(trained, tmp_path):
    predictor, logs = trained
    predictor.save(tmp_path / "model")
    again = OcclusionPredictor.load(tmp_path / "model")
    assert again.scoring_.road_threshold == predictor.scoring_.road_threshold
    assert again.scoring_.frame_scorer.channels == predictor.scoring_.frame_scorer.channels
    a, b = score_log(predictor, logs[0]), score_log(again, logs[0])
    np.testing.assert_allclose(a.score, b.score, atol=1e-6)
    np.testing.assert_array_equal(a.predicted, b.predicted)


def test_run_files_follow_the_contract(demo_run):
    workspace, run_dir = demo_run
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["vertical"] == "driving"
    summary = manifest["summary"]
    h, w = summary["grid_shape"]
    assert summary["classes"][:7] == ["off_road", "road", "lane_marking", "sidewalk", "vehicle",
                                      "pedestrian", "static_obstacle"]
    frames = pd.read_parquet(run_dir / "frames.parquet")
    assert list(frames.columns[:9]) == ["log_id", "frame", "timestamp", "score", "p_value",
                                        "is_alert", "surprise_revealed", "visible_error", "anomaly"]
    assert len(frames) == summary["n_frames"] and frames["is_alert"].sum() == summary["n_alerts"]
    assert frames["p_value"].between(0, 1).all()
    for log_id in frames["log_id"].unique():
        cells = pq.read_table(run_dir / "cells" / f"{log_id}.parquet")
        assert cells.column_names == ["log_id", "frame", "predicted", "confidence", "error",
                                      "road_layout"]
        row = cells.slice(0, 1).to_pylist()[0]
        assert len(row["predicted"]) == len(row["error"]) == len(row["road_layout"]) == h * w
        log = next(read_log(p) for p in list_logs(workspace / "data" / "driving")
                   if read_log(p).log_id == log_id)
        layout = np.asarray(row["road_layout"]).reshape(h, w)    # observed layout: certain
        seen = log.visible[0] & (log.semantic[0] <= 3)
        road = np.isin(log.semantic[0], (ROAD, LANE_MARKING))
        assert (layout[seen & road] == 255).all() and (layout[seen & ~road] == 0).all()
        assert (run_dir / "recordings" / f"{log_id}.rrd").stat().st_size > 1000
    shap = pd.read_parquet(run_dir / "region_shap.parquet")
    assert list(shap.columns) == ["log_id", "frame", "region", "shap_value", "base_value"]
    for (log_id, frame), group in shap.groupby(["log_id", "frame"]):
        assert len(group) == 16
        score = frames.set_index(["log_id", "frame"]).loc[(log_id, frame), "score"]
        assert group["shap_value"].sum() + group["base_value"].iloc[0] == pytest.approx(score, abs=1e-4)
    assert set(manifest["inputs"]) == {str(p.resolve()) for p in list_logs(workspace / "data" / "driving")}


def test_recording_is_readable(demo_run):
    from rerun.chunk import RrdReader

    _, run_dir = demo_run
    rrd = sorted((run_dir / "recordings").glob("*.rrd"))[0]
    reader = RrdReader(rrd)
    assert len(reader.recordings()) == 1
    chunks = list(reader.stream())
    entities = {str(chunk.entity_path) for chunk in chunks}
    assert {"/grid/observed", "/grid/predicted", "/grid/road_layout", "/grid/truth",
            "/grid/error", "/score"} <= entities


def test_estimator_contract(trained):
    predictor, logs = trained
    scores = predictor.decision_function(logs[0])
    flags = predictor.predict(logs[0])
    np.testing.assert_array_equal(flags, (scores > predictor.threshold_).astype(int))
    with pytest.raises(NotFittedError, match="not fitted"):
        OcclusionPredictor().predict(logs[0])
