"""The pedestrian-memory experiment's drift measure: on a remembered blob that only straight
driving's nearest-neighbour resampling moves, the measured net drift must be the predicted
``|rint(s) - s|`` cells a frame, which a frame-to-frame step of rounded cells cannot read."""
import numpy as np
import pytest

from bench.experiments.driving_pedestrian_memory import run_drift, split_runs
from driving.schema import PEDESTRIAN, UNOBSERVED, LogMeta
from driving.warp import warp_grid


def _resampled_blob(speed: float, yaw: float, frames: int = 17):
    """A 3-cell pedestrian memory warped frame to frame while the ego drives straight at
    ``speed`` (m/s) heading ``yaw``: its poses and ``(T, H, W)`` cells."""
    meta = LogMeta()
    step = speed / meta.rate_hz
    poses = np.array([(0.3 + step * t * np.cos(yaw), 0.1 + step * t * np.sin(yaw), yaw) for t in range(frames)])
    grid = np.full(meta.grid_shape, UNOBSERVED, np.uint8)
    grid[40, 70] = grid[40, 71] = grid[41, 70] = PEDESTRIAN
    cells = [grid == PEDESTRIAN]
    for t in range(1, frames):
        grid = warp_grid(grid, poses[t - 1], poses[t], meta)
        cells.append(grid == PEDESTRIAN)
    return poses, meta, np.stack(cells)


@pytest.mark.parametrize("speed, yaw", [(8.2, 0.0), (8.2, 0.3), (9.5, 0.2), (7.0, 1.0)])
def test_net_drift_of_a_resampled_blob_is_the_rounding(speed, yaw):
    poses, meta, cells = _resampled_blob(speed, yaw)
    s = speed / (meta.rate_hz * meta.resolution_m)
    row = run_drift(poses, meta, cells, cells, 0, len(cells) - 1)
    assert row["predicted_mean_abs_per_frame"] == pytest.approx(abs(np.rint(s) - s), abs=1e-6)
    assert row["won_per_frame"] == pytest.approx(row["predicted_per_frame"], abs=1e-6)
    assert row["resampled_per_frame"] == pytest.approx(row["won_per_frame"], abs=1e-6)
    assert row["walker_per_frame"] == pytest.approx(row["won_per_frame"], abs=1e-6)
    assert row["ego_turn_per_frame_rad"] == pytest.approx(0.0, abs=1e-12)


def test_runs_end_at_gaps_and_breaks():
    frames = np.array([3, 4, 5, 9, 11, 12, 13])
    no_break = np.zeros(len(frames) - 1, bool)
    assert split_runs(frames, no_break) == [(3, 5), (9, 9), (11, 13)]
    assert split_runs(frames, np.r_[no_break[:-1], True]) == [(3, 5), (9, 9), (11, 12), (13, 13)]
    assert split_runs(np.array([], int), np.array([], bool)) == []
