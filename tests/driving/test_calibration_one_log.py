"""With one calibration log there is no other log to cross-fit on: the alert threshold is
read off that log's own frames, and the predictor says so in one warning."""
import shutil
import warnings

import pytest
from click.testing import CliRunner

from core.cli import cli
from core.errors import UnmaskWarning
from driving.schema import slice_log


@pytest.fixture(scope="module")
def logs(normal_logs):
    return normal_logs(2, 60, seed=41)


def calibrated(load_demo_predictor, logs) -> list[str]:
    predictor = load_demo_predictor()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predictor.calibrate(logs)
    return [str(w.message) for w in caught if issubclass(w.category, UnmaskWarning)]


def test_one_calibration_log_warns_that_the_threshold_is_in_sample(load_demo_predictor, logs):
    messages = calibrated(load_demo_predictor, logs[:1])
    assert len(messages) == 1
    assert "one training log" in messages[0] and "5%" in messages[0]


def test_two_calibration_logs_do_not_warn(load_demo_predictor, logs):
    assert calibrated(load_demo_predictor, logs) == []


def test_a_log_too_short_for_a_tail_is_named_as_the_cause(load_demo_predictor, logs):
    messages = calibrated(load_demo_predictor, [logs[0], slice_log(logs[1], 0, 4)])  # a 1-frame tail
    assert len(messages) == 1
    assert "1 of the 2 logs were too short" in messages[0] and "calibration_fraction" in messages[0]
    assert "two or more logs" not in messages[0]


def test_train_on_one_log_prints_one_warning_line(logs, tmp_path):
    (tmp_path / "logs").mkdir()
    shutil.copy(logs[0].path, tmp_path / "logs" / "log_000.parquet")
    result = CliRunner().invoke(cli, ["driving", "train", "--logs", str(tmp_path / "logs"), "--out",
                                      str(tmp_path / "model"), "--epochs", "1",
                                      "--steps-per-epoch", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(lines) == 1 and "one training log" in lines[0]
