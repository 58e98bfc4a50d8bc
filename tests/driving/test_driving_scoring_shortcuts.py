"""Scoring's shortcuts give exactly the numbers of the plain computations they replaced
(kept here as the references): the object regions' separable pooling, the kerb strip's
disc dilation, the cross-entropy on the cells it writes,
the memory's flat world indices, one log's world indices and frame warps shared by every
map, and the memory gate's mix written by index."""
import numpy as np
import pytest
import torch
from scipy.ndimage import distance_transform_edt
from torch.nn import functional as F
from warp_reference import warp_indices

from driving.demo import sim_config
from driving.inputs import stack_frames
from driving.model.baselines import WorldCells, world_cells, world_memory, world_shape
from driving.model.masking import object_regions
from driving.model.memory_gate import N_AGE_BINS, MemoryGate, VehicleTracks, gate_bins, memory_trace
from driving.schema import OBJECT_CLASSES, SIDEWALK, UNOBSERVED, VEHICLE
from driving.scoring.context_prior import near_kerb
from driving.scoring.decision import RoadBelief
from driving.scoring.surprise import EPS, _cross_entropy
from driving.sim.simulator import Simulator


@pytest.fixture(scope="module")
def tiny_log():
    """40 frames of the tiny demo town, events included."""
    return Simulator(sim_config("tiny"), seed=3).simulate(40)


def test_object_regions_equal_the_square_max_pool():
    rng = np.random.default_rng(0)
    current = rng.choice([0, 1, 4, 5, 6, 255], size=(6, 40, 24), p=[.4, .3, .05, .05, .05, .15])
    margins = np.array([0, 1, 4, 4, 6, 2])
    objects = torch.from_numpy(np.isin(current, OBJECT_CLASSES))
    for i, m in enumerate(margins):
        square = F.max_pool2d(objects[i, None, None].float(), 2 * m + 1, stride=1, padding=m)[0, 0] > 0
        assert torch.equal(object_regions(current, margins)[i], square)
    assert torch.equal(object_regions(current[:2], 4),
                       F.max_pool2d(objects[:2, None].float(), 9, stride=1, padding=4)[:, 0] > 0)


@pytest.mark.parametrize("resolution_m, kerb_m", [(0.5, 2.2), (0.5, 1.0), (0.25, 2.2), (1.0, 3.0)])
@pytest.mark.parametrize("height", [48, 9, 3, 1])             # short grids: rows past the disc
def test_near_kerb_equals_thresholding_the_exact_distance(resolution_m, kerb_m, height):
    rng = np.random.default_rng(1)
    kerb = rng.random((5, height, 40)) < np.array([0.002, 0.02, 0.3, 0.0, 1.0])[:, None, None]
    kerb[1, :, :3] = True                                      # a kerb along an edge
    expected = np.stack([distance_transform_edt(~k) * resolution_m < kerb_m for k in kerb])
    np.testing.assert_array_equal(near_kerb(kerb, resolution_m, kerb_m), expected)
    assert not near_kerb(kerb, resolution_m, kerb_m)[3].all()  # no kerb: scipy's answer kept


def test_cross_entropy_on_its_cells_equals_every_cell_masked():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(7), size=(4, 16, 16)).astype(np.float32).transpose(0, 3, 1, 2)
    probs[0, :, 0, 0] = 0.0                                    # floored at EPS
    observed = rng.choice([0, 1, 2, 4, 5, 255], size=(4, 16, 16)).astype(np.uint8)
    cells = rng.random((4, 16, 16)) < 0.3
    cells[0, 0, 0] = True
    cls = np.minimum(observed, 6).astype(np.int64)
    every = -np.log(np.maximum(np.take_along_axis(probs, cls[:, None], axis=1)[:, 0], EPS))
    got = _cross_entropy(probs, observed, cells)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, np.where(cells, every, 0.0))


def _world_memory_reference(log, before, layout_only):
    """``world_memory`` as it indexed the world raster with (ix, iy) pairs."""
    out = np.empty_like(log.semantic)
    ix, iy = world_cells(log)
    world = np.full(world_shape(ix, iy), UNOBSERVED, dtype=np.uint8)
    for t in range(len(log)):
        if before:
            out[t] = world[ix[t], iy[t]]
        seen = log.visible[t] & (log.semantic[t] != UNOBSERVED)
        if layout_only:
            seen &= log.semantic[t] <= SIDEWALK
        world[ix[t][seen], iy[t][seen]] = log.semantic[t][seen]
        if not before:
            out[t] = world[ix[t], iy[t]]
    return out


def _memory_trace_reference(log):
    """``memory_trace``'s arrays as it indexed the world rasters with (ix, iy) pairs."""
    shape = log.semantic.shape
    remembered, age = np.full(shape, UNOBSERVED, np.uint8), np.full(shape, np.inf, np.float32)
    streak, moved = np.zeros(shape, np.int32), np.full(shape, np.inf, np.float32)
    ix, iy = world_cells(log)
    world = world_shape(ix, iy)
    cls, seen_at, run = np.full(world, UNOBSERVED, np.uint8), np.full(world, -np.inf), np.zeros(world, np.int32)
    tracks = VehicleTracks(world, log.meta.resolution_m)
    times = np.asarray(log.timestamp, dtype=np.float64)
    for t in range(len(log)):
        seen = log.visible[t] & (log.semantic[t] != UNOBSERVED)
        x, y, c = ix[t][seen], iy[t][seen], log.semantic[t][seen]
        run[x, y] = np.where(cls[x, y] == c, run[x, y] + 1, 1)
        cls[x, y], seen_at[x, y] = c, times[t]
        remembered[t], streak[t] = cls[ix[t], iy[t]], run[ix[t], iy[t]]
        age[t] = times[t] - seen_at[ix[t], iy[t]]
        moved[t] = tracks.update(log.semantic[t] == VEHICLE, ix[t], iy[t], times[t])
    return remembered, age, streak, moved


def test_world_memory_and_trace_equal_the_paired_indexing(tiny_log):
    for before in (True, False):
        for layout_only in (True, False):
            np.testing.assert_array_equal(world_memory(tiny_log, before, layout_only),
                                          _world_memory_reference(tiny_log, before, layout_only))
    trace = memory_trace(tiny_log)
    for got, expected in zip((trace.remembered, trace.age_s, trace.streak, trace.moved_age_s),
                             _memory_trace_reference(tiny_log)):
        np.testing.assert_array_equal(got, expected)
    assert (trace.streak > 1).any() and np.isfinite(trace.age_s).any()


def _trace_arrays(trace):
    return trace.remembered, trace.age_s, trace.streak, trace.moved_age_s


def test_one_world_cells_per_log_gives_every_map_as_computed_afresh(tiny_log):
    world = WorldCells(tiny_log)                       # scoring's: one per log, shared
    for before, layout_only in ((True, False), (False, True)):
        np.testing.assert_array_equal(world_memory(tiny_log, before, layout_only, world=world),
                                      world_memory(tiny_log, before, layout_only))
    for got, expected in zip(_trace_arrays(memory_trace(tiny_log, world)),
                             _trace_arrays(memory_trace(tiny_log))):
        np.testing.assert_array_equal(got, expected)
    mass = np.random.default_rng(4).random(tiny_log.semantic.shape).astype(np.float32)
    np.testing.assert_array_equal(RoadBelief(tiny_log, world=world).update(0, mass),
                                  RoadBelief(tiny_log).update(0, mass))
    assert world.ix is world.ix and world.flat is world.flat   # computed once, then kept


def _stack_reference(log, history):
    """``stack_frames`` (no memory slot) as it warped every slot on its own, paired indexing."""
    grids = np.full((len(log), 1 + len(history)) + log.meta.grid_shape, UNOBSERVED, np.uint8)
    grids[:, 0] = log.semantic
    for i, k in enumerate(history, start=1):
        for t in range(k, len(log)):
            rows, cols, inside = warp_indices(log.poses[t - k], log.poses[t], log.meta)
            grids[t, i] = np.where(inside, log.semantic[t - k][rows, cols], UNOBSERVED)
    return grids


def test_stacked_frames_sharing_each_frames_world_coordinates_equal_warping_each_slot(tiny_log):
    history = (1, 2, 5, 10)
    np.testing.assert_array_equal(stack_frames(tiny_log, history)[0],
                                  _stack_reference(tiny_log, history))


def test_memory_gate_mix_by_index_equals_the_one_hot_product(tiny_log):
    rng = np.random.default_rng(5)
    n_classes = len(tiny_log.meta.classes)
    trace = memory_trace(tiny_log)
    gate = MemoryGate()
    gate.weights_ = rng.random((n_classes, gate.n_bins)).astype(np.float32)
    gate.moved_weights_ = np.zeros(N_AGE_BINS, np.float32)   # the lost-car mix (unchanged) off
    probs = rng.dirichlet(np.ones(n_classes), size=tiny_log.semantic.shape).astype(np.float32)
    probs = np.ascontiguousarray(probs.transpose(0, 3, 1, 2))          # (T, C, H, W)
    known = trace.remembered != UNOBSERVED
    cls = np.minimum(np.where(known, trace.remembered, 0), n_classes - 1)
    w = np.where(known & (tiny_log.semantic == UNOBSERVED),
                 gate.weights_[cls, gate_bins(trace)], 0.0).astype(np.float32)[:, None]
    onehot = trace.remembered[:, None] == np.arange(n_classes)[None, :, None, None]
    expected = probs * (1.0 - w) + w * onehot
    assert (w > 0).any() and (w == 0).any()
    np.testing.assert_array_equal(gate.apply(probs.copy(), trace, tiny_log.semantic), expected)
