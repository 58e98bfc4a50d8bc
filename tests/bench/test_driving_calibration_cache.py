"""``bench.experiments.driving_calibration_cache.cache_maps``: the cached maps follow the logs
and the predictor, so a set that ``kept_logs`` has simulated again, or a predictor whose gate
or weights changed, is not read back with the old maps."""
import copy
from dataclasses import replace

import numpy as np
import pytest
import torch

import bench.experiments.driving_calibration_cache as calibration_cache
from bench.driving_logs import kept_logs
from bench.experiments.driving_calibration_cache import cache_maps
from driving.demo import sim_config
from driving.model.predictor import OcclusionPredictor
from driving.schema import read_log
from driving.sim.simulator import SimConfig, simulate_logs

FRAMES = 3
CONFIG = SimConfig(grid_shape=(32, 32), anomaly_interval_s=0.0)


def fake_raw_maps(pred, log, context_prior=None):
    """Maps that are a function of the log (the network is not what is under test)."""
    grid = log.semantic.astype(np.float32)                      # (T, H, W)
    return {"revealed": grid, "object_recon": grid + 1, "object_forecast": grid + 2,
            "context_inputs": [(log.ego_x, log.ego_speed, None)]}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A tiny fitted predictor and the logs it was trained on (what its state is made of)."""
    root = tmp_path_factory.mktemp("train")
    logs = [read_log(p) for p in simulate_logs(root, 3, 40, seed=4, config=sim_config("tiny"))]
    predictor = OcclusionPredictor(history=(2,), widths=(8, 16), epochs=1, batch_size=8,
                                   max_steps_per_epoch=2, random_state=0, progress=False)
    return predictor.fit(logs[:2]), logs


@pytest.fixture
def pred(fitted):
    return fitted[0]


class Calls(list):
    """The log ids the fake network was run on, and the observed channels it was last asked for."""


@pytest.fixture
def fake_network(monkeypatch):
    calls = Calls()

    def raw_maps(pred, log, context_prior=None, **kwargs):
        calls.append(log.log_id)
        calls.observed_channels = kwargs.get("observed_channels", "the frame score's default")
        return fake_raw_maps(pred, log, context_prior)

    monkeypatch.setattr(calibration_cache, "raw_maps", raw_maps)
    monkeypatch.setattr(calibration_cache, "new_prior", lambda pred: None)
    return calls



def cached_revealed(root, logs) -> list:
    return [np.load(root / f"set_{log.log_id}.npz")["revealed"] for log in logs]


def test_maps_of_logs_simulated_again_are_computed_again(tmp_path, fake_network, pred):
    first = kept_logs(tmp_path / "logs" / "set", 2, FRAMES, 1, CONFIG)
    cache_maps(pred, tmp_path, "set", first)
    again = kept_logs(tmp_path / "logs" / "set", 2, FRAMES, 2, CONFIG)   # another seed, same ids
    assert not np.array_equal(first[0].semantic, again[0].semantic)
    cache_maps(pred, tmp_path, "set", again)
    for got, log in zip(cached_revealed(tmp_path, again), again):
        np.testing.assert_array_equal(got, log.semantic.astype(np.float32))
    assert fake_network == ["log_000", "log_001"] * 2


def test_maps_of_unchanged_logs_are_read_back(tmp_path, fake_network, pred):
    logs = kept_logs(tmp_path / "logs" / "set", 2, FRAMES, 1, CONFIG)
    cache_maps(pred, tmp_path, "set", logs)
    stamps = [(tmp_path / f"set_{log.log_id}.npz").stat().st_mtime_ns for log in logs]
    cache_maps(pred, tmp_path, "set", kept_logs(tmp_path / "logs" / "set", 2, FRAMES, 1, CONFIG))
    assert fake_network == ["log_000", "log_001"]
    assert [(tmp_path / f"set_{log.log_id}.npz").stat().st_mtime_ns for log in logs] == stamps
    z = np.load(tmp_path / "set_log_000.npz")                   # what the harnesses read
    np.testing.assert_array_equal(z["ground"], logs[0].ego_x)
    np.testing.assert_array_equal(z["category"], logs[0].ego_speed)


def test_a_file_cached_before_digests_is_computed_again(tmp_path, fake_network, pred):
    logs = kept_logs(tmp_path / "logs" / "set", 1, FRAMES, 1, CONFIG)
    np.savez(tmp_path / "set_log_000.npz", revealed=np.zeros(1))   # the old layout: no digest
    cache_maps(pred, tmp_path, "set", logs)
    assert fake_network == ["log_000"]
    np.testing.assert_array_equal(cached_revealed(tmp_path, logs)[0],
                                  logs[0].semantic.astype(np.float32))


def test_maps_of_a_changed_predictor_or_log_meta_are_computed_again(tmp_path, fake_network,
                                                                     fitted):
    pred, train = copy.deepcopy(fitted[0]), fitted[1]          # the module's own stays as fitted
    logs = kept_logs(tmp_path / "logs" / "set", 1, FRAMES, 1, CONFIG)
    cache_maps(pred, tmp_path, "set", logs)
    fitted_gate = pred.memory_gate_.to_dict()
    pred.fit_memory_gate(pred.calibration_logs(train[2:]))    # other logs, another gate
    assert pred.memory_gate_.to_dict() != fitted_gate
    cache_maps(pred, tmp_path, "set", logs)
    assert fake_network == ["log_000"] * 2
    with torch.no_grad():                                     # one weight moved
        next(pred.net_.parameters()).view(-1)[0] += 1.0
    cache_maps(pred, tmp_path, "set", logs)
    assert fake_network == ["log_000"] * 3
    cache_maps(pred, tmp_path, "set", logs)                   # nothing changed: read back
    assert fake_network == ["log_000"] * 3
    coarser = [replace(logs[0], meta=replace(logs[0].meta, resolution_m=1.0))]
    cache_maps(pred, tmp_path, "set", coarser)
    assert fake_network == ["log_000"] * 4


def test_the_cache_asks_the_passes_for_the_network_maps_only(tmp_path, fake_network, pred):
    """The cached file holds the network's maps; the observed channels are each harness's to
    compute from the log (its own candidates), so the passes compute none and the digest
    does not depend on them."""
    logs = kept_logs(tmp_path / "logs" / "set", 1, FRAMES, 1, CONFIG)
    cache_maps(pred, tmp_path, "set", logs)
    assert fake_network.observed_channels == {}
    assert set(np.load(tmp_path / "set_log_000.npz").files) == {
        "revealed", "object_recon", "object_forecast", "ground", "category", "digest"}
