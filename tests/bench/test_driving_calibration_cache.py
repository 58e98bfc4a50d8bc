"""``bench.experiments.driving_calibration_cache.cache_maps``: the cached maps follow the logs,
so a set that ``kept_logs`` has simulated again is not read back with the old logs' maps."""
import numpy as np
import pytest

import bench.experiments.driving_calibration_cache as calibration_cache
from bench.driving_logs import kept_logs
from bench.experiments.driving_calibration_cache import cache_maps
from driving.sim.simulator import SimConfig

FRAMES = 3
CONFIG = SimConfig(grid_shape=(32, 32), anomaly_interval_s=0.0)


def fake_raw_maps(pred, log, context_prior=None):
    """Maps that are a function of the log (the network is not what is under test)."""
    grid = log.semantic.astype(np.float32)                      # (T, H, W)
    return {"revealed": grid, "object_recon": grid + 1, "object_forecast": grid + 2,
            "context_inputs": [(log.ego_x, log.ego_speed, None)]}


@pytest.fixture
def fake_network(monkeypatch):
    calls = []

    def raw_maps(pred, log, context_prior=None):
        calls.append(log.log_id)
        return fake_raw_maps(pred, log, context_prior)

    monkeypatch.setattr(calibration_cache, "raw_maps", raw_maps)
    monkeypatch.setattr(calibration_cache, "new_prior", lambda pred: None)
    return calls


def cached_revealed(root, logs) -> list:
    return [np.load(root / f"set_{log.log_id}.npz")["revealed"] for log in logs]


def test_maps_of_logs_simulated_again_are_computed_again(tmp_path, fake_network):
    first = kept_logs(tmp_path / "logs" / "set", 2, FRAMES, 1, CONFIG)
    cache_maps(None, tmp_path, "set", first)
    again = kept_logs(tmp_path / "logs" / "set", 2, FRAMES, 2, CONFIG)   # another seed, same ids
    assert not np.array_equal(first[0].semantic, again[0].semantic)
    cache_maps(None, tmp_path, "set", again)
    for got, log in zip(cached_revealed(tmp_path, again), again):
        np.testing.assert_array_equal(got, log.semantic.astype(np.float32))
    assert fake_network == ["log_000", "log_001"] * 2


def test_maps_of_unchanged_logs_are_read_back(tmp_path, fake_network):
    logs = kept_logs(tmp_path / "logs" / "set", 2, FRAMES, 1, CONFIG)
    cache_maps(None, tmp_path, "set", logs)
    stamps = [(tmp_path / f"set_{log.log_id}.npz").stat().st_mtime_ns for log in logs]
    cache_maps(None, tmp_path, "set", kept_logs(tmp_path / "logs" / "set", 2, FRAMES, 1, CONFIG))
    assert fake_network == ["log_000", "log_001"]
    assert [(tmp_path / f"set_{log.log_id}.npz").stat().st_mtime_ns for log in logs] == stamps
    z = np.load(tmp_path / "set_log_000.npz")                   # what the harnesses read
    np.testing.assert_array_equal(z["ground"], logs[0].ego_x)
    np.testing.assert_array_equal(z["category"], logs[0].ego_speed)


def test_a_file_cached_before_digests_is_computed_again(tmp_path, fake_network):
    logs = kept_logs(tmp_path / "logs" / "set", 1, FRAMES, 1, CONFIG)
    np.savez(tmp_path / "set_log_000.npz", revealed=np.zeros(1))   # the old layout: no digest
    cache_maps(None, tmp_path, "set", logs)
    assert fake_network == ["log_000"]
    np.testing.assert_array_equal(cached_revealed(tmp_path, logs)[0],
                                  logs[0].semantic.astype(np.float32))
