"""Progress bars: on stderr, only on a terminal, never under --quiet (core.runtime.progress_bar)."""
from __future__ import annotations

import io
import re
import sys

import pytest
import torch
from click.testing import CliRunner
from torch import nn
from torch.utils.data import TensorDataset

from core.cli import main
from core.runtime import progress_bar
from core.training import TrainConfig, fit

BAR = re.compile(r"([a-z][a-z0-9 ]*): *\d+%\|")  # tqdm: "desc:  40%|####  | 2/5 [...]"


class Terminal(io.StringIO):
    """A stream that says it is a terminal (what tqdm's ``disable=None`` asks)."""

    def isatty(self) -> bool:
        return True


def bars(text: str) -> set[str]:
    """The labels of the progress bars drawn in ``text``."""
    return set(BAR.findall(text))


@pytest.mark.parametrize("stream, show, drawn", [
    (Terminal, None, True), (io.StringIO, None, False), (Terminal, False, False),
    (io.StringIO, True, True)])
def test_progress_bar_rule(stream, show, drawn):
    out = stream()
    for _ in progress_bar(range(3), desc="cases", show=show, file=out):
        pass
    assert (bars(out.getvalue()) == {"cases"}) is drawn, out.getvalue()


def test_progress_bar_goes_to_stderr(monkeypatch):
    monkeypatch.setattr(sys, "stderr", Terminal())
    for _ in progress_bar(range(2), desc="cases"):
        pass
    assert bars(sys.stderr.getvalue()) == {"cases"}


def _fit(progress):
    data = TensorDataset(torch.randn(64, 2))
    fit(nn.Linear(2, 1), data, lambda m, b, g: m(b[0]).pow(2).mean(),
        TrainConfig(max_epochs=2, batch_size=16, device="cpu", progress=progress))


def test_training_shows_epochs_and_batches_on_a_terminal(monkeypatch):
    monkeypatch.setattr(sys, "stderr", Terminal())
    _fit(None)
    assert {"train", "epoch 1", "epoch 2"} <= bars(sys.stderr.getvalue())


@pytest.mark.parametrize("stream, progress", [(Terminal, False), (io.StringIO, None)])
def test_training_is_silent_when_quiet_or_piped(monkeypatch, stream, progress):
    monkeypatch.setattr(sys, "stderr", stream())
    _fit(progress)
    assert sys.stderr.getvalue() == ""


LONG_COMMANDS = [("finance", "train"), ("finance", "score"), ("medical", "pretrain"),
                 ("medical", "train"), ("medical", "infer"), ("driving", "train"),
                 ("driving", "score")]


@pytest.mark.parametrize("vertical, command", LONG_COMMANDS)
def test_long_commands_take_quiet_device_precision(vertical, command):
    from importlib import import_module

    group = getattr(import_module(f"{vertical}.cli"), vertical)
    result = CliRunner().invoke(group, [command, "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--quiet", "--device", "--precision [fp32|bf16]"):
        assert option in result.output


def _run(argv, stream=Terminal) -> str:
    """Run ``unmask ARGV`` with stderr on ``stream``; return what went to stderr."""
    err, saved = stream(), sys.stderr
    sys.stderr = err
    try:
        main([str(a) for a in argv])
    except SystemExit as exit_info:
        assert exit_info.code in (0, None), err.getvalue()
    finally:
        sys.stderr = saved
    return err.getvalue()


def _both_ways(argv, expected: set[str]) -> None:
    """Bars ``expected`` on a terminal; nothing of them under --quiet or through a pipe."""
    assert expected <= bars(_run(argv)), argv
    assert not bars(_run(argv + ["--quiet"]))
    assert not bars(_run(argv, io.StringIO))


def test_finance_commands_show_progress(tmp_path, capsys):
    from finance.simulator import SimulatorConfig, simulate_to_parquet

    tx = simulate_to_parquet(tmp_path / "tx.parquet", SimulatorConfig(
        n_customers=60, n_terminals=120, n_days=20, seed=1))
    _both_ways(["finance", "train", "--data", tx, "--out", tmp_path / "m", "--max-steps", 4,
                "--max-train-rows", 600, "--device", "cpu"], {"train", "epoch 1"})
    _both_ways(["finance", "score", "--model", tmp_path / "m", "--data", tx, "--out",
                tmp_path / "s.parquet", "--budget", 3], {"score"})


def test_medical_commands_show_progress(tmp_path, capsys):
    from medical.phantom import simulate_dataset

    data = simulate_dataset(tmp_path / "ct", 5, lesions=False, seed=0, shape=(32, 32, 16))
    common = ["--preset", "tiny", "--epochs", 1]
    _both_ways(["medical", "pretrain", "--data", data, "--out", tmp_path / "pre", *common],
               {"train", "epoch 1", "calibrate"})
    _both_ways(["medical", "train", "--data", data, "--out", tmp_path / "ct_model", "--pretrained",
                tmp_path / "pre", "--labels", 2, *common], {"train", "epoch 1", "calibrate"})
    _both_ways(["medical", "infer", "--model", tmp_path / "ct_model", "--images", data, "--out",
                tmp_path / "run"], {"infer"})


def test_driving_commands_show_progress(tmp_path, capsys):
    from dataclasses import replace

    from driving.demo import sim_config
    from driving.sim.simulator import simulate_logs

    simulate_logs(tmp_path / "logs", 2, 30, seed=1,
                  config=replace(sim_config("tiny"), anomaly_interval_s=0.0))
    _both_ways(["driving", "train", "--logs", tmp_path / "logs", "--out", tmp_path / "m",
                "--epochs", 1, "--steps-per-epoch", 1], {"train", "epoch 1", "calibrate"})
    _both_ways(["driving", "score", "--model", tmp_path / "m", "--logs", tmp_path / "logs",
                "--out", tmp_path / "run", "--top-frames", 0], {"score"})
