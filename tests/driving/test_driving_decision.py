"""Calibrated channel scores (frame_score) and the road-layout decision."""
import json

import numpy as np
import pytest

from driving.evaluate import HiddenCellAccumulator, event_latencies, frame_metrics
from driving.schema import LANE_MARKING, ROAD, SIDEWALK, STATIC_OBSTACLE, VEHICLE, DriveLog, LogMeta
from driving.scoring.decision import RoadBelief, RoadThresholdFit, decide, decide_log, layout_mass
from driving.scoring.frame_score import CHANNELS, FrameScorer, TailScore, scored_objects
from driving.warp import PASSED_M


def test_tail_score_ranks_normal_values_and_extends_past_the_largest():
    normal = np.random.default_rng(0).exponential(1.0, 999)
    tail = TailScore().fit(normal)
    x = np.array([-1.0, np.median(normal), np.quantile(normal, 0.99), normal.max(),
                  normal.max() + 1.0, normal.max() + 3.0])
    s = tail(x)
    assert s[0] == 0.0
    assert s[1] == pytest.approx(np.log(2), abs=0.02)                 # P(X >= median) = 1/2
    assert s[2] == pytest.approx(np.log(100), abs=0.2)
    assert np.all(np.diff(s) > 0)
    assert s[5] - s[4] == pytest.approx(2.0 / tail.scale_)            # linear past the max
    np.testing.assert_allclose(TailScore.from_dict(tail.to_dict())(x), s)


def test_a_channel_that_never_moved_on_normal_frames_does_not_raise_the_score():
    """A short calibration in which no lead car closed in: the first one to close in scores as
    the normal frames did, not as an event (the floor alone would set the tail)."""
    tail = TailScore(min_scale=0.02).fit(np.zeros(48))
    x = np.array([0.0, 0.1, 1.0])
    np.testing.assert_array_equal(tail(x), 0.0)
    restored = TailScore.from_dict(json.loads(json.dumps(tail.to_dict(), allow_nan=False)))
    np.testing.assert_array_equal(restored(x), 0.0)


def _channel_maps(rng, n, blob=False):
    """Random maps for every channel the frame score reads (normalised ones on 0..1)."""
    maps = {FrameScorer.key(name, norm):
            rng.uniform(0, 1 if norm else 2, (n, 16, 16)).astype(np.float32)
            for name, norm, _ in CHANNELS}
    if blob:                                   # an obstacle field nothing normal resembles
        maps["object_context_raw"][:, 4:9, 4:9] = 6.0
    return maps


def test_frame_scorer_flags_one_surprising_channel_and_round_trips():
    rng = np.random.default_rng(1)
    scorer = FrameScorer().fit([_channel_maps(rng, 40), _channel_maps(rng, 40)])
    normal = scorer.raw(_channel_maps(rng, 30))
    odd = scorer.tail_scores(_channel_maps(rng, 30, blob=True))
    assert odd[:, 1].min() > normal.max()              # the object-context channel
    assert max(odd[:, 0].max(), odd[:, 2:].max()) < odd[:, 1].min()   # the others stay normal
    again = FrameScorer.from_dict(scorer.to_dict())
    maps = _channel_maps(rng, 5, blob=True)
    np.testing.assert_allclose(again.raw(maps), scorer.raw(maps))


def test_decide_reports_road_layout_once_its_probability_reaches_the_threshold():
    probs = np.zeros((1, 7, 1, 3), np.float32)
    probs[0, [ROAD, LANE_MARKING, VEHICLE], 0, 0] = 0.25, 0.2, 0.55      # road mass 0.45
    probs[0, [ROAD, LANE_MARKING, VEHICLE], 0, 1] = 0.1, 0.35, 0.55      # lane marking likelier
    probs[0, [ROAD, SIDEWALK, STATIC_OBSTACLE], 0, 2] = 0.3, 0.45, 0.25  # road mass 0.3
    assert decide(probs).tolist() == [[[VEHICLE, VEHICLE, SIDEWALK]]]
    assert decide(probs, 0.4).tolist() == [[[ROAD, LANE_MARKING, SIDEWALK]]]
    assert decide(probs, 0.2).tolist() == [[[ROAD, LANE_MARKING, ROAD]]]


def _static_log(n_frames=6, hidden_until=3):
    """The ego stands still; columns 0-2 hidden for the first frames, then seen: road on
    the left (0-1), sidewalk in column 2, road elsewhere."""
    meta = LogMeta(grid_shape=(4, 6), resolution_m=0.5, ego_cell=(3, 3))
    truth = np.full((n_frames, 4, 6), ROAD, np.uint8)
    truth[:, :, 2] = SIDEWALK
    visible = np.ones(truth.shape, bool)
    visible[:hidden_until, :, :3] = False
    semantic = np.where(visible, truth, 255).astype(np.uint8)
    return DriveLog(log_id="still", meta=meta, frame=np.arange(n_frames),
                    timestamp=np.arange(n_frames) * 0.1, ego_x=np.zeros(n_frames),
                    ego_y=np.zeros(n_frames), ego_yaw=np.zeros(n_frames),
                    ego_speed=np.zeros(n_frames), semantic=semantic, visible=visible,
                    semantic_true=truth)


def test_road_belief_averages_a_hidden_cell_over_time_in_world_coordinates():
    log = _static_log()
    mass = np.zeros((6, 4, 6), np.float32)
    mass[:, :, :] = np.array([1.0, 0.0, 1.0, 0.0, 1.0, 0.0])[:, None, None]   # flickers
    belief = RoadBelief(log, alpha=0.5)
    out = np.concatenate([belief.update(0, mass[:2]), belief.update(2, mass[2:])])
    np.testing.assert_allclose(out[:3, 0, 0], [1.0, 0.5, 0.75])     # hidden: filtered
    np.testing.assert_allclose(out[3:, 0, 0], mass[3:, 0, 0])       # visible: its own value
    np.testing.assert_allclose(out[:, 0, 5], mass[:, 0, 5])         # never hidden


def test_road_threshold_is_fitted_on_what_later_frames_saw():
    log = _static_log()
    probs = np.zeros((6, 7, 4, 6), np.float32)
    probs[:, ROAD] = np.where(np.arange(6) == 2, 0.22, 0.37)[None, None]   # sidewalk: 0.22
    probs[:, VEHICLE] = 1.0 - probs[:, ROAD]
    fit = RoadThresholdFit()
    fit.add(log, probs)
    assert fit.best() == pytest.approx(0.35)       # 0.25-0.35 separate them; nearest 0.5
    decided = decide_log(log, probs, fit.best())
    assert (decided[0, :, :2] == ROAD).all() and (decided[0, :, 2] == VEHICLE).all()
    assert RoadThresholdFit().best() is None


def test_accumulator_scores_road_iou_from_the_reported_classes():
    probs = np.zeros((1, 7, 2, 2), np.float32)
    probs[0, VEHICLE] = 0.6
    probs[0, ROAD] = 0.4
    truth = np.full((1, 2, 2), ROAD, np.uint8)
    acc = HiddenCellAccumulator(7, sample=1.0)
    acc.add(probs, truth, np.zeros((1, 2, 2), bool), predicted=np.full((1, 2, 2), ROAD))
    out = acc.metrics([f"c{i}" for i in range(7)])
    assert out["road_iou"] == 1.0 and out["road_iou_argmax"] == 0.0
    assert out["accuracy"] == 1.0 and out["accuracy_argmax"] == 0.0


def test_accumulator_scores_the_road_layout_under_objects():
    probs = np.zeros((1, 7, 2, 2), np.float32)
    probs[0, VEHICLE] = 0.7                       # a car, probably; on road rather than sidewalk
    probs[0, ROAD], probs[0, SIDEWALK] = 0.2, 0.1
    truth = np.full((1, 2, 2), VEHICLE, np.uint8)
    layout = np.full((1, 2, 2), ROAD, np.uint8)
    layout[0, 1, 1] = SIDEWALK
    np.testing.assert_allclose(layout_mass(probs)[0], 2 / 3, rtol=1e-6)
    acc = HiddenCellAccumulator(7, sample=1.0)
    acc.add(probs, truth, np.zeros((1, 2, 2), bool), layout=layout)
    out = acc.metrics([f"c{i}" for i in range(7)])
    assert out["accuracy"] == 1.0                  # on top: the car, as predicted
    assert out["road_layout_iou"] == pytest.approx(3 / 4)   # but road under three of four
    acc = HiddenCellAccumulator(7, sample=1.0)
    acc.add(probs, truth, np.zeros((1, 2, 2), bool), layout=layout,
            road_layout=np.array([[[0.9, 0.8], [0.6, 0.3]]]))
    assert acc.metrics([f"c{i}" for i in range(7)])["road_layout_iou"] == 1.0
    no_layout = HiddenCellAccumulator(7, sample=1.0)
    no_layout.add(probs, truth, np.zeros((1, 2, 2), bool))
    assert "road_layout_iou" not in no_layout.metrics([f"c{i}" for i in range(7)])


def test_frame_metrics_report_latency_and_the_alert_rate_on_normal_frames():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 0], bool)
    alerts = np.array([1, 0, 0, 0, 0, 1, 1, 0], bool)
    out = frame_metrics(labels, np.arange(8.0), alerts)
    assert out["alert_rate_normal"] == pytest.approx(0.2)        # 1 of 5 normal frames
    assert out["detected"] == 1 and out["mean_latency_frames"] == 1.0


def test_event_latencies_give_frames_to_the_first_alert_or_none_per_event():
    labels = np.array([1, 1, 0, 1, 1, 1, 0, 1], bool)
    alerts = np.array([0, 1, 1, 0, 0, 0, 0, 1], bool)
    assert event_latencies(labels, alerts) == [1, None, 0]
    assert event_latencies(np.zeros(3, bool), alerts[:3]) == []


def test_frame_score_reads_only_objects_not_yet_passed():
    meta = LogMeta(grid_shape=(8, 40), resolution_m=1.0, ego_cell=(4, 20))
    observed = np.full((1, 8, 40), ROAD, np.uint8)       # the range reaches 20 m to the sides
    observed[0, :, 19] = VEHICLE                   # a column of vehicle cells, front to back
    scored = scored_objects(observed, meta)[0]
    forward = (meta.ego_cell[0] - np.arange(8)) * meta.resolution_m
    np.testing.assert_array_equal(scored[:, 19], forward > -PASSED_M)
    assert not scored[:, 18].any()                 # road is never scored
