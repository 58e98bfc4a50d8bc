"""Simulator: determinism, the classes it draws, anomalies, occlusion and speed."""
from dataclasses import replace

import numpy as np
import pytest

from core.errors import DataValidationError
from core.io import written_by_unmask
from driving.demo import sim_config
from driving.schema import (CLASSES, LANE_MARKING, PEDESTRIAN, ROAD, SIDEWALK, STATIC_OBSTACLE,
                            UNOBSERVED, VEHICLE)
from driving.sim.simulator import ANOMALY_KINDS, CAR, SimConfig, Simulator, simulate_logs


def test_same_seed_same_log_and_different_seed_differs():
    a = Simulator(sim_config("tiny"), seed=3).simulate(30)
    b = Simulator(sim_config("tiny"), seed=3).simulate(30)
    c = Simulator(sim_config("tiny"), seed=4).simulate(30)
    np.testing.assert_array_equal(a.semantic_true, b.semantic_true)
    np.testing.assert_array_equal(a.visible, b.visible)
    np.testing.assert_array_equal(a.poses, b.poses)
    assert not np.array_equal(a.poses, c.poses)


def test_log_content_and_labelled_anomalies():
    log = Simulator(sim_config("tiny"), seed=1).simulate(300)
    assert log.meta.classes == CLASSES
    present = np.unique(log.semantic_true)
    assert set(range(len(CLASSES))) <= set(present.tolist())       # every class appears
    assert (log.semantic[~log.visible] == UNOBSERVED).all()
    assert (log.semantic[log.visible] == log.semantic_true[log.visible]).all()
    hidden = ~log.visible
    assert np.isin(log.semantic_true[hidden], (VEHICLE, PEDESTRIAN)).any()  # occluded objects exist
    assert 0 < log.anomaly.mean() < 0.6
    kinds = {k for k in log.anomaly_kind if k}
    assert kinds and kinds <= set(ANOMALY_KINDS)
    assert all((k is not None) == a for k, a in zip(log.anomaly_kind, log.anomaly))
    step = np.hypot(np.diff(log.ego_x), np.diff(log.ego_y))
    ratio = step / (log.ego_speed[:-1] / log.meta.rate_hz)   # poses move at the logged speed
    assert abs(np.median(ratio) - 1) < 0.02


def test_layout_truth_is_the_ground_under_the_objects():
    log = Simulator(sim_config("tiny"), seed=1).simulate(60)
    objects = log.semantic_true >= VEHICLE
    np.testing.assert_array_equal(log.layout_true[~objects], log.semantic_true[~objects])
    assert log.layout_true.max() <= SIDEWALK
    under_cars = log.layout_true[log.semantic_true == VEHICLE]
    assert np.isin(under_cars, (ROAD, LANE_MARKING)).mean() > 0.9   # cars stand on the road


def test_traffic_does_not_drive_through_traffic_and_bins_stay_off_the_road():
    from scipy.ndimage import label


    config = SimConfig(anomaly_interval_s=0.0)
    car_cells = (2 * CAR[0] / config.resolution_m + 1) * (2 * CAR[1] / config.resolution_m + 1)
    for seed in (0, 1):
        log = Simulator(config, seed=seed).simulate(120)
        for t in range(0, 120, 4):
            blobs, n = label(log.semantic_true[t] == VEHICLE)
            assert np.bincount(blobs.ravel())[1:].max(initial=0) < 1.3 * car_cells  # no merged cars
        obstacles = log.semantic_true == STATIC_OBSTACLE
        assert np.isin(log.layout_true[obstacles], (ROAD, LANE_MARKING)).mean() < 0.05


class _FailsAtSecondLog(SimConfig):
    """The tiny town, whose second log's simulation fails (as an interrupted run would)."""

    def build(self, seed: int):
        if seed % 1000 == 1:
            raise RuntimeError("interrupted")
        return super().build(seed)


def test_simulated_logs_are_published_whole(tmp_path):
    out = tmp_path / "logs"
    first = simulate_logs(out, 3, 6, seed=1, config=sim_config("tiny"))
    assert [p.name for p in first] == ["log_000.parquet", "log_001.parquet", "log_002.parquet"]
    assert all(p.parent == out for p in first) and written_by_unmask(out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    # A simulation that stops half-way leaves the earlier set as it was, and no temporary.
    with pytest.raises(RuntimeError, match="interrupted"):
        simulate_logs(out, 2, 6, seed=2, config=_FailsAtSecondLog(**vars(sim_config("tiny"))))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs"]
    # A rerun replaces the set: no stale third log stays beside the two new ones.
    simulate_logs(out, 2, 6, seed=2, config=replace(sim_config("tiny"), anomaly_interval_s=0.0))
    assert sorted(p.name for p in out.glob("*.parquet")) == ["log_000.parquet", "log_001.parquet"]
    # A folder unmask did not write is never replaced.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(DataValidationError, match="a folder unmask did not write"):
        simulate_logs(tmp_path / "mine", 1, 6, config=sim_config("tiny"))
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_anomaly_kinds_restricts_the_events_and_the_default_draws_as_before():
    only = Simulator(SimConfig(anomaly_kinds=("pedestrian_step_out",)), seed=2).simulate(250)
    assert {k for k in only.anomaly_kind if k} == {"pedestrian_step_out"}
    default = Simulator(SimConfig(), seed=2).simulate(60)
    spelled = Simulator(SimConfig(anomaly_kinds=ANOMALY_KINDS), seed=2).simulate(60)
    np.testing.assert_array_equal(default.semantic_true, spelled.semantic_true)
    with pytest.raises(ValueError, match="anomaly_kinds.*jaywalker"):
        SimConfig(anomaly_kinds=("jaywalker",))
