"""``bench.driving_logs.kept_logs``: a kept folder is read back only when it holds exactly the
logs asked for."""
import numpy as np
import pytest

import bench.driving_logs as driving_logs
from bench.driving_logs import MARKER, kept_logs, simulated_logs
from driving.sim.simulator import SimConfig

FRAMES = 3
CONFIG = SimConfig(grid_shape=(32, 32), anomaly_interval_s=0.0)


def same_logs(a: list, b: list) -> bool:
    return len(a) == len(b) and all(np.array_equal(x.semantic, y.semantic) for x, y in zip(a, b))


def test_a_folder_left_by_other_settings_is_simulated_again(tmp_path):
    # 3 logs of seed 1, then 1 of seed 2 over log_000 (the old code then read back log_001-002 of seed 1)
    kept_logs(tmp_path / "set", 3, FRAMES, 1, CONFIG)
    kept_logs(tmp_path / "set", 1, FRAMES, 2, CONFIG)
    logs = kept_logs(tmp_path / "set", 3, FRAMES, 2, CONFIG)
    assert same_logs(logs, simulated_logs(tmp_path / "fresh", 3, FRAMES, 2, CONFIG))
    assert not same_logs(logs[1:], simulated_logs(tmp_path / "seed1", 3, FRAMES, 1, CONFIG)[1:])


def test_the_first_logs_of_a_larger_kept_set_are_read_back_without_simulating(tmp_path, monkeypatch):
    first = kept_logs(tmp_path / "set", 3, FRAMES, 1, CONFIG)

    def fail(*args, **kwargs):
        raise AssertionError("simulated again")

    monkeypatch.setattr(driving_logs, "simulated_logs", fail)
    assert same_logs(kept_logs(tmp_path / "set", 2, FRAMES, 1, CONFIG), first[:2])
    with pytest.raises(AssertionError, match="simulated again"):
        kept_logs(tmp_path / "set", 4, FRAMES, 1, CONFIG)       # more than it holds


def test_a_simulation_stopped_half_way_leaves_no_marker(tmp_path, monkeypatch):
    kept_logs(tmp_path / "set", 2, FRAMES, 1, CONFIG)

    def crash(out_dir, *args, **kwargs):
        (out_dir / "log_000.parquet").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(driving_logs, "simulated_logs", crash)
    with pytest.raises(KeyboardInterrupt):
        kept_logs(tmp_path / "set", 2, FRAMES, 2, CONFIG)
    assert not (tmp_path / "set" / MARKER).exists()
    assert [p.name for p in (tmp_path / "set").glob("log_*")] == ["log_000.parquet"]
