"""Surprise helpers, memory input, occluded vs out-of-range evaluation."""
import numpy as np
import pytest

from driving.demo import sim_config
from driving.evaluate import HiddenCellAccumulator
from driving.model.baselines import persistence_memory
from driving.model.masking import ShadowMasker
from driving.schema import LogMeta, ROAD, VEHICLE
from driving.scoring.normaliser import CellNormaliser
from driving.scoring.surprise import causal_mean
from driving.sim.simulator import Simulator
from driving.warp import cell_offsets, sensor_range_mask, warp_grid


def test_causal_mean_uses_only_the_past():
    x = np.array([0.0, 0.0, 9.0, 0.0, 0.0, 0.0])
    out = causal_mean(x, 3)
    np.testing.assert_allclose(out, [0, 0, 3, 3, 3, 0])
    np.testing.assert_allclose(causal_mean(x, 1), x)


def test_memory_before_a_frame_never_contains_that_frame(small_log):
    before = persistence_memory(small_log, before=True)
    after = persistence_memory(small_log)
    assert (before[0] == 255).all()
    poses = small_log.poses
    for t in range(1, len(small_log)):      # the memory of t-1, moved with the ego, nothing new
        np.testing.assert_array_equal(
            before[t], warp_grid(after[t - 1], poses[t - 1], poses[t], small_log.meta))
    hidden_now = ~small_log.visible[1]
    assert (before[1][~hidden_now] != 255).any()


def test_normaliser_divides_by_the_expected_surprise_of_class_and_distance():
    meta = LogMeta(grid_shape=(16, 16), resolution_m=1.0, ego_cell=(8, 8))
    rng = np.random.default_rng(0)
    observed = np.full((40, 16, 16), ROAD, np.uint8)
    observed[:, :4] = VEHICLE                                  # vehicles far ahead
    maps = {name: rng.uniform(0, 1, (40, 16, 16)).astype(np.float32) for name in
            ("revealed", "recon", "forecast")}
    maps["recon"][observed == VEHICLE] *= 10.0                 # vehicles are routinely surprising
    norm = CellNormaliser(band_m=4.0, n_bands=4, min_cells=20).fit([maps], [observed], meta)
    out = norm.apply("recon", maps["recon"], observed, meta)
    assert out[observed == VEHICLE].max() == pytest.approx(out[observed == ROAD].max(), rel=0.15)
    again = CellNormaliser.from_dict(norm.to_dict())
    np.testing.assert_allclose(again.apply("recon", maps["recon"], observed, meta), out)


def test_hidden_cells_split_into_occluded_and_out_of_range():
    meta = LogMeta(grid_shape=(16, 16), resolution_m=1.0, ego_cell=(8, 8))
    forward, right = cell_offsets(meta)
    in_range = np.hypot(forward, right) <= 5.0
    truth = np.where(in_range, ROAD, 0).astype(np.uint8)[None]
    visible = np.zeros((1, 16, 16), bool)
    probs = np.zeros((1, 7, 16, 16), np.float32)
    probs[0, ROAD] = 1.0                                       # predicts road everywhere
    acc = HiddenCellAccumulator(7, sample=1.0)
    acc.add(probs, truth, visible, in_range)
    names = [f"c{i}" for i in range(7)]
    regions = acc.metrics_by_region(names)
    assert regions["occluded"]["road_iou"] == 1.0              # right wherever observable
    assert regions["out_of_range"]["road_iou"] == 0.0
    assert regions["occluded"]["n_hidden_cells"] == in_range.sum()
    assert acc.metrics(names)["n_hidden_cells"] == 256


def test_sensor_range_is_read_from_the_log():
    config = sim_config("tiny")                                # 20 m range, 64x64 at 0.5 m
    log = Simulator(config, seed=1).simulate(200)
    mask = sensor_range_mask(log)
    forward, right = cell_offsets(log.meta)
    dist = np.hypot(forward, right)
    assert mask[dist <= 19.0].all() and not mask[dist > 20.01].any()
    np.testing.assert_array_equal(sensor_range_mask(log, 20.0), dist <= 20.0)


def test_forecast_masks_leave_the_history_visible():
    meta = LogMeta(grid_shape=(32, 32), resolution_m=0.5, ego_cell=(20, 16))
    forecast = ShadowMasker(meta, forecast_fraction=1.0, random_state=0).draw((8, 4, 32, 32))
    tubes = ShadowMasker(meta, forecast_fraction=0.0, max_shadows=1, half_angle_deg=(2.0, 2.5),
                         random_state=0).draw((8, 4, 32, 32))
    assert forecast[:, 0].any() and not forecast[:, 1:].any()    # only the current frame
    assert tubes[:, 1:].any()                                    # patches hide every frame
    np.testing.assert_array_equal(tubes[:, 1], tubes[:, 3])
