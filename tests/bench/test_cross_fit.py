"""The experiments' leave-one-log-out fit (``PathHarness.cross_fit``): each calibration item is
scored by the state fitted without its log, events and normal logs by the state fitted on all,
on tiny simulated logs with a state that records what it was fitted on."""
import pytest

from bench.experiments.driving_path_channel import PathHarness
from driving.demo import sim_config
from driving.schema import read_log
from driving.scoring import frame_score as fs
from driving.sim.simulator import simulate_logs

FRAMES, CAL = 12, 4


class RecordingHarness(PathHarness):
    """A harness whose "state" is what it was fitted on: (log id, frames) per item and the
    length of each log's observed statistics; ``per_log`` results name the scored item."""

    def __init__(self, logs):
        items = [(log, {}) for log in logs]
        self.train, self.events, self.normals, self.cal_frames = items[:3], items[3:4], items[4:], CAL
        self.tails = [self.tail(it, CAL) for it in self.train]

    def fit_state(self, items, channels, observed=None):
        return ([(log.log_id, len(log)) for log, _ in items],
                [len(next(iter(o.values()))) for o in observed])


def seen(state_and_item):
    state, (log, _) = state_and_item
    return state, (log.log_id, len(log))


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    paths = simulate_logs(tmp_path_factory.mktemp("logs"), 5, FRAMES, seed=3, config=sim_config("tiny"))
    return RecordingHarness([read_log(p) for p in paths])


def test_each_tail_is_scored_by_the_state_fitted_without_its_log(harness):
    fit = harness.cross_fit(fs.CHANNELS, per_log=lambda state, item: seen((state, item)))
    ids = ["log_000", "log_001", "log_002"]
    for i, (state, scored) in enumerate(fit.held_out):
        others = [name for j, name in enumerate(ids) if j != i]
        assert state == ([(name, CAL) for name in others], [FRAMES, FRAMES])  # observed: whole logs
        assert scored == (ids[i], CAL)
    all_tails = ([(name, CAL) for name in ids], [FRAMES] * 3)
    assert fit.events == [(all_tails, ("log_003", FRAMES))]
    assert fit.normals == [(all_tails, ("log_004", FRAMES))]


def test_whole_logs_other_training_logs_and_no_events(harness):
    record = lambda state, item: seen((state, item))
    whole = harness.cross_fit(fs.CHANNELS, record, items=harness.train, events=[], normals=[])
    assert whole.held_out[1] == (([("log_000", FRAMES), ("log_002", FRAMES)], [FRAMES, FRAMES]),
                                 ("log_001", FRAMES))
    assert whole.events == [] and whole.normals == []
    other = harness.cross_fit(fs.CHANNELS, record, train=harness.train[1:])
    assert other.held_out[0] == (([("log_002", CAL)], [FRAMES]), ("log_001", CAL))
    assert other.events[0][0] == ([("log_001", CAL), ("log_002", CAL)], [FRAMES, FRAMES])
