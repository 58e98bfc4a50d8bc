"""The frame scorer's parameters reach every step that reads them: calibration computes the
scorer's own observed channels, a saved scorer keeps them when the registry holds them (and
refuses to save code it could not find again), and the scored cells and the tail class are
the scorer's, so an experiment passes a variant instead of changing the module."""
import json

import numpy as np
import pytest

from driving.model.predictor import OcclusionPredictor
from driving.schema import VEHICLE
from driving.scoring.frame_score import (CHANNELS, OBSERVED_CHANNELS, UNNAMED_OBSERVED_CHANNELS, FrameScorer,
                                         TailScore, lead_closing, registry_channels, scored_objects)
from driving.scoring.path import ego_lane, ego_path
from driving.scoring.state import ScoringState
from driving.scoring.surprise import result_from_maps, score_log
from driving.warp import cell_offsets
from tests.driving.test_driving_frame_score import META, _channel_maps, _following, _frame_with, _walker_log

LEAD_ONLY = {"lead_closing": OBSERVED_CHANNELS["lead_closing"]}    # a registry channel, not all


def ahead_m(log):
    """A channel read from the grids alone that no registry holds: each cell's distance ahead."""
    forward, _ = cell_offsets(log.meta)
    return np.broadcast_to(forward, log.semantic.shape).astype(np.float32)


def _fitted(scorer):
    rng = np.random.default_rng(2)
    maps = [_channel_maps(rng, 40) for _ in range(2)]
    for m in maps:
        for name, _, _ in scorer.channels:
            m.setdefault(FrameScorer.key(name, False), np.zeros((40, 16, 16), np.float32))
    return scorer.fit(maps)


def test_a_default_scorer_names_its_observed_channels_and_an_older_one_loads_the_same():
    """A saved scorer names its observed channels, the registry's own too, so a bundle does not
    lean on the registry of the code that loads it; a scorer saved without the entry (bundle
    format 8 left out the registry's) loads as the default scorer and scores the same."""
    scorer = _fitted(FrameScorer())
    d = json.loads(json.dumps(scorer.to_dict()))
    assert d["observed_channels"] == ["lead_closing", "path_reach", "pedestrian_conflict"]
    maps = _channel_maps(np.random.default_rng(5), 30)
    loaded = FrameScorer.from_dict(d)
    assert loaded.observed_channels == dict(OBSERVED_CHANNELS) and loaded.channels == scorer.channels
    np.testing.assert_array_equal(loaded.raw(maps), scorer.raw(maps))
    # format 8 left the names out when they were the registry's, then the two channels pinned
    # here: such a bundle holds the five channels before pedestrian_conflict
    five = _fitted(FrameScorer(CHANNELS[:5], observed_channels=registry_channels(UNNAMED_OBSERVED_CHANNELS)))
    older = {k: v for k, v in five.to_dict().items() if k != "observed_channels"}
    loaded = FrameScorer.from_dict(json.loads(json.dumps(older)))
    assert list(loaded.observed_channels) == ["lead_closing", "path_reach"] and loaded.channels == five.channels
    np.testing.assert_array_equal(loaded.raw(maps), five.raw(maps))


def test_a_scorer_with_registry_channels_keeps_them_through_a_bundle():
    scorer = _fitted(FrameScorer(CHANNELS[:4], observed_channels=LEAD_ONLY))
    d = json.loads(json.dumps(scorer.to_dict()))
    assert d["observed_channels"] == ["lead_closing"]
    assert FrameScorer.from_dict(d).observed_channels == LEAD_ONLY
    none = json.loads(json.dumps(_fitted(FrameScorer(CHANNELS[:3], observed_channels={})).to_dict()))
    assert FrameScorer.from_dict(none).observed_channels == {}


def test_a_scorer_with_channels_the_registry_cannot_name_is_refused_when_saved():
    renamed = _fitted(FrameScorer(CHANNELS[:3] + (("closing", False, 1),),
                                  observed_channels={"closing": OBSERVED_CHANNELS["lead_closing"]}))
    with pytest.raises(ValueError, match=r"observed channels \['closing'\].*OBSERVED_CHANNELS"):
        renamed.to_dict()
    other = _fitted(FrameScorer(observed_channels={**OBSERVED_CHANNELS, "lead_closing": ahead_m}))
    with pytest.raises(ValueError, match=r"\['lead_closing'\]"):       # the name, not the function
        other.to_dict()
    cells = _fitted(FrameScorer(scored_objects=lambda observed, meta: observed > 0))
    with pytest.raises(ValueError, match="scored cells"):
        cells.to_dict()
    d = _fitted(FrameScorer(CHANNELS[:4], observed_channels=LEAD_ONLY)).to_dict()
    with pytest.raises(ValueError, match=r"\['ahead'\] are not in"):   # a bundle naming another
        FrameScorer.from_dict({**d, "observed_channels": ["ahead"]})


@pytest.fixture(scope="module")
def calibration_logs(normal_logs):
    return normal_logs(2, 60, seed=31)


def test_calibration_computes_the_scorers_own_observed_channels(load_demo_predictor, calibration_logs,
                                                                tmp_path):
    template = FrameScorer(CHANNELS + (("ahead", False, 1),), min_scale={"ahead": 7.0},
                           observed_channels={**OBSERVED_CHANNELS, "ahead": ahead_m})
    predictor = load_demo_predictor().calibrate(calibration_logs, frame_scorer=template)
    assert not hasattr(template, "tails_")                              # a new scorer was fitted
    scorer = predictor.scoring_.frame_scorer
    assert scorer.channels[-1] == ("ahead", False, 1) and scorer.observed_channels["ahead"] is ahead_m
    tail = scorer.tails_[-1]
    assert tail.scale_ >= 7.0 and len(tail.knots_) > 1                  # its floor; fitted on its maps
    result = score_log(predictor, calibration_logs[0])
    assert "ahead_raw" in result.score_maps
    with pytest.raises(ValueError, match=r"\['ahead'\]"):
        predictor.save(tmp_path / "model")
    assert not (tmp_path / "model").exists()


def test_a_predictor_calibrated_with_registry_channels_scores_the_same_after_loading(
        load_demo_predictor, calibration_logs, normal_logs, tmp_path):
    predictor = load_demo_predictor().calibrate(
        calibration_logs, frame_scorer=FrameScorer(CHANNELS[:4], observed_channels=LEAD_ONLY))
    predictor.save(tmp_path / "model")
    loaded = type(predictor).load(tmp_path / "model")
    assert loaded.scoring_.frame_scorer.observed_channels == LEAD_ONLY
    log = normal_logs(1, 30, seed=32)[0]
    np.testing.assert_array_equal(score_log(loaded, log).score, score_log(predictor, log).score)


def test_a_bundle_saved_without_the_observed_channel_names_loads_and_scores_the_same(
        load_demo_predictor, calibration_logs, normal_logs, tmp_path):
    """A format-8 bundle from before the names were always written (and before
    ``pedestrian_conflict``: calibrated with five channels) loads to the scorer of those five
    channels and scores as the predictor it was saved from."""
    five = FrameScorer(CHANNELS[:5], observed_channels=registry_channels(UNNAMED_OBSERVED_CHANNELS))
    predictor = load_demo_predictor().calibrate(calibration_logs, frame_scorer=five)
    predictor.save(tmp_path / "model")
    config_path = tmp_path / "model" / "config.json"
    config = json.loads(config_path.read_text())
    saved = config["config"]["scoring"]["frame_scorer"]
    assert saved.pop("observed_channels") == list(UNNAMED_OBSERVED_CHANNELS)
    assert [channel[0] for channel in saved["channels"]] == [name for name, _, _ in CHANNELS[:5]]
    config_path.write_text(json.dumps(config))
    older = OcclusionPredictor.load(tmp_path / "model")
    assert list(older.scoring_.frame_scorer.observed_channels) == list(UNNAMED_OBSERVED_CHANNELS)
    assert older.scoring_.frame_scorer.channels == CHANNELS[:5]
    log = normal_logs(1, 30, seed=33)[0]
    np.testing.assert_array_equal(score_log(older, log).score, score_log(predictor, log).score)


def test_the_scored_cells_are_the_scorers(load_demo_predictor, calibration_logs):
    """Fitting, the observed statistics and scoring read the object cells the scorer was given."""
    only_vehicles = lambda observed, meta: scored_objects(observed, meta) & (observed == VEHICLE)
    state = load_demo_predictor().scoring_
    mine = FrameScorer(scored_objects=only_vehicles)
    mine.tails_ = state.frame_scorer.tails_
    log = calibration_logs[0]
    result = result_from_maps(ScoringState(state.normaliser, state.context_prior, mine, None, 1, 1.0),
                              log, {**_raw(log), **{n: f(log) for n, f in OBSERVED_CHANNELS.items()}})
    np.testing.assert_array_equal(result.object_cells, only_vehicles(log.semantic, log.meta))
    assert result.object_cells.sum() < scored_objects(log.semantic, log.meta).sum()
    walker = _walker_log(np.array([30.0, 20.0, 12.0]))                  # a pedestrian in the lane
    assert FrameScorer().observed_statistics(walker)["path_reach"].all()
    nothing = FrameScorer(scored_objects=lambda observed, meta: np.zeros(observed.shape, bool))
    np.testing.assert_array_equal(nothing.observed_statistics(walker)["path_reach"], 0.0)


def _raw(log):
    """Network maps of ``log`` without a network: zeros (the cells are what is under test)."""
    zeros = np.zeros(log.semantic.shape, np.float32)
    return {"revealed": zeros, "object_recon": zeros, "object_forecast": zeros, "object_context": zeros,
            "predicted": log.semantic, "confidence": zeros, "road_layout": zeros, "probabilities": None}


class FloorTail(TailScore):
    """A tail fitted otherwise: every channel's scale at least 100."""

    def fit(self, values):
        super().fit(values)
        self.scale_ = max(self.scale_, 100.0)
        return self


def test_the_tails_are_fitted_with_the_scorers_tail_class():
    scorer = _fitted(FrameScorer(tail=FloorTail))
    assert all(type(t) is FloorTail and t.scale_ >= 100.0 for t in scorer.tails_)
    assert all(type(t) is FloorTail for t in _fitted(scorer.unfitted()).tails_)   # kept by a refit
    loaded = FrameScorer.from_dict(scorer.to_dict())                    # it scores as a TailScore
    x = np.linspace(0, 5, 11)
    for a, b in zip(loaded.tails_, scorer.tails_):
        np.testing.assert_array_equal(a(x), b(x))


def test_a_per_frame_path_and_lane_read_only_their_cells():
    """``scored_objects``' path and ``lead_closing``'s lane: the default is the straight
    corridor, a ``(T, H, W)`` mask restricts each frame on its own."""
    observed = np.concatenate([_frame_with(slice(50, 53), slice(63, 66))] * 2)   # in lane, twice
    np.testing.assert_array_equal(scored_objects(observed, META), scored_objects(observed, META, ego_path(META)))
    path = np.stack([ego_path(META), np.zeros(META.grid_shape, bool)])
    cells = scored_objects(observed, META, path)
    assert cells[0, 50:53, 63:66].all() and not cells[1].any()
    braking = np.r_[np.full(8, 25.0), 25.0 - 7.0 * 0.2 * np.arange(1, 13)]
    following, _ = _following(braking, start_gap=30.0)
    np.testing.assert_array_equal(lead_closing(following, META, ego_lane(META)), lead_closing(following, META))
    assert not lead_closing(following, META, np.zeros(following.shape, bool)).any()
