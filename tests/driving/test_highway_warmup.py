"""A highway log starts in settled traffic: the simulator drives the cars, the ego included,
for ``warmup_s`` before the first recorded frame, so neither brakes into its place in the
first seconds of a log (as they did when a log started from the cars' random placement)."""
from dataclasses import replace

import numpy as np

from driving.sim.highway import HighwayConfig, HighwaySimulator, _warm_up

SMALL = HighwayConfig(grid_shape=(32, 32), anomaly_interval_s=0.0)
SEEDS = range(8)


def _ego_speed_change(config: HighwayConfig) -> float:
    """Mean over seeds of the ego's speed at the first frame minus 13 s later (m/s)."""
    drops = []
    for seed in SEEDS:
        speed = HighwaySimulator(config, seed=seed).simulate(70).ego_speed
        drops.append(speed[0] - speed[65])
    return float(np.mean(drops))


def test_the_ego_starts_at_its_settled_speed():
    assert abs(_ego_speed_change(SMALL)) < 1.5                # measured: -0.3 m/s
    # the same seeds without the warm-up: the ego brakes into the traffic ahead (3.7 m/s)
    assert _ego_speed_change(replace(SMALL, warmup_s=0.0)) > 2.5


def _cars_speed_change(warmup_s: float) -> float:
    """Mean over seeds and cars of |speed now - speed 13 s later| after the warm-up (m/s)."""
    changes = []
    for seed in SEEDS:
        simulator = HighwaySimulator(replace(SMALL, warmup_s=warmup_s), seed=seed)
        ways = simulator._traffic(np.random.default_rng(seed), 600.0, 20.0)
        _warm_up(ways, warmup_s, 0.1)
        before = np.concatenate([way.v[1:] if k == 0 else way.v for k, way in enumerate(ways)])
        for t in range(130):
            for way in ways:
                way.step(0.1, 0.1 * t)
        after = np.concatenate([way.v[1:] if k == 0 else way.v for k, way in enumerate(ways)])
        changes.append(np.abs(after - before).mean())
    return float(np.mean(changes))


def test_the_cars_start_at_their_settled_speeds():
    settled = _cars_speed_change(HighwayConfig().warmup_s)
    assert settled < 1.5                                      # measured: about 1 m/s
    assert _cars_speed_change(0.0) > 2 * settled + 1.0       # unsettled: 4-5 m/s


def test_the_warm_up_moves_the_recording_back_to_the_ego_start():
    """After the warm-up the ego is back at ``s = 0`` (where the layout and sign posts were
    placed) and the oncoming way is shifted by how far it drove, not left where it went."""
    simulator = HighwaySimulator(SMALL, seed=3)
    ways = simulator._traffic(np.random.default_rng(3), 600.0, 20.0)
    start = [way.s.copy() for way in ways]
    _warm_up(ways, SMALL.warmup_s, 0.1)
    assert ways[0].s[0] == 0.0
    assert abs(np.median(ways[1].s - start[1])) < 1e-9
    assert np.ptp(ways[1].s - start[1]) > 10.0          # the cars did drive, at their own speeds
