"""`unmask driving` given what a user plausibly gets wrong: a reused output folder, logs
without simulator truth, the wrong log for a run. Each stops in one line that says what to do."""
from click.testing import CliRunner, Result

from core.cli import cli
from driving.schema import read_log, write_log


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
