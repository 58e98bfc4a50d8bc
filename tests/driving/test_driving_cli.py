"""`unmask driving ...` end to end through click's CliRunner, and its error messages."""
import json

import pyarrow.parquet as pq
from click.testing import CliRunner

from core.cli import cli, main
from driving.schema import log_table


def test_cli_end_to_end(tmp_path):
    runner = CliRunner()
    logs, model, run = tmp_path / "logs", tmp_path / "model", tmp_path / "run"
    result = runner.invoke(cli, ["driving", "simulate", "--logs", "2", "--frames", "40", "--out",
                                 str(logs), "--seed", "5", "--grid", "64"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in logs.iterdir()) == ["log_000.parquet", "log_001.parquet"]
    result = runner.invoke(cli, ["driving", "train", "--logs", str(logs), "--out", str(model),
                                 "--epochs", "1", "--steps-per-epoch", "2"])
    assert result.exit_code == 0, result.output
    assert (model / "config.json").is_file()
    result = runner.invoke(cli, ["driving", "score", "--model", str(model), "--logs", str(logs),
                                 "--out", str(run), "--top-frames", "0"])
    assert result.exit_code == 0, result.output
    assert (run / "frames.parquet").is_file() and (run / "cells" / "log_001.parquet").is_file()
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
    from driving.schema import write_log

    _, run_dir = demo_run
    other = write_log(small_log, tmp_path / "other.parquet")
    result = CliRunner().invoke(cli, ["driving", "export-rerun", "--pred", str(run_dir), "--log",
                                      str(other), "--out", str(tmp_path / "x.rrd")])
    assert result.exit_code != 0
    assert "run has no predictions for log_id 'tiny'" in str(result.exception)
    assert not (tmp_path / "x.rrd").exists()
