"""`unmask driving ...` end to end through click's CliRunner, and its error messages."""
import json
import shutil

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import driving.scoring.run as scoring
from core.cli import cli, main
from core.runs import list_runs
from core.errors import DataValidationError
from driving.schema import log_table, read_log, write_log


def test_cli_end_to_end(tmp_path):
    runner = CliRunner()
    logs, model, run = tmp_path / "logs", tmp_path / "model", tmp_path / "run"
    result = runner.invoke(cli, ["driving", "simulate", "--logs", "2", "--frames", "40", "--out",
                                 str(logs), "--seed", "5", "--grid", "64"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in logs.glob("*.parquet")) == ["log_000.parquet", "log_001.parquet"]
    result = runner.invoke(cli, ["driving", "train", "--logs", str(logs), "--out", str(model),
                                 "--epochs", "1", "--steps-per-epoch", "2"])
    assert result.exit_code == 0, result.output
    assert (model / "config.json").is_file()
    result = runner.invoke(cli, ["driving", "score", "--model", str(model), "--logs", str(logs),
                                 "--out", str(run), "--top-frames", "0"])
    assert result.exit_code == 0, result.output
    assert (run / "frames.parquet").is_file() and (run / "cells" / "log_001.parquet").is_file()
    # or into a workspace, where the dashboard finds it
    result = runner.invoke(cli, ["driving", "score", "--model", str(model), "--logs", str(logs),
                                 "--workspace", str(tmp_path / "ws"), "--top-frames", "0"])
    assert result.exit_code == 0, result.output
    assert [m["vertical"] for m in list_runs(tmp_path / "ws")] == ["driving"]
    result = runner.invoke(cli, ["driving", "score", "--model", str(model), "--logs", str(logs)])
    assert result.exit_code != 0 and "exactly one of --out RUN_DIR or --workspace DIR" in str(result.exception)
    result = runner.invoke(cli, ["driving", "evaluate", "--pred", str(run), "--logs", str(logs)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["frames"]["n_frames"] == 80
    assert set(report["hidden_cells"]["classes"]) >= {"road", "vehicle", "pedestrian"}
    assert 0 < report["occluded"]["road_layout_iou"] <= 1     # the simulator's layout truth
    rrd = tmp_path / "replay.rrd"
    result = runner.invoke(cli, ["driving", "export-rerun", "--pred", str(run), "--log",
                                 str(logs / "log_000.parquet"), "--out", str(rrd)])
    assert result.exit_code == 0, result.output
    assert rrd.stat().st_size > 1000


def test_simulate_normal_drives(tmp_path):
    """``--anomaly-interval 0`` gives logs without injected events; the default has them."""
    flagged = {}
    for interval in ("0", "10"):
        out = tmp_path / interval
        result = CliRunner().invoke(cli, ["driving", "simulate", "--logs", "1", "--frames", "300",
                                          "--out", str(out), "--grid", "64",
                                          "--anomaly-interval", interval])
        assert result.exit_code == 0, result.output
        column = pq.read_table(out / "log_000.parquet", columns=["anomaly"]).column("anomaly")
        flagged[interval] = sum(column.to_pylist())
    assert flagged["0"] == 0 and flagged["10"] > 0


def test_bad_log_gives_one_line_error_and_writes_nothing(tmp_path, capsys, small_log):
    logs = tmp_path / "logs"
    logs.mkdir()
    table = log_table(small_log)
    table = table.set_column(table.column_names.index("timestamp"), "timestamp",
                             __import__("pyarrow").array([0.0, 0.3, 0.2]))
    pq.write_table(table, logs / "bad.parquet")
    out = tmp_path / "model"
    try:
        main(["driving", "train", "--logs", str(logs), "--out", str(out)])
    except SystemExit as exit_:
        assert exit_.code == 2
    err = capsys.readouterr().err
    assert "bad.parquet: frame 2, column 'timestamp': time goes backwards" in err
    assert "Traceback" not in err
    assert not out.exists()


def test_export_rejects_a_log_the_run_did_not_score(demo_run, small_log, tmp_path):
    _, run_dir = demo_run
    other = write_log(small_log, tmp_path / "other.parquet")
    result = CliRunner().invoke(cli, ["driving", "export-rerun", "--pred", str(run_dir), "--log",
                                      str(other), "--out", str(tmp_path / "x.rrd")])
    assert result.exit_code != 0
    assert "run has no predictions for log_id 'tiny'" in str(result.exception)
    assert not (tmp_path / "x.rrd").exists()


def test_traversal_log_id_is_refused_in_one_line_and_nothing_is_written(demo_model_dir, small_log,
                                                                       tmp_path, capsys):
    logs = tmp_path / "deep" / "logs"
    logs.mkdir(parents=True)
    small_log.log_id = "../../../escaped"
    pq.write_table(log_table(small_log), logs / "evil.parquet")
    out = tmp_path / "deep" / "run"
    try:
        main(["driving", "score", "--model", str(demo_model_dir),
              "--logs", str(logs), "--out", str(out)])
    except SystemExit as exit_:
        assert exit_.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: ") and "\n" not in err
    assert "evil.parquet: frame 0, column 'log_id': '../../../escaped' is not a safe name" in err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["deep", "evil.parquet", "logs"]


def test_the_scorer_checks_log_ids_again_where_it_builds_paths(demo_run, demo_model_dir, tmp_path,
                                                               monkeypatch):
    """Defence in depth: a log that reached the scorer without the reader's check (an API
    caller's own reader) still cannot name a file outside the run."""

    workspace, _ = demo_run
    logs = sorted((workspace / "data" / "driving").glob("*.parquet"))[:1]

    def unchecked_read(path):
        log = read_log(path)
        log.log_id = "../escaped"
        return log

    monkeypatch.setattr(scoring, "read_log", unchecked_read)
    out = tmp_path / "run"
    with pytest.raises(DataValidationError, match=r"column 'log_id': '../escaped' is not a safe"):
        scoring.score_logs(demo_model_dir, logs[0], out)
    assert not out.exists() and not (tmp_path / "escaped").exists()


def test_an_older_bundle_is_refused_in_one_line_that_says_to_retrain(demo_run, demo_model_dir, tmp_path,
                                                                      capsys):
    workspace, _ = demo_run
    model = tmp_path / "old_model"
    shutil.copytree(demo_model_dir, model)
    config = json.loads((model / "config.json").read_text())
    config["format_version"] = 1                    # what bundles before the scoring state held
    (model / "config.json").write_text(json.dumps(config))
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_:
        main(["driving", "score", "--model", str(model), "--logs",
              str(workspace / "data" / "driving"), "--out", str(out), "--quiet"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("Error: ") and "format 1" in err
    assert f"retrain it: unmask driving train --logs LOGS --out {model}" in err
    assert not out.exists()


def test_train_init_fine_tunes_a_model_on_new_logs_and_the_bundle_says_from_what(
        demo_run, demo_model_dir, tmp_path):
    """``--init MODEL`` goes on training MODEL's network with its recipe on ``--logs``; the
    new bundle records where its weights came from; MODEL itself is never the output."""
    workspace, _ = demo_run
    logs, tuned = workspace / "data" / "driving_train", tmp_path / "tuned"
    runner = CliRunner()
    result = runner.invoke(cli, ["driving", "train", "--logs", str(logs), "--out", str(tuned),
                                 "--init", str(demo_model_dir), "--epochs", "1",
                                 "--steps-per-epoch", "1", "--lr", "0.001", "--quiet"])
    assert result.exit_code == 0, result.output
    source = json.loads((demo_model_dir / "config.json").read_text())["config"]
    config = json.loads((tuned / "config.json").read_text())["config"]
    assert config["warm_start"]["source"] == str(demo_model_dir)
    assert config["warm_start"]["training"] == source["training"]
    assert config["params"]["lr"] == 0.001 and config["params"]["epochs"] == 1
    recipe = {k: v for k, v in source["params"].items()
              if k not in ("lr", "epochs", "max_steps_per_epoch", "progress", "device")}
    assert {k: config["params"][k] for k in recipe} == recipe
    assert config["net"] == source["net"]
    result = runner.invoke(cli, ["driving", "train", "--logs", str(logs), "--out",
                                 str(demo_model_dir), "--init", str(demo_model_dir)])
    assert result.exit_code != 0 and "choose another --out" in str(result.exception)
    result = runner.invoke(cli, ["driving", "train", "--logs", str(logs), "--out",
                                 str(tmp_path / "again"), "--init", str(logs)])
    assert result.exit_code != 0 and "not a model bundle" in str(result.exception)


def test_train_init_on_logs_of_another_grid_is_refused_in_one_line(demo_model_dir, tmp_path):
    runner = CliRunner()
    logs = tmp_path / "logs"
    result = runner.invoke(cli, ["driving", "simulate", "--logs", "2", "--frames", "40", "--out",
                                 str(logs), "--grid", "128", "--anomaly-interval", "0"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["driving", "train", "--logs", str(logs), "--out",
                                 str(tmp_path / "tuned"), "--init", str(demo_model_dir),
                                 "--epochs", "1", "--steps-per-epoch", "1"])
    assert result.exit_code != 0 and not (tmp_path / "tuned").exists()
    assert str(result.exception) == (
        f"warm start {demo_model_dir}: its network reads 64x64 grids, these logs are 128x128; "
        "fine-tune it on logs of its grid, or train a model from scratch on these")
