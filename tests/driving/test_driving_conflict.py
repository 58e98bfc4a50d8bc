"""The frame score's pedestrian-conflict channel (driving.scoring.conflict): a pedestrian's
velocity from its world centroids, the time the ego reaches it and how near its walk is to the
ego's corridor then, and the channel's map."""
import numpy as np

from driving.schema import PEDESTRIAN, ROAD, SIDEWALK, DriveLog, LogMeta
from driving.scoring.conflict import (CONFLICT_HALF_M, MAX_ARRIVAL_S, MAX_ENCROACHMENT_S, pedestrian_conflict,
                                      pedestrian_velocities, time_to_conflict)
from driving.scoring.frame_score import CHANNELS, EGO_FRONT_M, OBSERVED_CHANNELS, FrameScorer
from driving.warp import cell_offsets

META = LogMeta(grid_shape=(128, 128), resolution_m=0.5, ego_cell=(80, 64), rate_hz=10.0)
EGO_SPEED = 5.0                 # 1.5 m (3 cells) per 0.3 s: the grid holds the motion exactly
WALK = -5.0 / 3.0               # m/s along world x (the ego's left): 0.5 m (one cell) per 0.3 s


def _crossing_log(n: int = 12, start_ahead_m: float = 14.0, start_right_m: float = 4.0,
                  ground: int = ROAD) -> DriveLog:
    """The ego driving north (yaw pi/2: its right is world +x) at :data:`EGO_SPEED`, and one
    2x2-cell pedestrian walking west at :data:`WALK`, ``start_ahead_m`` ahead and
    ``start_right_m`` to the right at frame 0, on ``ground``."""
    t = np.arange(n) / META.rate_hz
    ego_y = EGO_SPEED * t
    ped_x, ped_y = start_right_m + WALK * t, np.full(n, start_ahead_m)
    observed = np.full((n, *META.grid_shape), ground, np.uint8)
    for k in range(n):
        row = int(round(META.ego_cell[0] - (ped_y[k] - ego_y[k]) / META.resolution_m))
        col = int(round(META.ego_cell[1] + ped_x[k] / META.resolution_m))
        observed[k, row - 1:row + 1, col - 1:col + 1] = PEDESTRIAN
    return DriveLog(log_id="cross", meta=META, frame=np.arange(n), timestamp=t, ego_x=np.zeros(n), ego_y=ego_y,
                    ego_yaw=np.full(n, np.pi / 2), ego_speed=np.full(n, EGO_SPEED), semantic=observed,
                    visible=np.ones_like(observed, bool))


def test_velocities_are_the_world_walk_in_the_ego_axes():
    log = _crossing_log()
    per_frame = pedestrian_velocities(log, lag_s=0.3)
    for labels, velocity in per_frame[:3]:                    # nothing 0.3 s earlier yet
        assert labels.max() == 1 and np.isnan(velocity).all()
    for labels, velocity in per_frame[3:]:
        np.testing.assert_allclose(velocity, [[0.0, WALK]], atol=1e-9)   # forward 0, right WALK


def test_a_blob_out_of_walking_reach_has_no_velocity():
    log = _crossing_log()
    log.semantic[6:][log.semantic[6:] == PEDESTRIAN] = ROAD
    far = np.zeros_like(log.semantic[0], bool)
    far[20:22, 100:102] = True                                # 30 m across from where it was
    log.semantic[6:][:, far] = PEDESTRIAN
    assert np.isnan(pedestrian_velocities(log, lag_s=0.3)[7][1]).all()


def test_time_to_conflict_is_the_arrival_and_the_miss_of_the_walk_in_time():
    arrival, gap = time_to_conflict(np.array([8.0, 8.0, 8.0, 8.0, 8.0]), np.array([0.0, 3.0, 5.0, 5.0, 0.0]),
                                    np.array([0.0, 0.0, 0.0, 0.0, 8.0]), np.array([0.0, -1.0, -1.0, 0.0, 0.0]),
                                    ego_speed=8.0, half_m=2.25)
    np.testing.assert_allclose(arrival[:4], 1.0)              # 8 m at a closing 8 m/s
    assert arrival[4] == np.inf                               # walking away as fast as the ego drives
    np.testing.assert_allclose(gap[:2], 0.0)                  # in the corridor when the ego arrives
    np.testing.assert_allclose(gap[2], (4.0 - 2.25) / 1.0)    # 1.75 m short of it, at 1 m/s
    assert gap[3] == np.inf                                   # standing beside it


def test_the_channel_reads_a_close_call_on_the_carriageway_only():
    log = _crossing_log()
    conflict = pedestrian_conflict(log)
    forward, right = cell_offsets(META)
    for t in range(3, len(log)):
        cells = log.semantic[t] == PEDESTRIAN
        ahead = forward[cells].min() - EGO_FRONT_M                  # from the bumper to its nearest row
        arrival, gap = time_to_conflict(np.array([ahead]), np.array([right[cells].mean()]), np.array([0.0]),
                                        np.array([WALK]), EGO_SPEED, CONFLICT_HALF_M)
        close = arrival[0] <= MAX_ARRIVAL_S and gap[0] <= MAX_ENCROACHMENT_S
        expected = 1.0 / (arrival[0] + gap[0]) if close else 0.0
        np.testing.assert_allclose(conflict[t][cells], expected, rtol=1e-5)
        assert not conflict[t][~cells].any()
    assert conflict[3:].any() and not conflict[:3].any()     # no velocity in the first 0.3 s
    assert not pedestrian_conflict(_crossing_log(ground=SIDEWALK)).any()


def test_the_frame_score_reads_the_channel_from_the_observed_grids():
    """The default scorer carries the channel among its observed channels (no network pass),
    top 1 over the scored objects: the crossing's closest call."""
    assert ("pedestrian_conflict", False, 1) in CHANNELS and "pedestrian_conflict" in OBSERVED_CHANNELS
    log = _crossing_log()
    stats = FrameScorer().observed_statistics(log)
    np.testing.assert_allclose(stats["pedestrian_conflict"], pedestrian_conflict(log).max((1, 2)), rtol=1e-6)
    assert stats["pedestrian_conflict"].max() > 0
