"""The frame score reads what matters to the ego: its path, not the edge of the range;
how fast the ego closes in on the lead car; how soon it reaches a pedestrian or an
obstacle in its lane."""
import numpy as np
import pytest

from core.calibration import ScoreCalibration
from driving.schema import PEDESTRIAN, ROAD, STATIC_OBSTACLE, UNOBSERVED, VEHICLE, DriveLog, LogMeta
from driving.scoring.frame_score import (CHANNELS, MIN_SCALE, OBSERVED_CHANNELS, FrameScorer, lead_closing,
                                         path_reach, scored_objects, trend)
from driving.scoring.path import EGO_FRONT_M, PATH_HALF_WIDTH_M
from driving.scoring.surprise import causal_mean, raw_maps
from driving.warp import cell_offsets

META = LogMeta(grid_shape=(128, 128), resolution_m=0.5, ego_cell=(80, 64), rate_hz=5.0)


def _frame_with(rows, cols, cls=STATIC_OBSTACLE, range_m=35.0):
    forward, right = cell_offsets(META)
    observed = np.where(np.hypot(forward, right) <= range_m, ROAD, UNOBSERVED).astype(np.uint8)
    observed[rows, cols] = cls
    return observed[None]


def test_objects_in_the_path_count_and_far_to_the_side_or_at_the_range_edge_do_not():
    in_lane = _frame_with(slice(50, 53), slice(63, 66))                  # 14 m ahead, in lane
    assert scored_objects(in_lane, META)[0, 50:53, 63:66].all()
    beside = int(64 + (PATH_HALF_WIDTH_M + 3.0) / 0.5)                  # three lanes over
    off_path = _frame_with(slice(50, 53), slice(beside, beside + 3))
    assert not scored_objects(off_path, META).any()
    edge = _frame_with(slice(12, 14), slice(63, 66))                    # 33-34 m: the range's edge
    assert not scored_objects(edge, META).any()
    behind = _frame_with(slice(90, 93), slice(63, 66))                  # passed
    assert not scored_objects(behind, META).any()


def _following(lead_speed, ego_speed=25.0, start_gap=20.0):
    """Frames of a lead car ``lead_speed`` (m/s per frame) ahead of an ego at constant speed."""
    dt = 1.0 / META.rate_hz
    gap = start_gap + np.cumsum(np.r_[0.0, (np.asarray(lead_speed[:-1]) - ego_speed) * dt])
    frames = []
    for g in gap:
        row = int(round(META.ego_cell[0] - g / META.resolution_m))
        frames.append(_frame_with(slice(row - 9, row), slice(62, 66), VEHICLE)[0])
    return np.stack(frames), np.full(len(gap), ego_speed)


def _closing(observed):
    return lead_closing(observed, META).reshape(len(observed), -1).max(1)


def test_lead_closing_grows_while_the_lead_brakes_and_stays_low_when_following():
    steady, _ = _following(np.full(20, 25.0))
    assert _closing(steady).max() < 0.05                              # cell rounding only
    braking = np.r_[np.full(8, 25.0), 25.0 - 7.0 * 0.2 * np.arange(1, 13)]   # 7 m/s^2
    observed, _ = _following(braking, start_gap=30.0)
    closing = _closing(observed)
    assert (closing[:9] < 0.05).all()
    assert (np.diff(closing[12:]) > 0).all()                          # the gap shrinks ever faster
    assert closing[-1] > 0.5                                          # ~15 m/s over ~10 m


def test_lead_closing_gives_no_value_when_another_car_cuts_in():
    lead = _following(np.full(12, 25.0), start_gap=30.0)[0]
    cut_in = _following(np.full(12, 25.0), start_gap=12.0)[0]
    observed = np.concatenate([lead[:6], cut_in[6:]])                  # the gap drops 18 m at once
    assert _closing(observed).max() < 0.05


def test_trend_is_the_least_squares_slope_of_the_last_frames():
    values = np.array([0.0, 1.0, 2.0, 4.0, np.nan, 5.0, 6.0, 7.0])
    slope = trend(values, 3, 0.5)
    np.testing.assert_allclose(slope[:2], np.nan)
    np.testing.assert_allclose(slope[2:4], [2.0, 3.0])                  # per second
    assert np.isnan(slope[4:7]).all()                                 # a window holding a NaN
    assert slope[7] == 2.0


# each surprise map the frame score reads, and whether it reads the normalised one
READ_MAPS = {"revealed": True, "object_context": False, "object_recon": False,
             "lead_closing": False, "path_reach": False, "pedestrian_conflict": False}


def _surprise_maps(rng, n):
    """``(raw, normalised)`` surprise maps of ``n`` normal frames, as
    ``surprise.result_from_maps`` hands them to the scorer."""
    def level():
        return rng.uniform(0.0, 1.0, (n, 16, 16)).astype(np.float32)

    return {name: level() for name in READ_MAPS}, {name: level() for name in READ_MAPS}


def test_each_channel_reads_its_own_map_and_only_its_surprise_lifts_the_frame_score():
    """A frame whose only surprise is in one map the score reads raises that channel's tail
    score and the frame score; the same surprise in the other version of that map (raw
    instead of normalised, or back) or off the object cells changes nothing. The frame score
    reads the lead car's closing speed (``lead_closing``), no deceleration map (a channel
    reading a map the passes do not make fails here on the missing map)."""
    rng = np.random.default_rng(0)
    objects = np.zeros((1, 16, 16), bool)
    objects[:, 2:9, 2:9] = True
    scorer = FrameScorer()
    scorer.fit([scorer.channel_maps(*_surprise_maps(rng, 40), objects) for _ in range(3)])
    raw, normalised = _surprise_maps(rng, 10)
    calm = scorer.tail_scores(scorer.channel_maps(raw, normalised, objects))
    for i, (name, reads_normalised) in enumerate(READ_MAPS.items()):
        for source, read in ((normalised, reads_normalised), (raw, not reads_normalised)):
            for cells, on_objects in (((slice(3, 8), slice(3, 8)), True),
                                      ((slice(10, 15), slice(10, 15)), False)):
                kept = source[name].copy()
                source[name][(slice(None),) + cells] = 50.0
                tails = scorer.tail_scores(scorer.channel_maps(raw, normalised, objects))
                source[name][:] = kept
                if read and on_objects:
                    assert tails[:, i].min() > calm.max(), name
                    assert (tails.max(1) == tails[:, i]).all(), name   # it sets the frame score
                    np.testing.assert_array_equal(np.delete(tails, i, 1), np.delete(calm, i, 1))
                else:
                    np.testing.assert_array_equal(tails, calm)


NETWORK_NATS = ("object_context", "object_recon")   # the channels read in raw nats


def _channel_maps(rng, n, hotter=0.0):
    """Channel maps of ``n`` normal frames (each frame's level varies); ``hotter`` raises
    every channel of every frame (a log from another town)."""
    shape = (n, 16, 16)

    def channel(spread):
        level = rng.normal(1.0 + hotter, 0.3, (n, 1, 1))
        return (level + rng.uniform(0, spread, shape)).astype(np.float32)

    return {FrameScorer.key(name, norm): channel(1.0 if name in NETWORK_NATS else 0.5)
            for name, norm, _ in CHANNELS}


def test_the_lead_channel_is_fitted_on_whole_logs_not_only_on_the_calibration_tails():
    """Closing in on the car ahead is rare in normal driving: the calibration tails may hold
    none of it, the whole training logs do. The lead channel reads no network output, so
    its tail is fitted on the whole logs."""
    rng = np.random.default_rng(0)
    tails = []
    for _ in range(2):
        maps = _channel_maps(rng, 40)
        maps["lead_closing_raw"][:] = 0.0                               # no closing in the tails
        tails.append(maps)
    whole = [{"lead_closing": np.r_[np.zeros(150), rng.exponential(0.05, 50)],
              "path_reach": np.zeros(200), "pedestrian_conflict": np.zeros(200)} for _ in range(2)]
    lead = [name for name, _, _ in CHANNELS].index("lead_closing")
    fitted_tails = FrameScorer().fit(tails, whole).tails_
    from_whole = fitted_tails[lead]
    assert from_whole.knots_[-1] == max(w["lead_closing"].max() for w in whole)
    assert from_whole(np.array([0.05]))[0] < 3.0                      # a usual closing-in: not news
    assert from_whole(np.array([1.0]))[0] > 8.0                       # a second to impact: news
    for fitted, alone in zip(fitted_tails[:lead], FrameScorer().fit(tails).tails_[:lead]):
        np.testing.assert_array_equal(fitted.knots_, alone.knots_)   # the other channels: tails only


def test_a_candidate_channel_is_passed_to_the_scorer_and_the_defaults_stay_as_they_are():
    """An experiment passes its channel's tail floor and observed-grid function to the
    scorer; the frame score's own registries cannot be changed, and a scorer with a channel
    they do not hold cannot be saved."""
    rng = np.random.default_rng(1)
    channels = CHANNELS + (("ahead", False, 1),)
    tails = [_channel_maps(rng, 40) | {"ahead_raw": np.zeros((40, 16, 16), np.float32)} for _ in range(2)]
    whole = [{"lead_closing": rng.exponential(0.05, 200), "path_reach": np.zeros(200),
              "pedestrian_conflict": np.zeros(200), "ahead": rng.uniform(0.0, 0.3, 200)} for _ in range(2)]
    candidate = FrameScorer(channels, min_scale={**MIN_SCALE, "ahead": 5.0},
                            observed_channels={**OBSERVED_CHANNELS, "ahead": lambda log: None})
    fitted = candidate.fit(tails, whole).tails_[-1]
    assert fitted.knots_[-1] == max(w["ahead"].max() for w in whole)   # on the whole logs
    assert fitted.scale_ == 5.0                                         # at its floor
    plain = FrameScorer(channels).fit(tails, whole).tails_[-1]          # not an observed channel:
    assert plain.knots_.tolist() == [0.0] and plain.scale_ == np.inf    # the tails' zeros
    assert "ahead" not in MIN_SCALE and "ahead" not in OBSERVED_CHANNELS
    with pytest.raises(TypeError):
        MIN_SCALE["ahead"] = 5.0
    with pytest.raises(ValueError, match=r"observed channels \['ahead'\]"):   # code: not state
        candidate.to_dict()


def test_raw_maps_compute_the_observed_channels_passed(load_demo_predictor, normal_logs):
    predictor = load_demo_predictor()
    log = normal_logs(1, 30, seed=23)[0]
    maps = raw_maps(predictor, log, observed_channels={"ones": lambda log: np.ones(log.semantic.shape)})
    np.testing.assert_array_equal(maps["ones"], 1.0)
    assert "lead_closing" not in maps and "path_reach" not in maps
    default = raw_maps(predictor, log)
    np.testing.assert_array_equal(default["lead_closing"], lead_closing(log.semantic, log.meta))
    np.testing.assert_array_equal(default["path_reach"], path_reach(log.semantic, log.ego_speed, log.meta))


def test_observed_statistics_read_the_lead_channel_of_a_whole_log():
    braking = np.r_[np.full(8, 25.0), 25.0 - 7.0 * 0.2 * np.arange(1, 13)]
    observed, speed = _following(braking, start_gap=30.0)
    log = _drive(observed, speed, "follow")
    stats = FrameScorer().observed_statistics(log)
    assert set(stats) == {"lead_closing", "path_reach", "pedestrian_conflict"}
    np.testing.assert_allclose(stats["lead_closing"], _closing(observed), rtol=1e-6)
    np.testing.assert_array_equal(stats["path_reach"], 0.0)           # a car: lead_closing's


def _walker_log(ahead_m, right_m=0.0, speed=8.0, cls=PEDESTRIAN):
    """A log of one pedestrian (or obstacle) ``ahead_m[t]`` metres ahead of the ego's centre,
    ``right_m`` to its right, the ego at ``speed`` m/s."""
    frames = []
    for a in ahead_m:
        row = int(round(META.ego_cell[0] - a / META.resolution_m))
        col = int(round(META.ego_cell[1] + right_m / META.resolution_m))
        frames.append(_frame_with(slice(row - 1, row + 1), slice(col - 1, col + 1), cls)[0])
    observed = np.stack(frames)
    return _drive(observed, np.full(len(observed), speed), "walk")


def _drive(observed, speed, log_id):
    """A 5 Hz log of ``observed`` grids, the ego standing still at ``speed`` m/s per frame
    (the frame score reads the grids and the speed, not the poses)."""
    n = len(observed)
    return DriveLog(log_id=log_id, meta=META, frame=np.arange(n), timestamp=np.arange(n) / 5.0,
                    ego_x=np.zeros(n), ego_y=np.zeros(n), ego_yaw=np.zeros(n), ego_speed=speed,
                    semantic=observed, visible=observed != UNOBSERVED)


def test_path_reach_is_the_ego_speed_over_the_distance_to_an_object_in_its_lane():
    ahead = np.array([30.0, 20.0, 12.0, 8.0])
    log = _walker_log(ahead)
    reach = path_reach(log.semantic, log.ego_speed, META).reshape(len(ahead), -1).max(1)
    from_bumper = ahead - EGO_FRONT_M                                 # its nearest row: ahead_m
    np.testing.assert_allclose(reach, 8.0 / from_bumper, rtol=1e-6)    # an inverse time to reach
    assert (np.diff(reach) > 0).all()
    beside = _walker_log(ahead, right_m=4.0)                            # on the sidewalk
    assert not path_reach(beside.semantic, beside.ego_speed, META).any()
    car = _walker_log(ahead, cls=VEHICLE)                               # a car drives on
    assert not path_reach(car.semantic, car.ego_speed, META).any()
    debris = _walker_log(ahead, cls=STATIC_OBSTACLE)
    np.testing.assert_allclose(path_reach(debris.semantic, debris.ego_speed, META),
                               path_reach(log.semantic, log.ego_speed, META))


def test_a_pedestrian_stepping_into_the_lane_close_ahead_outscores_normal_crossings():
    """Normal drives see pedestrians in the ego's lane only far ahead (crossing at a junction
    the ego has not reached); the maps of the network find nothing odd. A pedestrian in the
    lane a second ahead is the frame's news through the path_reach channel alone."""
    rng = np.random.default_rng(0)
    tails = [_channel_maps(rng, 40) for _ in range(3)]

    def crossing():
        return _walker_log(np.r_[np.full(30, 40.0), rng.uniform(24.0, 32.0, 20)])

    scorer = FrameScorer()
    scorer.fit(tails, [scorer.observed_statistics(crossing()) for _ in range(3)])
    new_drive = crossing()
    maps = _channel_maps(rng, len(new_drive))
    maps["path_reach_raw"] = path_reach(new_drive.semantic, new_drive.ego_speed, META)
    normal = scorer.raw(maps)
    step_out = _walker_log(np.array([14.0, 11.0, 8.0]))
    maps = _channel_maps(rng, 3)
    maps["path_reach_raw"] = path_reach(step_out.semantic, step_out.ego_speed, META)
    tails_of_event = scorer.tail_scores(maps)
    reach = [name for name, _, _ in CHANNELS].index("path_reach")
    assert tails_of_event[:, reach].min() > normal.max()
    assert (scorer.raw(maps) == tails_of_event[:, reach]).all()        # the path channel decides


def _scores(scorer, maps):
    return causal_mean(scorer.raw(maps), 3)


def test_a_brief_event_alerts_and_a_calm_drive_does_not():
    rng = np.random.default_rng(0)
    scorer = FrameScorer().fit([_channel_maps(rng, 60) for _ in range(4)])
    calibration = np.concatenate([_scores(scorer, _channel_maps(rng, 60)) for _ in range(4)])
    threshold = ScoreCalibration(contamination=0.05).fit(calibration).threshold_
    calm = _scores(scorer, _channel_maps(rng, 400, hotter=-0.3))
    assert (calm > threshold).mean() <= 0.05           # a calm drive is not lifted to nominal
    event = _channel_maps(rng, 400, hotter=-0.3)
    event["object_context_raw"][300:310, 4:9, 4:9] = 8.0       # a brief event still alerts
    assert (_scores(scorer, event)[302:310] > threshold).all()
