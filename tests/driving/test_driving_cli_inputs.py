"""`unmask driving` given what a user plausibly gets wrong: a reused output folder, logs
without simulator truth, the wrong log for a run, logs too short to calibrate, logs of another
geometry than the model's, a training folder of mixed frame rates. Each stops in one line that
says what to do."""
import shutil
from dataclasses import replace

import pytest
from click.testing import CliRunner, Result

from core.cli import cli
from core.errors import DataValidationError
from driving.model.predictor import OcclusionPredictor
from driving.schema import read_log, slice_log, write_log


def simulate(out, *options) -> Result:
    return CliRunner().invoke(cli, ["driving", "simulate", "--frames", "6", "--grid", "64",
                                    "--out", str(out), *options])


def test_simulate_again_replaces_the_folder_so_no_stale_log_of_another_world_stays(tmp_path):
    out = tmp_path / "normal"
    assert simulate(out, "--logs", "3").exit_code == 0
    result = simulate(out, "--logs", "1", "--world", "highway")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"wrote 1 log to {out}"
    assert sorted(p.name for p in out.glob("*.parquet")) == ["log_000.parquet"]


def test_simulate_refuses_a_folder_it_did_not_write(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    result = simulate(out, "--logs", "1")
    assert result.exit_code != 0
    assert "a folder unmask did not write" in str(result.exception)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def evaluate(run_dir, logs) -> Result:
    return CliRunner().invoke(cli, ["driving", "evaluate", "--pred", str(run_dir), "--logs", str(logs)])


def test_evaluate_says_imported_logs_have_no_simulator_truth(demo_run, small_log, tmp_path):
    _, run_dir = demo_run
    small_log.semantic_true, small_log.anomaly, small_log.anomaly_kind = None, None, None
    write_log(small_log, tmp_path / "logs" / "drive.parquet")
    result = evaluate(run_dir, tmp_path / "logs")
    assert result.exit_code != 0
    assert "drive.parquet: no simulator truth (column semantic_true): evaluation needs logs from " \
           "`unmask driving simulate`" in str(result.exception)


def test_evaluate_refuses_another_log_under_the_scored_log_id(demo_run, tmp_path):
    """A log_000 of another world (here: the scored log at half the frame rate) is not
    silently compared with the run's predictions."""
    workspace, run_dir = demo_run
    scored = sorted((workspace / "data" / "driving").glob("*.parquet"))[0]
    log = read_log(scored)
    log.timestamp = log.timestamp * 2.0
    write_log(log, tmp_path / "logs" / scored.name)
    result = evaluate(run_dir, tmp_path / "logs")
    assert result.exit_code != 0
    message = str(result.exception)
    assert f"not the log {run_dir} scored as '{log.log_id}' (frame 1 is at t = " in message
    assert message.endswith("give --logs the logs the run scored")
    assert evaluate(run_dir, workspace / "data" / "driving").exit_code == 0


def test_evaluate_refuses_another_seeds_log_with_the_same_frames_and_times(demo_run, tmp_path):
    """Frames and times match (same world, same length); the cells seen do not."""
    workspace, run_dir = demo_run
    scored = sorted((workspace / "data" / "driving").glob("*.parquet"))[0]
    log = read_log(scored)
    seen = log.visible[2]
    log.semantic[2][seen] = (log.semantic[2][seen] + 1) % len(log.meta.classes)
    write_log(log, tmp_path / "logs" / scored.name)
    result = evaluate(run_dir, tmp_path / "logs")
    assert result.exit_code != 0
    message = str(result.exception)
    assert f"not the log {run_dir} scored as '{log.log_id}' (frame {int(log.frame[2])}: " in message
    assert "seen cells hold another class than the run reports" in message


def train(logs, out) -> Result:
    return CliRunner().invoke(cli, ["driving", "train", "--logs", str(logs), "--out", str(out),
                                    "--epochs", "1", "--steps-per-epoch", "1", "--quiet"])


def test_train_on_logs_too_short_to_calibrate_names_the_frames_a_log_needs(tmp_path):
    """The CLI has no calibration_fraction flag: the line names the frames a log needs (8 at
    the default 0.2: the last 20 % of 8 frames rounds to 2), and logs that long train."""
    assert simulate(tmp_path / "short", "--logs", "2", "--frames", "7").exit_code == 0
    result = train(tmp_path / "short", tmp_path / "model")
    assert result.exit_code != 0
    message = str(result.exception)
    assert "the longest training log has 7 frames: train on logs of at least 8 frames" in message
    assert "OcclusionPredictor(calibration_fraction=...)" in message
    assert "or a larger calibration_fraction" not in message
    assert simulate(tmp_path / "enough", "--logs", "2", "--frames", "8").exit_code == 0
    result = train(tmp_path / "enough", tmp_path / "model")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("fraction, shortest", [(0.2, 8), (0.3, 5), (0.1, 15), (0.5, 3)])
def test_the_frames_a_log_needs_are_the_fewest_with_a_two_frame_tail(normal_logs, fraction,
                                                                     shortest):
    """Worked by hand: the fewest n with round(n * fraction) >= 2 (Python rounds 1.5 to 2)."""
    predictor = OcclusionPredictor(calibration_fraction=fraction)
    [log] = normal_logs(1, 16, seed=5)
    assert predictor.shortest_training_log() == shortest
    just_long_enough = slice_log(log, 0, shortest)
    assert [len(tail) for tail in predictor.calibration_logs([just_long_enough])] == [2]
    with pytest.raises(DataValidationError, match=f"logs of at least {shortest} frames"):
        predictor.calibration_logs([slice_log(log, 0, shortest - 1)])


def score(model, logs, out) -> Result:
    return CliRunner().invoke(cli, ["driving", "score", "--model", str(model), "--logs", str(logs),
                                    "--out", str(out), "--quiet"])


@pytest.mark.parametrize("field", ["grid_shape", "ego_cell"])
def test_score_refuses_another_geometry_and_says_what_to_do(demo_run, demo_model_dir, small_log,
                                                            tmp_path, field):
    workspace, _ = demo_run
    log = read_log(sorted((workspace / "data" / "driving").glob("*.parquet"))[0])
    row, column = log.meta.ego_cell
    moved = replace(log, meta=replace(log.meta, ego_cell=(row - 8, column)))
    other = {"grid_shape": small_log, "ego_cell": moved}[field]
    path = write_log(other, tmp_path / "logs" / "drive.parquet")
    result = score(demo_model_dir, path, tmp_path / "run")
    assert result.exit_code != 0
    model_value = getattr(log.meta, field)
    assert str(result.exception) == (
        f"{path}: metadata {field} {getattr(other.meta, field)} differs from the model's "
        f"{model_value}: score logs with the model's {field}, or train a model on logs like "
        "this one (unmask driving train --logs DIR)")
    assert not (tmp_path / "run").exists()


def test_train_refuses_a_folder_of_mixed_frame_rates_naming_a_log_of_each(tmp_path):
    """A 10 Hz town log and a 5 Hz highway log: the model's history counts frames, so the
    two would mix 2 s and 4 s of the past under one set of weights."""
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for world in ("town", "highway"):
        result = simulate(tmp_path / world, "--logs", "1", "--frames", "10", "--world", world)
        assert result.exit_code == 0, result.output
        shutil.copy(tmp_path / world / "log_000.parquet", mixed / f"{world}.parquet")
    result = train(mixed, tmp_path / "model")
    assert result.exit_code != 0
    assert str(result.exception).startswith(
        f"training logs at different frame rates: {mixed / 'highway.parquet'} at 5 Hz, "
        f"{mixed / 'town.parquet'} at 10 Hz; the model's history is counted in frames")
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize("command", ["train", "score", "evaluate"])
def test_a_log_without_frames_is_refused_naming_the_file(command, demo_run, demo_model_dir,
                                                         small_log, tmp_path):
    logs = tmp_path / "logs"
    write_log(slice_log(small_log, 0, 0), logs / "empty.parquet")
    _, run_dir = demo_run
    options = {"train": ["--out", str(tmp_path / "out")],
               "score": ["--model", str(demo_model_dir), "--out", str(tmp_path / "out")],
               "evaluate": ["--pred", str(run_dir)]}[command]
    result = CliRunner().invoke(cli, ["driving", command, "--logs", str(logs), *options])
    assert isinstance(result.exception, DataValidationError), result.output
    assert str(result.exception) == f"{logs / 'empty.parquet'}: the log has no frames"
    assert not (tmp_path / "out").exists()
