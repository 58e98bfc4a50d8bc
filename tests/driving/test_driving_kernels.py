"""The compiled scoring kernels (``driving.kernels``) give bit for bit the numbers of the
numpy expressions they replaced, kept here as the references: random probabilities with
ties, NaNs, zero layout mass and cells no mask selects."""
import re

import numpy as np
import pytest
from warp_reference import resample, source_cells, warp_indices

from driving.demo import sim_config
from driving.kernels import class_confidence
from driving.model.baselines import apply_layout_memory
from driving.model.memory_gate import AGE_EDGES_S, STREAK_EDGES, MemoryGate, MemoryTrace
from driving.schema import LANE_MARKING, LAYOUT_CLASSES, OFF_ROAD, ROAD, SIDEWALK, UNOBSERVED, VEHICLE
from driving.scoring.context_prior import GROUNDS, ground_posterior, near_kerb
from driving.scoring.decision import decide, layout_mass
from driving.scoring.normaliser import CellNormaliser
from driving.scoring.surprise import EPS, _revealed
from driving.sim.simulator import SimConfig, Simulator
from driving.warp import cells_in_world, warp_into

C = 7


@pytest.fixture(scope="module")
def tiny_log():
    """40 frames of the tiny demo town, events included."""
    return Simulator(sim_config("tiny"), seed=3).simulate(40)


def _probs(rng, shape=(3, C, 9, 11)):
    """Softmax-like probabilities with exact ties between classes, quantised so argmax
    ties are common, a NaN cell and an all-zero cell."""
    p = np.round(rng.random(shape) * 4) / 4
    p = (p / np.maximum(p.sum(1, keepdims=True), 1e-3)).astype(np.float32)
    p[0, :, 0, 0] = 0.0
    p[0, 2, 0, 1] = np.nan
    p[1, :, 1, 1] = 0.25                                         # all classes tied
    p[1, ROAD, 2, 2] = p[1, LANE_MARKING, 2, 2] = 0.4            # road and lane tied on top
    return p


def _reference_decide(probs, road_threshold=None, belief=None):
    if road_threshold is None:
        return probs.argmax(1).astype(np.uint8)
    top = probs.argmax(1)
    is_layout = belief >= road_threshold
    lane = probs[:, LANE_MARKING] > probs[:, ROAD]
    out = np.where(is_layout, np.where(lane, LANE_MARKING, ROAD), top).astype(np.uint8)
    fix = ~is_layout & ((top == ROAD) | (top == LANE_MARKING))
    if fix.any():
        n, r, c = np.nonzero(fix)
        other = probs[n, :, r, c]
        other[:, [ROAD, LANE_MARKING]] = -1.0
        out[fix] = other.argmax(1)
    return out


@pytest.mark.parametrize("seed", range(4))
def test_decide_equals_the_numpy_argmax_and_fix(seed):
    rng = np.random.default_rng(seed)
    probs = _probs(rng)
    belief = probs[:, ROAD] + probs[:, LANE_MARKING]
    for threshold in (None, 0.0, 0.35, 2.0):                    # every cell, some, none
        np.testing.assert_array_equal(decide(probs, threshold, belief),
                                      _reference_decide(probs, threshold, belief))
    np.testing.assert_array_equal(decide(probs, 0.35), _reference_decide(probs, 0.35, belief))
    strided = probs.transpose(0, 1, 3, 2)                        # a non-contiguous batch
    np.testing.assert_array_equal(decide(strided, 0.35), _reference_decide(strided, 0.35,
                                  strided[:, ROAD] + strided[:, LANE_MARKING]))


def _reference_layout_memory(probs, memory, observed):
    n_layout = len(LAYOUT_CLASSES)
    known = (memory < n_layout) & (observed == UNOBSERVED)
    if known.any():
        mass = probs[:, :n_layout].sum(1)
        for c in range(n_layout):
            probs[:, c] = np.where(known, np.where(memory == c, mass, 0.0), probs[:, c])
    return probs


@pytest.mark.parametrize("hidden_share", [0.0, 0.5, 1.0])
def test_layout_memory_equals_the_numpy_mix(hidden_share):
    rng = np.random.default_rng(5)
    probs = rng.random((3, C, 9, 11)).astype(np.float32) * 1e3   # sums that round
    memory = rng.choice([0, 1, 2, 3, 4, 6, 255], size=(3, 9, 11)).astype(np.uint8)
    observed = np.where(rng.random((3, 9, 11)) < hidden_share, UNOBSERVED, 1).astype(np.uint8)
    np.testing.assert_array_equal(apply_layout_memory(probs.copy(), memory, observed),
                                  _reference_layout_memory(probs.copy(), memory, observed))


def _reference_gate_apply(gate, probs, trace, observed):
    def bins(age):
        return np.searchsorted(np.asarray(AGE_EDGES_S), age, side="right")
    known = trace.remembered != UNOBSERVED
    cls = np.minimum(np.where(known, trace.remembered, 0).astype(np.int64), gate.weights_.shape[0] - 1)
    streak_bin = np.searchsorted(np.asarray(STREAK_EDGES), trace.streak, side="right")
    gate_bin = bins(trace.age_s) * (len(STREAK_EDGES) + 1) + streak_bin
    weight = np.where(known, gate.weights_.ravel()[cls * gate.n_bins + gate_bin], 0.0).astype(np.float32)
    hidden = observed == UNOBSERVED
    w = np.where(hidden, weight, 0.0)
    if w.any():
        probs *= (1.0 - w)[:, None]
        n, r, c = np.nonzero((w != 0) & (trace.remembered < probs.shape[1]))
        probs[n, trace.remembered[n, r, c], r, c] += w[n, r, c]
    n, r, c = np.nonzero(hidden & np.isfinite(trace.moved_age_s))
    v = gate.moved_weights_[bins(trace.moved_age_s[n, r, c])]
    probs[n, :, r, c] *= (1.0 - v)[:, None]
    probs[n, VEHICLE, r, c] += v
    return probs


@pytest.mark.parametrize("zero_weights", [False, True])
def test_memory_gate_apply_equals_the_numpy_mix(zero_weights):
    rng = np.random.default_rng(7)
    shape = (4, 9, 11)
    gate = MemoryGate()
    gate.weights_ = rng.choice([0.0, 0.3, 0.95], size=(C - 1, gate.n_bins)).astype(np.float32)
    if zero_weights:
        gate.weights_[:] = 0.0                                    # the mix skipped: probs as they were
    gate.moved_weights_ = rng.random(len(AGE_EDGES_S) + 1).astype(np.float32)
    ages = np.array([0.0, 0.25, 0.3, 1.0, 7.9, 16.0, 99.0, np.inf], np.float32)   # on the edges too
    trace = MemoryTrace(rng.choice([0, 1, 3, 4, 5, 6, 7, 255], size=shape).astype(np.uint8),
                        rng.choice(ages, size=shape), rng.integers(0, 20, size=shape).astype(np.int32),
                        rng.choice(ages, size=shape))
    probs = rng.dirichlet(np.ones(C), size=shape).astype(np.float32).transpose(0, 3, 1, 2).copy()
    observed = rng.choice([1, 4, 255], size=shape).astype(np.uint8)
    np.testing.assert_array_equal(gate.apply(probs.copy(), trace, observed),
                                  _reference_gate_apply(gate, probs.copy(), trace, observed))


@pytest.mark.parametrize("yaw", [0.0, 0.3, -2.7, np.pi / 2])
def test_warp_into_equals_source_cells_then_resample(yaw):
    meta = SimConfig().meta()
    rng = np.random.default_rng(9)
    grid = rng.integers(0, 7, size=tuple(meta.grid_shape)).astype(np.uint8)
    visible = rng.random(tuple(meta.grid_shape)) < 0.5
    here = cells_in_world(np.array([10.0, -4.0, 0.1]), meta)
    for dx in (0.0, 0.25, 3.7, 80.0):                             # half-cell offsets round to even
        pose = np.array([10.0 + dx, -4.0 + dx / 2, yaw])
        warp = source_cells(pose, here, meta)
        np.testing.assert_array_equal(warp_into(grid, pose, here, meta), resample(grid, warp))
        np.testing.assert_array_equal(warp_into(visible, pose, here, meta, fill=True),
                                      resample(visible, warp, fill=True))


def _reference_ground(layout_probs, observed, resolution_m, kerb_m):
    q = np.asarray(layout_probs, dtype=np.float32)[:, :4]
    q = q / np.maximum(q.sum(1, keepdims=True), 1e-6)
    is_layout = np.isin(observed, LAYOUT_CLASSES)
    onehot = (observed[:, None] == np.arange(4, dtype=observed.dtype)[None, :, None, None])
    q = np.where(is_layout[:, None], onehot, q)
    kerbside = near_kerb(np.isin(q.argmax(1), (OFF_ROAD, SIDEWALK)), resolution_m, kerb_m)
    out = np.empty((len(q), len(GROUNDS)) + q.shape[2:], np.float32)
    out[:, 0], out[:, 1], out[:, 2] = q[:, OFF_ROAD], q[:, SIDEWALK], q[:, LANE_MARKING]
    out[:, 3] = q[:, ROAD] * kerbside
    out[:, 4] = q[:, ROAD] * ~kerbside
    return out


@pytest.mark.parametrize("seed", range(3))
def test_ground_posterior_equals_the_numpy_expression(seed):
    rng = np.random.default_rng(seed)
    probs = _probs(rng, (3, C, 24, 20)) * np.float32(3.3)        # layout sums that round
    probs[2, :4, 3:6, 3:6] = 1e-8                                # layout mass under the floor
    observed = rng.choice([0, 1, 2, 3, 4, 5, 6, 255], size=(3, 24, 20)).astype(np.uint8)
    np.testing.assert_array_equal(ground_posterior(probs, observed, 0.5, 2.2),
                                  _reference_ground(probs, observed, 0.5, 2.2))


def test_normaliser_apply_equals_the_gathered_division():
    meta = SimConfig().meta()
    rng = np.random.default_rng(11)
    shape = (3,) + tuple(meta.grid_shape)
    norm = CellNormaliser(maps=("revealed", "object_recon"))
    norm.scale_ = rng.uniform(0.05, 3.0, size=(2, C, norm.n_bands)).astype(np.float32)
    cell_map = (rng.random(shape) * 7).astype(np.float32)
    cell_map[0, :4, :4] = 0.0
    observed = rng.choice([0, 3, 4, 6, 255], size=shape).astype(np.uint8)   # 255: the last class
    for m, name in enumerate(norm.maps):
        cls = np.minimum(observed, C - 1).astype(np.int64)
        expected = (cell_map / norm.scale_[m][cls, norm.bands(meta)[None]]).astype(np.float32)
        np.testing.assert_array_equal(norm.apply(name, cell_map, observed, meta), expected)


def _reference_layout_mass(probs):
    classes = np.moveaxis(np.asarray(probs), 1, 0)
    layout = classes[:len(LAYOUT_CLASSES)].sum(0)
    road = classes[ROAD] + classes[LANE_MARKING]
    return np.where(layout > 1e-6, road / np.maximum(layout, 1e-6), 0.5).astype(np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layout_mass_equals_the_numpy_expression(dtype):
    rng = np.random.default_rng(13)
    probs = (_probs(rng) * np.float32(2.7)).astype(dtype)      # layout sums that round
    probs[1, :4, 0, :3] = [[0.0], [1e-6], [2e-7], [0.0]]         # at and under the floor
    np.testing.assert_array_equal(layout_mass(probs), _reference_layout_mass(probs))
    rows = probs.transpose(0, 2, 3, 1).reshape(-1, C)            # (n, C)
    np.testing.assert_array_equal(layout_mass(rows), _reference_layout_mass(rows))
    cells = rng.random((3, 9, 11)) < 0.4                          # written on these only
    out = np.full((3, 9, 11), 7.0, np.float32)
    layout_mass(probs, cells, out)
    np.testing.assert_array_equal(out, np.where(cells, _reference_layout_mass(probs), 7.0))


def test_class_confidence_equals_take_along_axis():
    rng = np.random.default_rng(17)
    probs = _probs(rng)
    classes = rng.integers(0, C, size=(3, 9, 11)).astype(np.uint8)
    visible = rng.random((3, 9, 11)) < 0.5
    out = np.empty((3, 9, 11), np.float32)
    class_confidence(probs, classes, visible, out)
    chosen = np.take_along_axis(probs, classes[:, None].astype(np.int64), 1)[:, 0]
    np.testing.assert_array_equal(out, np.where(visible, 1.0, chosen))


def _reference_revealed(maps_revealed, probs, prev_probs, start, log):
    poses, visible, observed = log.poses, log.visible, log.semantic
    for i, t in enumerate(range(start, start + len(probs))):
        before = probs[i - 1] if i > 0 else prev_probs
        if before is None:
            continue
        warp = rows, cols, _ = warp_indices(poses[t - 1], poses[t], log.meta)
        was_hidden = ~resample(visible[t - 1], warp, fill=True)
        r, c = np.nonzero(was_hidden & visible[t])
        cls = np.minimum(observed[t][r, c], len(before) - 1).astype(np.int64)
        maps_revealed[t][r, c] = -np.log(np.maximum(before[cls, rows[r, c], cols[r, c]], EPS))


def test_revealed_surprise_equals_warping_the_visibility(tiny_log):
    rng = np.random.default_rng(19)
    probs = rng.dirichlet(np.ones(C), size=(12,) + tiny_log.semantic.shape[1:]).astype(np.float32)
    probs = np.ascontiguousarray(probs.transpose(0, 3, 1, 2))
    probs[3, :, :5] = 0.0                                        # floored at EPS
    for start, prev in ((0, None), (8, probs[0])):                # the log's first batch, a later one
        got, expected = (np.zeros(tiny_log.semantic.shape, np.float32) for _ in range(2))
        _revealed(got, probs[:12 if start == 0 else 4], prev, start, tiny_log)
        _reference_revealed(expected, probs[:12 if start == 0 else 4], prev, start, tiny_log)
        assert (expected > 0).any()
        np.testing.assert_array_equal(got, expected)


def test_kernels_import_and_run_where_numba_cannot_cache(run_without_numba_cache):
    """Without a writable cache location (a read-only install, no writable home) numba
    refuses ``cache=True``; the kernels then compile uncached instead of breaking the
    import of driving (and so of ``unmask``)."""
    script = (
        "import numpy as np\n"
        "from driving.kernels import class_confidence\n"
        "out = np.zeros((1, 1, 2), np.float32)\n"
        "class_confidence(np.full((1, 2, 1, 2), 0.5, np.float32), np.zeros((1, 1, 2), np.int64),"
        " np.array([[[True, False]]]), out)\n"
        "print(out.tolist())\n")
    assert run_without_numba_cache(script) == "[[[1.0, 0.5]]]"


def _short(cells):
    """A ``(N, H, W)`` array one frame short of ``cells`` (uint8 zeros)."""
    return np.zeros((cells[0] - 1,) + cells[1:], np.uint8)


def _gate_with_short_trace(probs, cells):
    gate = MemoryGate()
    gate.weights_ = np.zeros((C - 1, gate.n_bins), np.float32)
    gate.moved_weights_ = np.zeros(len(AGE_EDGES_S) + 1, np.float32)
    short = _short(cells)
    trace = MemoryTrace(short, short.astype(np.float32), short.astype(np.int32), short.astype(np.float32))
    return gate.apply(probs, trace, np.zeros(cells, np.uint8))


def _normalise_short_observed(probs, cells):
    meta = SimConfig().meta()
    norm = CellNormaliser(maps=("revealed",))
    norm.scale_ = np.ones((1, C, norm.n_bands), np.float32)
    cell_map = np.zeros((cells[0],) + tuple(meta.grid_shape), np.float32)
    return norm.apply("revealed", cell_map, _short(cell_map.shape), meta)


@pytest.mark.parametrize("call, named", [
    (_gate_with_short_trace, "MemoryGate.apply: remembered"),
    (lambda probs, cells: apply_layout_memory(probs, _short(cells), np.zeros(cells, np.uint8)),
     "apply_layout_memory: memory"),
    (lambda probs, cells: decide(probs, 0.5, belief=_short(cells).astype(np.float32)), "decide: belief"),
    (lambda probs, cells: class_confidence(probs, _short(cells), np.zeros(cells, bool),
                                           np.empty(cells, np.float32)), "class_confidence: classes"),
    (_normalise_short_observed, "CellNormaliser.apply: observed"),
])
def test_mismatched_shapes_are_refused_not_read_past(call, named):
    """The kernels do no bounds checks: each wrapper refuses an array one frame short,
    naming it and both shapes, where the kernel would read past its end."""
    probs = _probs(np.random.default_rng(0))
    cells = (len(probs),) + probs.shape[2:]
    shape = r"\(\d+, \d+, \d+\)"
    with pytest.raises(ValueError, match=rf"^{re.escape(named)} has shape {shape}, expected {shape}$"):
        call(probs, cells)


@pytest.mark.parametrize("road_threshold", [None, 0.5])
def test_decide_on_float16_equals_the_numpy_argmax_and_fix(road_threshold):
    """float16 is widened to float32 for the kernel: exact, so the decisions are float16's."""
    probs = _probs(np.random.default_rng(5)).astype(np.float16)
    belief = None if road_threshold is None else probs[:, ROAD] + probs[:, LANE_MARKING]
    np.testing.assert_array_equal(decide(probs, road_threshold),
                                  _reference_decide(probs, road_threshold, belief))


def test_layout_mass_refuses_float16():
    with pytest.raises(TypeError, match="layout_mass: float16"):
        layout_mass(_probs(np.random.default_rng(5)).astype(np.float16))


def test_layout_mass_cells_and_out_are_independent():
    """``cells`` alone: a new map, right on those cells; ``out`` alone: every cell written;
    both: ``out`` written on ``cells`` only."""
    probs = _probs(np.random.default_rng(6))
    expected = _reference_layout_mass(probs)
    cells = np.zeros(expected.shape, bool)
    cells[0] = True
    np.testing.assert_array_equal(layout_mass(probs, cells)[cells], expected[cells])
    out = np.full(expected.shape, np.nan, np.float32)
    np.testing.assert_array_equal(layout_mass(probs, out=out), expected)
    np.testing.assert_array_equal(out, expected)
    out[:] = -1.0
    layout_mass(probs, cells, out)
    np.testing.assert_array_equal(out, np.where(cells, expected, -1.0))
