"""The experiments' leave-one-log-out fit (``PathHarness.cross_fit`` over the base harness's
``fitted_states``): each calibration item is scored by the state fitted without its log, events
and normal logs by the state fitted on all, on tiny simulated logs of different lengths with a
state that records what it was fitted on."""
import pytest

from bench.experiments.driving_path_channel import PathHarness
from driving.demo import sim_config
from driving.schema import read_log, slice_log
from driving.scoring import frame_score as fs
from driving.sim.simulator import simulate_logs

FRAMES, CAL = 12, 4
# the training logs' lengths: the observed statistics (whole logs) name the logs fitted on
LENGTHS = {"log_000": FRAMES, "log_001": FRAMES - 1, "log_002": FRAMES - 2}
IDS = list(LENGTHS)


class RecordingHarness(PathHarness):
    """A harness whose "state" is what it was fitted on: (log id, frames) per item and the
    length of each log's observed statistics (None: none given)."""

    def __init__(self, logs):
        items = [(log, {}) for log in logs]
        train = [(slice_log(log, FRAMES - LENGTHS[log.log_id]), m) for log, m in items[:3]]
        self.train, self.events, self.normals, self.cal_frames = train, items[3:4], items[4:], CAL
        self.tails = [self.tail(it, CAL) for it in self.train]
        self.scorers = []                  # the frame scorer class of every fit, in order

    def fit_state(self, items, channels, observed=None, scorer=fs.FrameScorer):
        self.scorers.append(scorer)
        return ([(log.log_id, len(log)) for log, _ in items],
                None if observed is None else [len(next(iter(o.values()))) for o in observed])


def seen(state, item):
    """``per_log``: the state and the item it scored, as (log id, frames)."""
    log, _ = item
    return state, (log.log_id, len(log))


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    paths = simulate_logs(tmp_path_factory.mktemp("logs"), 5, FRAMES, seed=3, config=sim_config("tiny"))
    return RecordingHarness([read_log(p) for p in paths])


def test_each_tail_is_scored_by_the_state_fitted_without_its_log(harness):
    assert [len(log) for log, _ in harness.train] == list(LENGTHS.values())
    fit = harness.cross_fit(fs.CHANNELS, per_log=seen)
    for i, (state, scored) in enumerate(fit.held_out):
        others = [name for j, name in enumerate(IDS) if j != i]
        # tails of the other logs; observed: the other whole logs
        assert state == ([(name, CAL) for name in others], [LENGTHS[name] for name in others])
        assert scored == (IDS[i], CAL)
    all_tails = ([(name, CAL) for name in IDS], list(LENGTHS.values()))
    assert fit.full == all_tails
    assert fit.events == [(all_tails, ("log_003", FRAMES))]
    assert fit.normals == [(all_tails, ("log_004", FRAMES))]


def test_whole_logs_other_training_logs_and_no_events(harness):
    whole = harness.cross_fit(fs.CHANNELS, seen, items=harness.train, events=[], normals=[])
    assert whole.held_out[1] == (([("log_000", FRAMES), ("log_002", FRAMES - 2)], [FRAMES, FRAMES - 2]),
                                 ("log_001", FRAMES - 1))
    assert whole.events == [] and whole.normals == []
    other = harness.cross_fit(fs.CHANNELS, seen, train=harness.train[1:])
    assert other.held_out[0] == (([("log_002", CAL)], [FRAMES - 2]), ("log_001", CAL))
    assert other.events[0][0] == ([("log_001", CAL), ("log_002", CAL)], [FRAMES - 1, FRAMES - 2])


def test_no_observed_statistics_and_the_full_state_alone(harness):
    states, full, items = harness.fitted_states(fs.CHANNELS, observed=None)
    assert items is harness.tails
    assert states[2] == ([("log_000", CAL), ("log_001", CAL)], None)
    assert full == ([(name, CAL) for name in IDS], None)
    assert harness.fitted_states(fs.CHANNELS, each=False) == (
        [], ([(name, CAL) for name in IDS], list(LENGTHS.values())), harness.tails)


def test_every_fit_gets_the_frame_scorer_class_asked_for(harness):
    class Candidate(fs.FrameScorer):
        pass

    harness.scorers.clear()
    harness.fitted_states(fs.CHANNELS, scorer=Candidate)
    assert harness.scorers == [Candidate] * 4          # on all, then without each of 3 logs
    harness.scorers.clear()
    harness.fitted_states(fs.CHANNELS)
    assert harness.scorers == [fs.FrameScorer] * 4
