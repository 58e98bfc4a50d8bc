"""bench.cpu_load, the load beside bench.suite_load and bench.demo_load: the spinners run
while the block does and are gone after it, however it ends; the sampler's windows."""
import subprocess
import time

import pytest

import bench.cpu_load
from bench.cpu_load import LoadSampler, cpu_load, mean_load_1min


@pytest.fixture
def started(monkeypatch):
    """Every spinner process cpu_load starts."""
    processes = []
    real = subprocess.Popen

    def popen(*args, **kwargs):
        processes.append(real(*args, **kwargs))
        return processes[-1]

    monkeypatch.setattr(bench.cpu_load.subprocess, "Popen", popen)
    return processes


def test_spinners_run_during_the_block_and_are_reaped_after_it(started):
    with cpu_load(spinners=2, sample_every_s=0.05) as sampler:
        assert len(started) == 2 and all(p.poll() is None for p in started)
        time.sleep(0.3)
    assert all(p.returncode is not None for p in started)          # killed and waited for
    assert sampler.samples and all(len(s) == 4 for s in sampler.samples)
    count = len(sampler.samples)
    time.sleep(0.2)
    assert len(sampler.samples) == count                            # the sampler stopped too


def test_ctrl_c_inside_the_block_still_kills_the_spinners(started):
    with pytest.raises(KeyboardInterrupt):
        with cpu_load(spinners=1, sample_every_s=10.0):
            raise KeyboardInterrupt
    assert len(started) == 1 and started[0].returncode is not None


def test_windows_pick_the_samples_inside_them():
    sampler = LoadSampler(every_s=10.0)
    sampler.samples = [(5.0, 1.0, 0.5, 0.2), (10.0, 3.0, 1.0, 0.4), (15.0, 5.0, 2.0, 0.6)]
    assert sampler.between(6.0, 15.0) == sampler.samples[1:]
    assert sampler.mean_load_1min(6.0, 15.0) == 4.0 and sampler.mean_load_1min() == 3.0
    assert sampler.mean_load_1min(20.0, 30.0) is None and mean_load_1min([]) is None
    assert sampler.since_start(sampler.started_unix + 12.5) == 12.5
