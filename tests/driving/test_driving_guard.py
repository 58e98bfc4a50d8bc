"""The input guard: the training-log profile, one warning line per unlike log (CLI, run
manifest, replay page), and the classes scoring may not predict."""
import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from streamlit.testing.v1 import AppTest

import dashboard
from core.cli import main
from core.errors import BundleError, DataValidationError
from core.runs import load_manifest
from dashboard.workspace import ENV_VAR
from driving.demo import sim_config
from driving.carriageway import (CARRIAGEWAY_FRAMES, carriageway_profile, carriageway_widths,
                                 log_carriageway)
from driving.guard import (CARRIAGEWAY_MARGIN, MIN_SPREAD_LOGS, InputProfile, class_counts,
                           class_shares, fit_input_profile, input_warnings, log_differences,
                           mask_classes, predictable_classes, shifted_classes)
from driving.model.bundle import BUNDLE_VERSION, OLDEST_READ_VERSION
from driving.model.predictor import OcclusionPredictor
from driving.schema import (CLASSES, LANE_MARKING, OFF_ROAD, PEDESTRIAN, ROAD, SIDEWALK, UNOBSERVED,
                            VEHICLE, DriveLog, LogMeta, list_logs, read_log, slice_log, write_log)
from driving.scoring.run import score_logs
from driving.sim.simulator import Simulator


@pytest.fixture(scope="module")
def town_logs():
    """Six normal drives of the tiny town (10 Hz)."""
    config = replace(sim_config("tiny"), anomaly_interval_s=0.0)
    return [Simulator(config, seed=100 + s).simulate(60, log_id=f"town_{s}") for s in range(6)]


def _replace_class(log, old: int, new: int):
    """``log`` with class ``old`` drawn as ``new`` in every grid."""
    grids = {name: np.where(getattr(log, name) == old, new, getattr(log, name)).astype(np.uint8)
             for name in ("semantic", "semantic_true", "layout_true")
             if getattr(log, name) is not None}
    return replace(log, **grids)


def test_a_drive_of_the_training_world_is_like_the_training_logs(town_logs):
    profile = fit_input_profile(town_logs[:2])
    assert profile.rate_hz == pytest.approx((10.0, 10.0))
    assert log_differences(profile, town_logs[2]) == []


def test_rate_speed_and_hidden_share_each_name_their_difference(town_logs):
    profile = fit_input_profile(town_logs[:2])
    log = town_logs[2]
    slow_rate = replace(log, timestamp=log.timestamp * 2)                # 5 Hz
    assert log_differences(profile, slow_rate) == ["frame rate 5 Hz (training 10 Hz)"]
    fast = replace(log, ego_speed=log.ego_speed * 2.5 + 20.0)           # highway speeds
    [reason] = log_differences(profile, fast)
    assert reason.startswith("ego speed ") and re.search(r"; 100% of frames above [0-9.]+ m/s, the highest accepted\)$", reason)
    visible = log.visible.copy()
    visible[:, : visible.shape[1] * 3 // 4] = False                      # mostly blind
    blind = replace(log, visible=visible, semantic=np.where(visible, log.semantic, UNOBSERVED))
    assert any(r.startswith("hidden cells ") for r in log_differences(profile, blind))


def test_an_ego_braking_for_an_event_is_not_another_world_but_a_slower_world_is(town_logs):
    profile = fit_input_profile(town_logs[:2])
    log = town_logs[2]
    braking = log.ego_speed.copy()
    braking[len(braking) // 3: len(braking) * 2 // 3] = 0.0      # stopped for a third of it
    assert log_differences(profile, replace(log, ego_speed=braking)) == []
    slow = replace(log, ego_speed=log.ego_speed * 0.3)            # a slower world all along
    [reason] = log_differences(profile, slow)
    assert reason.startswith("ego speed ") and re.search(r"; median [0-9.]+ m/s, below the lowest accepted [0-9.]+ m/s\)$", reason)


def test_classes_never_seen_in_training_and_training_classes_missing(town_logs):
    no_pedestrians = [_replace_class(log, PEDESTRIAN, ROAD) for log in town_logs[:2]]
    profile = fit_input_profile(no_pedestrians)
    assert not profile.seen_classes[PEDESTRIAN] and profile.seen_classes[SIDEWALK]
    with_pedestrian = town_logs[2].semantic.copy()
    with_pedestrian[0, 0, 0] = PEDESTRIAN
    seen = replace(town_logs[2], semantic=with_pedestrian,
                   visible=with_pedestrian != UNOBSERVED)
    assert log_differences(profile, seen) == ["classes never seen in training: pedestrian"]
    highway = _replace_class(_replace_class(town_logs[2], PEDESTRIAN, ROAD), SIDEWALK, OFF_ROAD)
    assert log_differences(profile, highway) == ["training classes never seen in the log: sidewalk"]
    # a class never seen in training is never predicted; nor one the log's world lacks
    assert not predictable_classes(profile, highway)[PEDESTRIAN]
    world = tuple(c for c in CLASSES if c != "sidewalk")
    declared = replace(highway, meta=replace(highway.meta, world_classes=world))
    assert predictable_classes(profile, declared).tolist() == [
        c not in ("pedestrian", "sidewalk") for c in CLASSES]


def _fewer_vehicles(log):
    """``log`` with the vehicles of all but its last tenth of frames drawn as road: a small
    class's share falls by most of itself while the large classes barely move."""
    keep = np.arange(len(log)) >= len(log) * 9 // 10
    grids = {name: np.where((getattr(log, name) == VEHICLE) & ~keep[:, None, None], ROAD,
                            getattr(log, name)).astype(np.uint8)
             for name in ("semantic", "semantic_true")}
    return replace(log, **grids)


def test_the_profile_holds_how_far_each_training_log_strays_per_class(town_logs):
    one_without_pedestrians = [_replace_class(town_logs[0], PEDESTRIAN, ROAD), *town_logs[1:]]
    profile = fit_input_profile(one_without_pedestrians)
    counts = np.array([class_counts(log) for log in one_without_pedestrians])
    for c in (OFF_ROAD, VEHICLE):
        own = counts[:, c] / counts.sum(1)
        others = (counts[:, c].sum() - counts[:, c]) / (counts.sum() - counts.sum(1))
        assert profile.class_spread[c] == pytest.approx(np.abs(np.log(own / others)).max())
        assert profile.class_share_range[c] == pytest.approx((own.min(), own.max()))
    assert profile.class_spread[PEDESTRIAN] == 0.0          # a training log lacked it
    assert profile.class_spread[VEHICLE] > profile.class_spread[OFF_ROAD] > 0


def test_a_small_class_that_moved_is_named_though_the_distance_stays_small(town_logs):
    profile = fit_input_profile(town_logs[:MIN_SPREAD_LOGS])
    log = _fewer_vehicles(town_logs[MIN_SPREAD_LOGS])
    share = class_shares(class_counts(log))[VEHICLE]
    lo, hi = profile.class_share_range[VEHICLE]
    assert log_differences(profile, log) == [
        f"vehicle {profile.class_share[VEHICLE]:.1%} -> {share:.1%} of observed cells "
        f"(training logs {lo:.1%}-{hi:.1%})"]
    [line] = input_warnings(profile, [town_logs[MIN_SPREAD_LOGS], log])
    assert line.startswith(f"{log.log_id}: unlike the training logs: vehicle ")


# a profile of 6 classes built by hand: the large classes stray up to 0.3 (log ratio) between
# training logs, vehicles 0.1; the logs' shares were up to 0.05 apart
SHARES = (0.30, 0.40, 0.05, 0.15, 0.08, 0.02, 0.0)
HAND_PROFILE = InputProfile(
    rate_hz=(10.0, 10.0), speed_m_s=(0.0, 15.0), hidden_share=(0.0, 0.5), class_share=SHARES,
    class_distance=0.05, class_everywhere=(True,) * 6 + (False,), grid_shape=(10, 10),
    resolution_m=0.5, class_spread=(0.3, 0.3, 0.3, 0.3, 0.1, 0.3, 0.0),
    class_share_range=tuple((share * 0.9, share * 1.1) for share in SHARES))


def _log_of_grids(grids: list) -> DriveLog:
    """A log of hand-drawn 10x10 frames (ego at row 5, column 5, cells of 0.5 m)."""
    semantic = np.stack(grids).astype(np.uint8)
    n = len(grids)
    meta = LogMeta(grid_shape=(10, 10), resolution_m=0.5, ego_cell=(5, 5), rate_hz=10.0)
    return DriveLog(log_id="hand", meta=meta, frame=np.arange(n), timestamp=np.arange(n) / 10.0,
                    ego_x=np.zeros(n), ego_y=np.zeros(n), ego_yaw=np.zeros(n),
                    ego_speed=np.full(n, 5.0), semantic=semantic,
                    visible=semantic != UNOBSERVED)


def _log_of_counts(counts: dict) -> DriveLog:
    """A two-frame 10x10 log, every cell observed, with ``counts`` cells of each class."""
    grid = np.concatenate([np.full(n, c, np.uint8) for c, n in counts.items()]).reshape(10, 10)
    return _log_of_grids([grid, grid])


def test_the_class_shift_rule_on_shares_moves_past_factor_times_spread_plus_slack():
    reference, spread = np.array([0.5, 0.04, 0.02, 0.0]), np.array([0.1, 0.1, 0.1, 0.0])
    checked = np.array([True, True, True, False])
    shares = np.array([0.5, 0.04 * np.exp(0.26), 0.0, 0.3])   # same; moved 0.26; gone; unchecked
    assert list(shifted_classes(shares, reference, spread, checked)) == [1, 2]   # 1.5 x 0.1 + 0.1
    with np.errstate(all="raise"):                           # a share of 0 warns of nothing
        assert list(shifted_classes(shares, reference, spread, checked, (2.0, 0.1))) == [2]


def test_a_class_named_by_its_own_reason_is_not_named_again_by_the_distance():
    # vehicles 8 % -> 30 % of the cells, taken from every other class by about a quarter of
    # itself: only the vehicles pass their own margin, the distance (0.22) passes its own
    more_vehicles = _log_of_counts({OFF_ROAD: 23, ROAD: 30, LANE_MARKING: 4, SIDEWALK: 11,
                                    VEHICLE: 30, PEDESTRIAN: 2})
    assert log_differences(HAND_PROFILE, more_vehicles) == [
        "vehicle 8.0% -> 30.0% of observed cells (training logs 7.2%-8.8%)",
        "class shares differ (road 40% -> 30%, off_road 30% -> 23%; distance 0.22, "
        "training logs up to 0.05)"]
    # vehicles up, road down, nothing else moved: both named by their own reasons, the
    # distance names no class (not one that kept its share)
    road_to_vehicles = _log_of_counts({OFF_ROAD: 30, ROAD: 18, LANE_MARKING: 5, SIDEWALK: 15,
                                       VEHICLE: 30, PEDESTRIAN: 2})
    [line] = input_warnings(HAND_PROFILE, [road_to_vehicles])
    assert line == ("hand: unlike the training logs: "
                    "road 40.0% -> 18.0% of observed cells (training logs 36.0%-44.0%); "
                    "vehicle 8.0% -> 30.0% of observed cells (training logs 7.2%-8.8%); "
                    "class shares differ (distance 0.22, training logs up to 0.05)")


def test_a_profile_round_trips_with_its_class_spread(town_logs):
    profile = fit_input_profile(town_logs[:MIN_SPREAD_LOGS])
    saved = json.loads(json.dumps(profile.to_dict()))
    assert InputProfile.from_dict(saved) == profile
    assert len(profile.class_spread) == len(profile.class_share_range) == len(CLASSES)


def test_fewer_training_logs_than_the_spread_needs_turn_the_per_class_check_off(town_logs):
    profile = fit_input_profile(town_logs[:MIN_SPREAD_LOGS - 1])
    assert profile.class_spread == ()
    assert log_differences(profile, _fewer_vehicles(town_logs[MIN_SPREAD_LOGS])) == []


def test_one_warning_line_per_unlike_log_naming_its_file(town_logs, tmp_path):
    profile = fit_input_profile(town_logs[:2])
    like = replace(town_logs[2], path=str(tmp_path / "like.parquet"))
    unlike = replace(town_logs[2], path=str(tmp_path / "unlike.parquet"),
                     timestamp=town_logs[2].timestamp * 2, ego_speed=town_logs[2].ego_speed + 30)
    [line] = input_warnings(profile, [like, unlike])
    assert line.startswith(f"{tmp_path / 'unlike.parquet'}: unlike the training logs: frame "
                           "rate 5 Hz (training 10 Hz); ego speed ")


def test_masked_classes_get_no_probability_and_the_rest_sum_to_one():
    rng = np.random.default_rng(0)
    probabilities = rng.random((2, len(CLASSES), 3, 3)).astype(np.float32)
    probabilities[0, :, 0, 0] = 0.0
    probabilities[0, SIDEWALK, 0, 0] = 1.0                    # all mass on a masked class
    allowed = np.ones(len(CLASSES), bool)
    allowed[[SIDEWALK, PEDESTRIAN]] = False
    masked = mask_classes(probabilities.copy(), allowed)
    assert (masked[:, ~allowed] == 0).all()
    assert np.allclose(masked.sum(1), 1.0)
    assert np.allclose(masked[0, allowed, 0, 0], 1.0 / allowed.sum())


def _no_sidewalk_log(path: Path, out: Path, declare: bool) -> Path:
    """A replay log redrawn without sidewalks, its world declared so or not."""
    log = _replace_class(read_log(path), SIDEWALK, OFF_ROAD)
    if declare:
        log = replace(log, meta=replace(log.meta, world_classes=tuple(
            c for c in CLASSES if c != "sidewalk")))
    return write_log(log, out / path.name)


def _predicted_hidden(run_dir: Path, log) -> np.ndarray:
    cells = pq.read_table(run_dir / "cells" / f"{log.log_id}.parquet")
    predicted = np.stack([np.asarray(v) for v in cells.column("predicted").to_pylist()])
    return predicted.reshape(log.semantic.shape)[~log.visible]


def test_scoring_never_predicts_a_class_the_log_world_lacks(demo_run, demo_model_dir, tmp_path, capsys):
    workspace, _ = demo_run
    model = demo_model_dir
    assert OcclusionPredictor.load(model).input_profile_.rate_hz == pytest.approx((10.0, 10.0))
    source = list_logs(workspace / "data" / "driving")[0]
    (tmp_path / "plain").mkdir()
    (tmp_path / "declared").mkdir()
    plain = _no_sidewalk_log(source, tmp_path / "plain", declare=False)
    declared = _no_sidewalk_log(source, tmp_path / "declared", declare=True)
    assert read_log(declared).meta.world_classes == tuple(c for c in CLASSES if c != "sidewalk")

    with pytest.warns(UserWarning):
        score_logs(model, plain, tmp_path / "run_plain", top_frames=0)
    undeclared = _predicted_hidden(tmp_path / "run_plain", read_log(plain))
    assert (undeclared == SIDEWALK).any()        # the model still believes in sidewalks

    try:
        main(["driving", "score", "--model", str(model), "--logs", str(declared), "--out",
              str(tmp_path / "run"), "--top-frames", "0", "--quiet"])
    except SystemExit as stop:
        assert not stop.code
    err = capsys.readouterr().err
    warning_lines = [line for line in err.splitlines() if line.startswith("warning:")]
    assert warning_lines == [f"warning: {declared.resolve()}: unlike the training logs: "
                             "training classes never seen in the log: sidewalk"]
    assert (_predicted_hidden(tmp_path / "run", read_log(declared)) != SIDEWALK).all()
    summary = load_manifest(tmp_path / "run")["summary"]
    assert summary["warnings"] == [warning_lines[0].removeprefix("warning: ")]


def test_a_moved_class_share_reaches_the_run_summary(demo_run, demo_model_dir, normal_logs,
                                                     tmp_path):
    workspace, _ = demo_run
    # the tiny demo trains on fewer logs than the per-class check needs: its profile is
    # refitted on enough drives of the same town
    model = OcclusionPredictor.load(demo_model_dir)
    model.input_profile_ = fit_input_profile(normal_logs(MIN_SPREAD_LOGS, 60, seed=41))
    model.save(tmp_path / "model")
    source = list_logs(workspace / "data" / "driving")[1]
    path = write_log(_fewer_vehicles(read_log(source)), tmp_path / "logs" / source.name)
    with pytest.warns(UserWarning, match="unlike the training logs: vehicle "):
        score_logs(tmp_path / "model", path, tmp_path / "run", top_frames=0)
    [line] = load_manifest(tmp_path / "run")["summary"]["warnings"]
    assert re.fullmatch(rf".*{source.name}: unlike the training logs: vehicle [0-9.]+% -> "
                        r"[0-9.]+% of observed cells \(training logs [0-9.]+%-[0-9.]+%\)", line)


def test_the_replay_page_shows_the_warning_banner(demo_run, demo_model_dir, tmp_path, monkeypatch):
    workspace, _ = demo_run
    model = demo_model_dir
    source = list_logs(workspace / "data" / "driving")[0]
    log = read_log(source)
    slow = replace(log, timestamp=log.timestamp * 2)           # 5 Hz
    path = write_log(slow, tmp_path / "logs" / source.name)
    ws = tmp_path / "ws"
    with pytest.warns(UserWarning, match="frame rate 5 Hz"):
        score_logs(model, path, ws / "runs" / "driving" / "slow", top_frames=0)
    monkeypatch.setenv(ENV_VAR, str(ws))
    app = Path(dashboard.__file__).with_name("app.py")
    at = AppTest.from_file(str(app), default_timeout=60).run()
    at.switch_page("views/driving.py").run()
    assert not at.exception, [e.value for e in at.exception]
    banners = [re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", w.value) for w in at.warning]  # ui.plain
    assert any("unlike the training logs: frame rate 5 Hz (training 10 Hz)" in b for b in banners)


def test_a_bundle_without_the_profile_is_refused_with_retrain(demo_model_dir, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(demo_model_dir, model)
    config = json.loads((model / "config.json").read_text())
    assert config["config"]["input_profile"]["rate_hz"] == pytest.approx([10.0, 10.0])
    del config["config"]["input_profile"]
    config["format_version"] = 2                    # what bundles before the guard held
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match=f"format 2 is older than this unmask reads "
                                          f"\\({OLDEST_READ_VERSION}\\); retrain it"):
        OcclusionPredictor.load(model)


def test_batch_score_warns_once_per_unlike_log_on_the_cli_and_in_its_summary(
        demo_run, demo_model_dir, tmp_path, capsys):
    workspace, _ = demo_run
    log = read_log(list_logs(workspace / "data" / "driving")[0])
    write_log(log, tmp_path / "logs" / "like.parquet")
    slow = write_log(replace(log, log_id="slow", timestamp=log.timestamp * 2),    # 5 Hz
                     tmp_path / "logs" / "slow.parquet")
    try:
        main(["driving", "batch-score", "--model", str(demo_model_dir), "--logs",
              str(tmp_path / "logs"), "--out", str(tmp_path / "frames.parquet")])
    except SystemExit as stop:
        assert not stop.code
    out, err = capsys.readouterr()
    line = f"{slow.resolve()}: unlike the training logs: frame rate 5 Hz (training 10 Hz)"
    assert [w for w in err.splitlines() if w.startswith("warning:")] == [f"warning: {line}"]
    summary = json.loads(out.splitlines()[-1])
    assert summary["logs"] == 2 and summary["warnings"] == [line]
    assert "input_warning" not in pq.read_schema(tmp_path / "frames.parquet").names


def test_a_bundle_from_before_the_class_spread_is_refused_with_retrain(demo_model_dir, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(demo_model_dir, model)
    config = json.loads((model / "config.json").read_text())
    for name in ("class_spread", "class_share_range"):
        del config["config"]["input_profile"][name]
    config["format_version"] = 7                    # what bundles before the per-class check held
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match="format 7 is older than this unmask reads .*retrain it"):
        OcclusionPredictor.load(model)


def test_a_bundle_of_format_8_loads_and_compares_logs_without_the_carriageway_check(
        demo_model_dir, town_logs, tmp_path):
    """Bundles saved before the carriageway check (format 8) are read, not refused: their
    profile has no width, so that one check is off and the others speak as before. (The
    tiny demo trains on too few logs for the check; its bundle gets a five-log profile.)"""
    profile = fit_input_profile(town_logs[:5]).to_dict()
    for name, version in (("current", BUNDLE_VERSION), ("older", 8)):
        shutil.copytree(demo_model_dir, tmp_path / name)
        config = json.loads((tmp_path / name / "config.json").read_text())
        assert config["format_version"] == BUNDLE_VERSION == 9
        config["config"]["input_profile"] = (
            profile if version == BUNDLE_VERSION
            else {k: v for k, v in profile.items() if not k.startswith("carriageway")})
        config["format_version"] = version
        (tmp_path / name / "config.json").write_text(json.dumps(config))
    current, older = (OcclusionPredictor.load(tmp_path / name) for name in ("current", "older"))
    assert (current.input_profile_.carriageway_m, older.input_profile_.carriageway_m) == (11.0, None)
    wide = _wider_road(town_logs[5])
    reasons = log_differences(current.input_profile_, wide)
    assert reasons[0].startswith("carriageway 16.0 m")
    assert log_differences(older.input_profile_, wide) == reasons[1:]


def test_a_training_log_that_shows_nothing_is_refused_by_name(town_logs):
    blind = replace(town_logs[1], visible=np.zeros_like(town_logs[1].visible),
                    semantic=np.full_like(town_logs[1].semantic, UNOBSERVED))
    with pytest.raises(DataValidationError, match=f"{blind.log_id}: no observed cell"):
        fit_input_profile([town_logs[0], blind])


def test_training_logs_share_one_frame_rate_within_the_guards_margin(town_logs):
    """One rate: within RATE_MARGIN (1.25x) two logs' rates are the same rate (imported
    scenes' median rates differ a little); at twice the period they are refused by name."""
    jittered = replace(town_logs[1], timestamp=town_logs[1].timestamp * 1.2)        # 8.3 Hz
    assert fit_input_profile([town_logs[0], jittered]).rate_hz == pytest.approx((10 / 1.2, 10.0))
    halved = replace(town_logs[1], timestamp=town_logs[1].timestamp * 2.0)          # 5 Hz
    with pytest.raises(DataValidationError, match=r"^training logs at different frame rates: "
                                                  r"town_1 at 5 Hz, town_0 at 10 Hz;"):
        fit_input_profile([town_logs[0], halved])


def test_the_carriageway_width_runs_kerb_to_kerb_through_the_ego_and_needs_both_kerbs_seen():
    road = np.full((10, 10), OFF_ROAD, np.uint8)
    road[:, 2:8] = ROAD                      # 6 cells of road, a lane line, a car on it
    road[:, 4] = LANE_MARKING
    road[6:8, 6] = VEHICLE
    wider = road.copy()
    wider[:, 1] = ROAD                       # 7 cells, but one kerb hidden on some rows
    wider[:3, 0] = UNOBSERVED
    hidden = road.copy()
    hidden[:, 0:3] = UNOBSERVED              # no kerb seen on the left: not measured
    widths = carriageway_widths(_log_of_grids([road, wider, hidden]), rows=4)
    assert widths.tolist() == [3.0, 3.5]     # metres; the third frame has no measured row
    sidewalk = road.copy()
    sidewalk[:, 7] = SIDEWALK                # a kerb closer to the ego
    assert carriageway_widths(_log_of_grids([sidewalk]), rows=1).tolist() == [2.5]
    for col in (0, 9):                       # the ego at the grid's side: no kerb seen beyond it
        edge = _log_of_grids([road])
        edge = replace(edge, meta=replace(edge.meta, ego_cell=(5, col)))
        assert carriageway_widths(edge).size == 0


def _wider_road(log):
    """``log`` with its sidewalks paved over: the carriageway reaches the sidewalks' outer
    edge (16 m across where the town's road is 11 m kerb to kerb)."""
    return _replace_class(log, SIDEWALK, ROAD)


def test_a_road_of_another_width_is_named_and_the_training_road_is_not(town_logs):
    profile = fit_input_profile(town_logs[:5])
    assert profile.carriageway_m == pytest.approx(11.0)
    assert 0 < profile.carriageway_spread < 0.1        # the tiny town's logs agree to a cell
    assert not any("carriageway" in r for r in log_differences(profile, town_logs[5]))
    [line] = input_warnings(profile, [_wider_road(town_logs[5])])
    assert ("carriageway 16.0 m wide at the ego (training 11.0 m: another number or width of "
            "lanes; to fit such a road, fine-tune on a few of its normal logs: unmask driving "
            "train --init MODEL --epochs 2 --lr 0.001)") in line


def test_the_carriageway_check_moves_past_factor_times_spread_plus_slack():
    """A width just inside ``exp(factor * spread + slack)`` times the training width is the
    training road; just past it, another."""
    factor, slack = CARRIAGEWAY_MARGIN
    lanes = (np.arange(10) >= 1) & (np.arange(10) <= 8)
    road = _log_of_grids([np.where(lanes, ROAD, OFF_ROAD)[None].repeat(10, 0)] * 30)
    width = float(carriageway_widths(road)[0])          # 4.0 m: 8 cells to the verge
    spread = 0.05
    limit = factor * spread + slack
    for inside, warns in ((0.99, False), (1.01, True)):
        profile = replace(HAND_PROFILE, carriageway_m=width / np.exp(inside * limit),
                          carriageway_spread=spread)
        assert any(r.startswith("carriageway 4.0 m") for r in log_differences(profile, road)) is warns


def test_fewer_training_logs_or_measured_frames_than_needed_turn_the_carriageway_check_off(town_logs):
    assert fit_input_profile(town_logs[:MIN_SPREAD_LOGS - 1]).carriageway_m is None
    short = [slice_log(log, 0, CARRIAGEWAY_FRAMES - 1) for log in town_logs[:5]]
    assert carriageway_profile(short, MIN_SPREAD_LOGS) == (None, None)
    profile = fit_input_profile(town_logs[:5])
    assert log_carriageway(_wider_road(town_logs[5]))[0] == pytest.approx(16.0)
    few = slice_log(_wider_road(town_logs[5]), 0, CARRIAGEWAY_FRAMES - 1)
    assert log_carriageway(few)[0] is None
    assert not any("carriageway" in r for r in log_differences(profile, few))


def test_a_profile_round_trips_with_its_carriageway_and_one_of_format_8_reads_without(town_logs):
    profile = fit_input_profile(town_logs[:5])
    assert InputProfile.from_dict(json.loads(json.dumps(profile.to_dict()))) == profile
    older = {k: v for k, v in profile.to_dict().items() if not k.startswith("carriageway")}
    assert InputProfile.from_dict(older).carriageway_m is None
    assert log_differences(InputProfile.from_dict(older), _wider_road(town_logs[5])) == [
        "training classes never seen in the log: sidewalk"]
