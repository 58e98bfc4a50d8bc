"""The highway's oncoming carriageway carries traffic all along the ego's drive, not only
past its starting point."""
import numpy as np

from driving.schema import VEHICLE
from driving.sim.highway import HighwayConfig, HighwaySimulator
from driving.warp import cell_offsets


def test_oncoming_traffic_is_met_through_the_whole_log():
    # one lane each way: every vehicle cell well to the ego's left is on the oncoming carriageway
    config = HighwayConfig(lanes=1, anomaly_interval_s=0.0)
    log = HighwaySimulator(config, seed=4).simulate(150)
    _, right = cell_offsets(log.meta)
    oncoming_side = right < -(config.median_m / 2 + 1.0)           # past the median's near edge
    seen = ((log.semantic_true == VEHICLE) & oncoming_side[None]).any(axis=(1, 2))
    first, last = seen[:25].mean(), seen[75:].mean()            # the first 5 s, the last 15 s
    assert first > 0.2
    assert last > 0.5 * first                                   # still met after 15 s
