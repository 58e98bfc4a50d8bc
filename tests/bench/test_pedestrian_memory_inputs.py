"""The pedestrian-memory experiment refuses what it cannot read: a set's cells with a log
missing, a stage without the folders it reads, a network without a memory gate."""
from types import SimpleNamespace

import numpy as np
import pytest

from bench.experiments.driving_pedestrian_memory import SETS, load_cells, log_cells, main


def _keep_cells(work, name: str, logs: range) -> None:
    folder = work / "cells" / name
    folder.mkdir(parents=True)
    for i in logs:
        np.savez(folder / f"log_{i:03d}.npz", truth=np.array([True, False]), unmask=np.array([0.9, 0.1]))


def test_all_logs_of_a_set_are_loaded(tmp_path):
    _keep_cells(tmp_path, "tuned", range(SETS["tuned"][1]))
    data = load_cells(["tuned"], tmp_path)
    assert len(data["truth"]) == 2 * SETS["tuned"][1]
    assert data["log"].tolist() == np.repeat(np.arange(SETS["tuned"][1]), 2).tolist()


def test_a_set_with_a_log_missing_is_refused(tmp_path):
    _keep_cells(tmp_path, "tuned", range(SETS["tuned"][1] - 1))
    with pytest.raises(FileNotFoundError, match=r"1 of the set's 4 logs.*log_003\.npz"):
        load_cells(["tuned"], tmp_path)


@pytest.mark.parametrize("argv, message", [
    (["diagnose", "tuned"], "needs --work"),
    (["cells", "tuned", "--work", "w", "--logs", "l"], "needs --models"),
    (["drift", "tuned"], "needs --logs"),
    (["drift", "tuned", "--logs", "l", "--log", "4"], "logs 0-3"),
    (["diagnose", "tuned,nope", "--work", "w"], "unknown set nope"),
])
def test_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2 and message in capsys.readouterr().err


def test_a_network_without_memory_gate_is_refused():
    with pytest.raises(ValueError, match="no memory gate"):
        log_cells(SimpleNamespace(memory_gate_=None), log=None, accumulators={})

