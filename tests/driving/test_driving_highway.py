"""The highway world: lanes, speeds, car-following without collisions, events, rate, and
the classes its logs declare."""
from dataclasses import replace

import numpy as np
from scipy.ndimage import label

from driving.demo import sim_config
from driving.guard import guarded
from driving.model.predictor import OcclusionPredictor
from driving.schema import CLASSES, LANE_MARKING, OFF_ROAD, PEDESTRIAN, ROAD, SIDEWALK, VEHICLE
from driving.sim.highway import HIGHWAY_EVENTS, HighwayConfig, HighwaySimulator, HighwayWorld
from driving.sim.simulator import CAR, simulate_logs
from driving.schema import read_log


def test_layout_has_lanes_each_way_markings_and_no_sidewalk():
    config = HighwayConfig(lanes=3)
    world = HighwayWorld(config, origin=(0.0, 0.0), yaw=0.3)
    for side in (-1, 1):
        for lane in range(3):
            x, y = world.to_world(np.arange(0, 60.0, 1.0), side * world.lane_centre(lane))
            assert (world.lookup(x, y) == ROAD).all()              # lane centres are road
        for line in range(4):                                     # solid edges, dashed between
            d = side * (config.median_m / 2 + line * config.lane_width_m)
            marks = world.lookup(*world.to_world(np.arange(0, 120.0, 0.5), np.full(240, d)))
            share = (marks == LANE_MARKING).mean()
            assert share > 0.95 if line in (0, 3) else 0.15 < share < 0.4
    x, y = world.to_world(np.zeros(1), np.array([30.0]))
    assert world.lookup(x, y)[0] == OFF_ROAD
    x, y = world.to_world(np.zeros(1), np.zeros(1))                 # the median
    assert world.lookup(x, y)[0] == OFF_ROAD


def test_normal_highway_log_rate_speeds_and_no_merged_cars():
    config = HighwayConfig(anomaly_interval_s=0.0)
    log = HighwaySimulator(config, seed=3).simulate(80)
    assert log.meta.rate_hz == 5.0 and not log.anomaly.any()
    assert np.allclose(np.diff(log.timestamp), 0.2)
    assert not np.isin(log.semantic_true, (SIDEWALK, PEDESTRIAN)).any()
    assert 15.0 < np.median(log.ego_speed) <= 35.0 and log.ego_speed.max() <= 36.0
    step = np.hypot(np.diff(log.ego_x), np.diff(log.ego_y))
    assert abs(np.median(step / (log.ego_speed[:-1] / log.meta.rate_hz)) - 1) < 0.05
    car_cells = (2 * CAR[0] / config.resolution_m + 1) * (2 * CAR[1] / config.resolution_m + 1)
    assert (log.semantic_true == VEHICLE).any(axis=(1, 2)).mean() > 0.5   # traffic around
    for t in range(0, 80, 4):
        blobs, _ = label(log.semantic_true[t] == VEHICLE)
        assert np.bincount(blobs.ravel())[1:].max(initial=0) < 1.3 * car_cells


def test_events_are_injected_labelled_and_traffic_changes_lanes(tmp_path):
    config = HighwayConfig(anomaly_interval_s=6.0)
    kinds = set()
    for path in simulate_logs(tmp_path, 3, 150, seed=5, config=config):
        log = read_log(path)
        assert log.meta.rate_hz == 5.0
        kinds |= {k for k in log.anomaly_kind if k}
        assert 0 < log.anomaly.mean() < 0.6
        assert all((k is not None) == a for k, a in zip(log.anomaly_kind, log.anomaly))
    assert len(kinds) >= 2 and kinds <= set(HIGHWAY_EVENTS)


def test_ego_cruises_on_a_free_road_and_brakes_behind_traffic():
    free = HighwayConfig(lanes=1, anomaly_interval_s=0.0, vehicles_per_km_lane=0.0)
    log = HighwaySimulator(free, seed=0).simulate(60)
    assert log.ego_speed.min() > 20.0                       # no phantom braking
    dense = replace(free, vehicles_per_km_lane=40.0)         # one lane, no overtaking: a queue
    queued = HighwaySimulator(dense, seed=0).simulate(60)
    assert np.median(queued.ego_speed) < np.median(log.ego_speed) - 2.0


def test_highway_logs_declare_only_the_classes_drawn_and_a_town_model_never_predicts_sidewalk(
        demo_model_dir, tmp_path):
    [path] = simulate_logs(tmp_path, 1, 30, seed=4, config=sim_config("tiny", "highway"))
    log = read_log(path)
    drawn = np.unique(np.concatenate([log.semantic_true.ravel(), log.layout_true.ravel()]))
    assert log.meta.world_classes == tuple(CLASSES[c] for c in drawn)  # off_road .. obstacle
    assert "sidewalk" not in log.meta.world and "pedestrian" not in log.meta.world
    town = OcclusionPredictor.load(demo_model_dir)       # trained on the tiny town's logs
    grids, speed = town.stack(log)
    assert town.predict_proba(grids, speed)[:, SIDEWALK].max() > 0.01   # it believes in them
    probabilities = guarded(town, log).predict_proba(grids, speed)
    assert (probabilities[:, [SIDEWALK, PEDESTRIAN]] == 0).all()
    assert np.allclose(probabilities.sum(1), 1.0, atol=1e-5)
