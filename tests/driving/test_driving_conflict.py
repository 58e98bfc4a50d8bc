"""The frame score's pedestrian-conflict channel (driving.scoring.conflict): a pedestrian's
velocity from its world centroids, the time the ego reaches it and how near its walk is to the
ego's corridor then, and the channel's map."""
import numpy as np
import pytest

from driving.schema import PEDESTRIAN, ROAD, SIDEWALK, DriveLog, LogMeta
from driving.scoring.conflict import (CONFLICT_HALF_M, MAX_ARRIVAL_S, MAX_ENCROACHMENT_S,
                                      pedestrian_conflict, pedestrian_velocities, time_to_conflict)
from driving.scoring.frame_score import CHANNELS, OBSERVED_CHANNELS, FrameScorer
from driving.scoring.path import EGO_FRONT_M
from driving.warp import cell_offsets

META = LogMeta(grid_shape=(128, 128), resolution_m=0.5, ego_cell=(80, 64), rate_hz=10.0)
EGO_SPEED = 5.0                 # 1.5 m (3 cells) per 0.3 s: the grid holds the motion exactly
WALK = -5.0 / 3.0               # m/s: 0.5 m (one cell) per 0.3 s


def _crossing_log(n: int = 12, start_ahead_m: float = 14.0, start_right_m: float = 4.0, ground: int = ROAD,
                  yaw: float = np.pi / 2, ego_speed: float = EGO_SPEED, walk=(0.0, WALK)) -> DriveLog:
    """The ego driving straight at heading ``yaw`` and ``ego_speed``, and one 2x2-cell
    pedestrian ``start_ahead_m`` ahead and ``start_right_m`` to the right at frame 0, walking
    at ``walk`` (forward, right; m/s, in the ego's axes), on ``ground``. The default: the ego
    drives north (its right is world +x) and the pedestrian walks west across its path."""
    t = np.arange(n) / META.rate_hz
    ahead = start_ahead_m + (walk[0] - ego_speed) * t             # (n,) m, in the ego's axes
    right = start_right_m + walk[1] * t
    observed = np.full((n, *META.grid_shape), ground, np.uint8)
    for k in range(n):
        row = int(round(META.ego_cell[0] - ahead[k] / META.resolution_m))
        col = int(round(META.ego_cell[1] + right[k] / META.resolution_m))
        observed[k, row - 1:row + 1, col - 1:col + 1] = PEDESTRIAN
    return DriveLog(log_id="cross", meta=META, frame=np.arange(n), timestamp=t, ego_x=ego_speed * t * np.cos(yaw),
                    ego_y=ego_speed * t * np.sin(yaw), ego_yaw=np.full(n, yaw), ego_speed=np.full(n, ego_speed),
                    semantic=observed, visible=np.ones_like(observed, bool))


@pytest.mark.parametrize("yaw, walk", [(np.pi / 2, (0.0, WALK)),        # west, across the ego's path
                                       (0.7, (0.0, WALK)),              # north-west, across it
                                       (-2.3, (WALK, 0.0))])            # north-east, towards the ego
def test_velocities_are_the_world_walk_in_the_ego_axes(yaw, walk):
    """Over 0.3 s the pedestrian moves whole cells in the ego grid (frames 0, 3, 6, 9 sit on
    cell centres), so its world walk read back in the ego's axes is ``walk`` exactly; at a yaw
    off the grid's axes both cos and sin terms carry it."""
    log = _crossing_log(yaw=yaw, walk=walk)
    world_walk = walk[0] * np.array([np.cos(yaw), np.sin(yaw)]) + walk[1] * np.array([np.sin(yaw), -np.cos(yaw)])
    assert np.all(np.abs(world_walk) > 1.0) or yaw == np.pi / 2    # diagonal in the world
    per_frame = pedestrian_velocities(log, range(len(log)), lag_s=0.3)
    for t in range(3):                                        # nothing 0.3 s earlier yet
        blobs, velocity = per_frame[t]
        assert blobs.labels.max() == 1 and np.isnan(velocity).all()
    for t in range(3, len(log), 3):
        np.testing.assert_allclose(per_frame[t][1], [walk], atol=1e-9)
    # one frame asked for alone: the frame 0.3 s before it is read for it
    np.testing.assert_array_equal(pedestrian_velocities(log, [9], lag_s=0.3)[9][1], per_frame[9][1])


def test_a_blob_out_of_walking_reach_has_no_velocity():
    log = _crossing_log()
    log.semantic[6:][log.semantic[6:] == PEDESTRIAN] = ROAD
    far = np.zeros_like(log.semantic[0], bool)
    far[20:22, 100:102] = True                                # 30 m across from where it was
    log.semantic[6:][:, far] = PEDESTRIAN
    assert np.isnan(pedestrian_velocities(log, [7], lag_s=0.3)[7][1]).all()


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


def test_a_pedestrian_walking_towards_an_ego_slower_than_a_walk_scores_nothing():
    """A pedestrian walking down the ego's lane towards it at 1.67 m/s, 5-3 m ahead: with the
    ego waiting at a crossing the closing is the pedestrian's own walk and the channel reads
    nothing; the same walk in front of an ego driving at :data:`EGO_SPEED` is a close call."""
    def walking_towards(ego_speed):
        return pedestrian_conflict(_crossing_log(start_ahead_m=5.0, start_right_m=0.0, ego_speed=ego_speed,
                                                 walk=(WALK, 0.0)))
    assert walking_towards(EGO_SPEED)[3:].max() > 0.5
    assert not walking_towards(0.0).any()


def test_the_frame_score_reads_the_channel_from_the_observed_grids():
    """The default scorer carries the channel among its observed channels (no network pass),
    top 1 over the scored objects: the crossing's closest call."""
    assert ("pedestrian_conflict", False, 1) in CHANNELS and "pedestrian_conflict" in OBSERVED_CHANNELS
    log = _crossing_log()
    stats = FrameScorer().observed_statistics(log)
    np.testing.assert_allclose(stats["pedestrian_conflict"], pedestrian_conflict(log).max((1, 2)), rtol=1e-6)
    assert stats["pedestrian_conflict"].max() > 0
