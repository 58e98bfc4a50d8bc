"""Calibration keeps every frame's surprise maps for its leave-one-log-out refits, so it is
bounded by ``calibration_max_frames``: over the budget each log gives one seeded window;
at or under it every frame of every log is used, as before the budget existed."""
import json

import numpy as np
import pytest

from core.errors import DataValidationError
import driving.model.predictor as predictor_module
from driving.model.predictor import OcclusionPredictor
from driving.schema import slice_log

N_LOGS, FRAMES = 4, 120


@pytest.fixture(scope="module")
def logs(normal_logs):
    return normal_logs(N_LOGS, FRAMES, seed=31)


def with_budget(load_demo_predictor, budget: int, random_state: int = 0) -> OcclusionPredictor:
    predictor = load_demo_predictor()
    predictor.calibration_max_frames, predictor.random_state = budget, random_state
    return predictor


def window_starts(windows, logs) -> list[tuple[str, int]]:
    """``(log_id, first frame)`` of each window, checking it is a contiguous run of its log."""
    by_id = {log.log_id: log for log in logs}
    starts = []
    for window in windows:
        log = by_id[window.log_id]
        start = int(np.flatnonzero(log.frame == window.frame[0])[0])
        stop = start + len(window)
        assert stop <= len(log)
        np.testing.assert_array_equal(window.frame, log.frame[start:stop])
        np.testing.assert_array_equal(window.semantic, log.semantic[start:stop])
        starts.append((window.log_id, start))
    return starts


def test_over_budget_each_log_gives_one_window_inside_it(load_demo_predictor, logs):
    predictor = with_budget(load_demo_predictor, 200)
    windows = predictor.calibration_windows(logs)
    assert sum(len(w) for w in windows) <= 200
    assert [w.log_id for w in windows] == [log.log_id for log in logs]    # one per log
    assert all(len(w) == 200 // N_LOGS for w in windows)
    window_starts(windows, logs)


def test_windows_are_reproducible_for_a_seed_and_move_with_it(load_demo_predictor, logs):
    first = window_starts(with_budget(load_demo_predictor, 200, 7).calibration_windows(logs), logs)
    again = window_starts(with_budget(load_demo_predictor, 200, 7).calibration_windows(logs), logs)
    other = window_starts(with_budget(load_demo_predictor, 200, 8).calibration_windows(logs), logs)
    assert first == again
    assert first != other


def test_a_budget_too_small_for_every_log_keeps_fewer_logs_each_a_useful_window(load_demo_predictor, logs):
    shortest = with_budget(load_demo_predictor, FRAMES).shortest_calibration_window()
    budget = 2 * shortest + 1                       # room for two useful windows, not four
    windows = with_budget(load_demo_predictor, budget).calibration_windows(logs)
    assert [w.log_id for w in windows] == [logs[1].log_id, logs[3].log_id]   # one of each half
    assert all(len(w) == shortest for w in windows)
    window_starts(windows, logs)


def test_a_budget_below_one_useful_window_is_refused_in_one_line(load_demo_predictor, logs):
    predictor = with_budget(load_demo_predictor, 1)
    with pytest.raises(DataValidationError, match="calibration_max_frames=1 is below"):
        predictor.calibration_windows(logs)


def test_calibrate_over_budget_fits_the_threshold_on_the_windows_only(load_demo_predictor, logs):
    predictor = with_budget(load_demo_predictor, 200).calibrate(logs)
    assert predictor.calibration_.calibration_scores_.size == 200


def test_under_or_at_budget_every_frame_of_every_log_is_used(load_demo_predictor, logs):
    total = N_LOGS * FRAMES
    predictor = with_budget(load_demo_predictor, total)
    windows = predictor.calibration_windows(logs)
    assert len(windows) == N_LOGS and all(w is log for w, log in zip(windows, logs))
    predictor.calibrate(logs)
    assert predictor.calibration_.calibration_scores_.size == total


def test_the_budget_survives_the_bundle_and_an_older_bundle_loads_the_default(load_demo_predictor, logs,
                                                                              tmp_path):
    predictor = with_budget(load_demo_predictor, 200).calibrate(logs)
    predictor.save(tmp_path / "budgeted")
    assert OcclusionPredictor.load(tmp_path / "budgeted").calibration_max_frames == 200

    config_path = tmp_path / "budgeted" / "config.json"
    meta = json.loads(config_path.read_text())
    del meta["config"]["params"]["calibration_max_frames"]        # written before the budget
    config_path.write_text(json.dumps(meta))
    older = OcclusionPredictor.load(tmp_path / "budgeted")
    assert older.calibration_max_frames == OcclusionPredictor().calibration_max_frames


def test_logs_shorter_than_their_share_leave_the_rest_to_the_long_log(load_demo_predictor, logs):
    shortest = with_budget(load_demo_predictor, FRAMES).shortest_calibration_window()
    assert 2 * shortest < FRAMES                     # room for a long log's window below
    short = [slice_log(log, 0, 10) for log in logs[:3]]
    budget = 3 * 10 + 2 * shortest                   # water level: 2 * shortest
    windows = with_budget(load_demo_predictor, budget).calibration_windows(short + [logs[3]])
    assert [len(w) for w in windows] == [10, 10, 10, 2 * shortest]
    assert sum(len(w) for w in windows) == budget    # nothing of the budget left unused
    window_starts(windows, logs)


def test_a_window_can_end_on_its_log_last_frame(load_demo_predictor, logs):
    budget = 2 * (FRAMES - 1)                        # windows one frame short of their logs
    ends = set()
    for seed in range(12):
        windows = with_budget(load_demo_predictor, budget, seed).calibration_windows(logs[:2])
        ends |= {int(w.frame[-1]) for w in windows}
    assert int(logs[0].frame[-1]) in ends and int(logs[0].frame[-2]) in ends


def test_two_logs_need_two_useful_windows_else_one_line_refusal(load_demo_predictor, logs):
    shortest = with_budget(load_demo_predictor, FRAMES).shortest_calibration_window()
    predictor = with_budget(load_demo_predictor, 2 * shortest - 1)
    with pytest.raises(DataValidationError) as caught:
        predictor.calibration_windows(logs[:2])
    message = str(caught.value)
    assert "\n" not in message
    assert f"calibration_max_frames={2 * shortest - 1} is below {2 * shortest}" in message
    assert len(with_budget(load_demo_predictor, 2 * shortest).calibration_windows(logs[:2])) == 2


def test_no_budget_uses_every_frame(load_demo_predictor, logs):
    windows = with_budget(load_demo_predictor, None).calibration_windows(logs)
    assert len(windows) == N_LOGS and all(w is log for w, log in zip(windows, logs))


@pytest.mark.parametrize("budget", [1, 0, "many"])
def test_fit_refuses_a_bad_budget_before_training(logs, budget, monkeypatch):
    def train(*args, **kwargs):
        raise AssertionError("training started before the budget was checked")

    monkeypatch.setattr(predictor_module, "fit", train)
    predictor = OcclusionPredictor(widths=(8, 16), epochs=1000, calibration_max_frames=budget,
                                   progress=False)
    with pytest.raises(DataValidationError, match="calibration_max_frames="):
        predictor.fit(logs)
