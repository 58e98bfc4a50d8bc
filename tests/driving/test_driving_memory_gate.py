"""The memory gate: the network's hidden-cell guess never knows less than the memory."""
import numpy as np

from core.metrics import auprc
from driving.inputs import future_targets
from driving.model.baselines import PersistenceBaseline
from driving.model.memory_gate import WEIGHTS, MemoryGate, memory_trace
from driving.schema import CLASSES, ROAD, STATIC_OBSTACLE, UNOBSERVED, VEHICLE, DriveLog, LogMeta


def _parked_debris_log(n_frames: int = 30, seed: int = 0) -> DriveLog:
    """A standing ego; debris and a car seen for 8 frames, hidden for 14, seen again."""
    rng = np.random.default_rng(seed)
    meta = LogMeta(grid_shape=(16, 16), ego_cell=(10, 8), rate_hz=5.0)
    truth = np.full((n_frames, 16, 16), ROAD, np.uint8)
    debris = rng.random((16, 16)) < 0.1
    truth[:, debris] = STATIC_OBSTACLE
    truth[:, 2:4, 2:6] = VEHICLE
    visible = np.ones(truth.shape, bool)
    visible[8:22, :8] = False                      # the left half hidden for a while
    semantic = np.where(visible, truth, UNOBSERVED).astype(np.uint8)
    t = np.arange(n_frames)
    return DriveLog(log_id=f"gate_{seed}", meta=meta, frame=t, timestamp=t / meta.rate_hz,
                    ego_x=np.zeros(n_frames), ego_y=np.zeros(n_frames), ego_yaw=np.zeros(n_frames),
                    ego_speed=np.zeros(n_frames), semantic=semantic, visible=visible,
                    semantic_true=truth, anomaly=np.zeros(n_frames, bool))


def _hedging_network(log: DriveLog) -> np.ndarray:
    """A network that hedges hidden cells towards the background (road)."""
    probs = np.full((len(log), len(CLASSES)) + log.meta.grid_shape, 0.02, np.float32)
    probs[:, ROAD] = 1.0 - 0.02 * (len(CLASSES) - 1)
    return probs


def _occluded_ap(probs, log, cls):
    hidden = ~log.visible
    return auprc(log.semantic_true[hidden] == cls, probs[:, cls][hidden])


def test_memory_trace_remembers_class_age_and_streak():
    log = _parked_debris_log()
    trace = memory_trace(log)
    hidden = ~log.visible
    np.testing.assert_array_equal(trace.remembered[hidden], log.semantic_true[hidden])
    assert trace.age_s[12, 0, 0] == np.float32((12 - 7) / 5.0)     # last seen at frame 7
    assert trace.streak[12, 0, 0] == 8                              # seen in 8 frames in a row
    assert (trace.age_s[log.visible] == 0).all()


def test_gate_never_below_persistence_where_the_network_hedges():
    train, test = _parked_debris_log(seed=0), _parked_debris_log(seed=1)
    gate = MemoryGate().fit([_hedging_network(train)], [memory_trace(train)],
                            [future_targets(train, (1, 2, 5, 10, 20))], [train.semantic])
    network = _hedging_network(test)
    gated = gate.apply(network.copy(), memory_trace(test), test.semantic)
    persistence = PersistenceBaseline().predict_proba(test)
    for cls in (STATIC_OBSTACLE, VEHICLE, ROAD):
        assert _occluded_ap(gated, test, cls) >= _occluded_ap(persistence, test, cls) - 1e-9
    assert _occluded_ap(network, test, STATIC_OBSTACLE) < 0.5      # what the gate fixes
    np.testing.assert_allclose(gated.sum(1), 1.0, atol=1e-5)        # still a distribution
    seen = np.broadcast_to(test.visible[:, None], gated.shape)
    np.testing.assert_array_equal(gated[seen], network[seen])       # visible cells untouched


def test_a_static_obstacle_the_normal_logs_never_show_hidden_is_still_trusted():
    train = _parked_debris_log(seed=0)
    target = future_targets(train, (1, 2, 5, 10, 20))
    target[np.isin(train.semantic_true, (STATIC_OBSTACLE, VEHICLE))] = UNOBSERVED   # no object targets
    gate = MemoryGate().fit([_hedging_network(train)], [memory_trace(train)], [target],
                            [train.semantic])
    assert gate.cells_[STATIC_OBSTACLE].sum() == 0 and gate.cells_[VEHICLE].sum() == 0
    assert gate.weights_[STATIC_OBSTACLE].max() > 0.5                # full trust, its own prior
    assert gate.weights_[VEHICLE].max() > 0.5                        # borrows the road's pool
    again = MemoryGate.from_dict(gate.to_dict())
    np.testing.assert_array_equal(again.weights_, gate.weights_)


def test_a_static_obstacle_is_trusted_though_the_pool_of_classes_is_moving_cars():
    """Normal logs hide few static obstacles, so their bins shrink towards a prior: full
    trust (it stays where it was seen), not the pool of all classes, here cars that have
    always moved on by the time their cells are revealed."""
    train = _parked_debris_log(seed=0)
    trace = memory_trace(train)
    hidden = train.semantic == UNOBSERVED
    target = np.where(hidden & (trace.remembered == VEHICLE), ROAD, UNOBSERVED).astype(np.uint8)
    gate = MemoryGate().fit([_hedging_network(train)], [trace], [target], [train.semantic])
    assert gate.cells_[VEHICLE].sum() > 0 and gate.cells_[STATIC_OBSTACLE].sum() == 0
    assert gate.weights_[VEHICLE].max() < 0.1                        # a car's memory is stale
    np.testing.assert_allclose(gate.weights_[STATIC_OBSTACLE], WEIGHTS[-1])
    assert gate.weights_[ROAD].max() < 0.1                           # others borrow the pool


def _passing_car_log(n_frames: int = 14, lost_from: int = 5, hidden_cols=(12, 40)) -> DriveLog:
    """A standing ego; a car of 8 x 3 cells crossing at 2 cells a frame, seen until frame
    ``lost_from - 1``, then passing behind an occluder over columns ``hidden_cols``."""
    meta = LogMeta(grid_shape=(16, 40), ego_cell=(15, 20), rate_hz=5.0)
    truth = np.full((n_frames, 16, 40), ROAD, np.uint8)
    for t in range(n_frames):
        truth[t, 4:12, 2 + 2 * t:5 + 2 * t] = VEHICLE
    visible = np.ones(truth.shape, bool)
    visible[lost_from:, :, slice(*hidden_cols)] = False
    semantic = np.where(visible, truth, UNOBSERVED).astype(np.uint8)
    t = np.arange(n_frames)
    return DriveLog(log_id="passing", meta=meta, frame=t, timestamp=t / meta.rate_hz,
                    ego_x=np.zeros(n_frames), ego_y=np.zeros(n_frames), ego_yaw=np.zeros(n_frames),
                    ego_speed=np.zeros(n_frames), semantic=semantic, visible=visible,
                    semantic_true=truth, anomaly=np.zeros(n_frames, bool))


def test_the_extrapolation_moves_a_lost_car_along_its_velocity():
    log = _passing_car_log()
    trace = memory_trace(log)
    # last seen at frame 4 in columns 10-12; three frames later it is in columns 16-18
    np.testing.assert_allclose(trace.moved_age_s[7, 4:12, 16:19], 0.6, atol=1e-6)
    assert np.isinf(trace.moved_age_s[7, 4:12, 10:13]).all()       # not where it was seen
    assert (trace.remembered[7, 4:12, 12] == VEHICLE).all()         # ... which the memory keeps
    assert np.isinf(trace.moved_age_s[:5]).all()                    # nothing lost yet


def test_the_gate_learns_to_trust_the_extrapolation_and_round_trips():
    # six normal logs in which the car comes out from behind a narrow occluder where its
    # velocity says, 2-4 frames after it was lost
    train = [_passing_car_log(hidden_cols=(12, 18))] * 6
    gate = MemoryGate().fit([_hedging_network(log) for log in train],
                            [memory_trace(log) for log in train],
                            [future_targets(log, (1, 2, 5, 10, 20)) for log in train],
                            [log.semantic for log in train])
    assert gate.moved_weights_[2] > 0.3                              # seen 0.5-1 s ago
    test = _passing_car_log(n_frames=12)
    assert gate.moved_weights_[gate.moved_cells_ == 0].max() == 0   # no data: no extrapolation
    network, trace = _hedging_network(test), memory_trace(test)
    gated = gate.apply(network.copy(), trace, test.semantic)
    assert (gated[7, VEHICLE, 4:12, 16:19] > network[7, VEHICLE, 4:12, 16:19] + 0.15).all()
    np.testing.assert_allclose(gated.sum(1), 1.0, atol=1e-5)
    again = MemoryGate.from_dict(gate.to_dict())
    np.testing.assert_array_equal(again.moved_weights_, gate.moved_weights_)
    np.testing.assert_array_equal(again.apply(network.copy(), trace, test.semantic), gated)
