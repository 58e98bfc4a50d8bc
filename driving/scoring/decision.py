"""The class reported for a hidden cell: road layout first, from a filtered belief.

The network's argmax under-reports road in hidden cells: next to traffic and parked cars
its probability spreads over road, lane marking and the object classes (a car may hide
behind a car), and one frame's prediction of a cell far away or deep in a shadow is
noisy. Road layout is static and is what an engineer reads off the replay, so:

* **belief** (:class:`RoadBelief`): the road-layout probability ``p(road) + p(lane
  marking)`` of every hidden cell inside the sensor range is filtered over time in a
  world-fixed raster (an exponential average, weight ``ALPHA`` on the newest frame, over
  the frames in which the cell was hidden in range; causal: only the frames so far).
  Cells beyond the range keep their frame's value (the filter would drag the stale
  guesses of far-away cells along);
* **decision** (:func:`decide`): a hidden cell is reported as road (or lane marking,
  whichever is likelier now) when that belief reaches ``road_threshold``, and as the
  likeliest other class otherwise.

**Road layout under objects** (:func:`layout_mass`): the static layout is there under a
car too, and what an engineer asks of a hidden cell is also "is there road here?", not only
"what is on top". The network's probabilities of the four layout classes, renormalised,
give ``P(road surface | layout)``; a cell is reported as road surface where it is at least
one half (``LAYOUT_THRESHOLD``: the likelier of road surface and not). This is the amodal
road layout that ``evaluate`` scores against the simulator's ``layout_true``.

The class probabilities themselves (and every ranking metric) are unchanged. The
threshold is fitted self-supervised, like the predictor's future targets: on the
normal training logs, the hidden cells inside the sensor range that a later frame
of the same log saw (``inputs.future_targets``), choosing the threshold whose road IoU
on those cells is highest (:class:`RoadThresholdFit`). No simulator truth is read.
"""
from __future__ import annotations

import numpy as np

from core.metrics import iou

from ..model.baselines import WorldCells
from ..inputs import future_targets
from ..kernels import cell_shape, check_cell_shapes, decide_cells, layout_mass_cells
from ..schema import LANE_MARKING, LAYOUT_CLASSES, ROAD, UNOBSERVED
from ..warp import sensor_range_mask

ALPHA = 0.3                         # weight of the newest frame in the belief
THRESHOLDS = tuple(np.round(np.arange(0.2, 0.61, 0.05), 2))
FUTURE = (1, 2, 5, 10, 20)          # later frames whose observations are the targets
LAYOUT_THRESHOLD = 0.5              # road surface where P(road surface | layout) >= this


def road_mass(probs: np.ndarray) -> np.ndarray:
    """``p(road) + p(lane marking)``, ``(N, H, W)`` from ``(N, C, H, W)``."""
    return probs[:, ROAD] + probs[:, LANE_MARKING]


def layout_mass(probs: np.ndarray, cells: np.ndarray | None = None,
                out: np.ndarray | None = None) -> np.ndarray:
    """``P(road surface | layout)``: road and lane marking over the four layout classes
    (off-road, road, lane marking, sidewalk); classes on axis 1 (``(N, C, H, W)`` ->
    ``(N, H, W)``, ``(n, C)`` -> ``(n,)``); 0.5 where the layout has no mass at all.
    ``cells`` (``(N, H, W)`` bool; None: every cell) are the cells computed; ``out`` (None:
    a new array) is written on those cells only.
    float16 is refused: numba computes no float16, and the float32 sums differ from it."""
    probs = np.asarray(probs)
    if probs.dtype == np.float16:
        raise TypeError("layout_mass: float16 probabilities are not supported "
                        "(pass float32 or float64)")
    shape = cell_shape(probs)
    out = np.empty(shape, np.float32) if out is None else out
    cells = np.ones(shape, bool) if cells is None else cells
    check_cell_shapes("layout_mass", shape, cells=cells, out=out)
    grid = probs.ndim == 2                       # (n, C): a 1x1 grid per row
    dtype = probs.dtype.type
    layout_mass_cells(probs[:, :, None, None] if grid else probs,
                      cells[:, None, None] if grid else cells, len(LAYOUT_CLASSES), ROAD,
                      LANE_MARKING, dtype(1e-6), dtype(0.5), out[:, None, None] if grid else out)
    return out


class RoadBelief:
    """World-fixed, causal exponential average of hidden cells' road-layout probability.

    Feed the frames of one log in order (:meth:`update`, any batch size); each call
    returns the belief of every cell of those frames: the filtered value where the cell
    is hidden inside the sensor range, the frame's own value elsewhere.

    Args:
        log: the drive log (its poses and visibility; the range is read from the log,
            ``warp.sensor_range_mask``).
        alpha: weight of the newest frame.
        world: the log's :class:`~driving.model.baselines.WorldCells` (None: computed here).
    """

    def __init__(self, log, alpha: float = ALPHA, world: WorldCells | None = None):
        self.alpha = alpha
        self.visible = log.visible
        self.in_range = sensor_range_mask(log)
        world = WorldCells(log) if world is None else world
        self.cells = world.flat                      # (T, H, W) into the raveled raster
        self.world = np.full(world.shape[0] * world.shape[1], np.nan, np.float32)

    def update(self, start: int, mass: np.ndarray) -> np.ndarray:
        """Belief ``(B, H, W)`` of frames ``start .. start + B - 1`` given their ``mass``."""
        out = np.array(mass, dtype=np.float32)
        for i in range(len(out)):
            t = start + i
            hidden = ~self.visible[t] & self.in_range
            cells, m = self.cells[t][hidden], out[i][hidden]
            before = self.world[cells]
            now = np.where(np.isnan(before), m, (1.0 - self.alpha) * before + self.alpha * m)
            self.world[cells] = now
            out[i][hidden] = now
        return out


def decide(probs: np.ndarray, road_threshold: float | None = None,
           belief: np.ndarray | None = None) -> np.ndarray:
    """Reported classes ``(N, H, W)`` uint8 from probabilities ``(N, C, H, W)``.

    Args:
        probs: class probabilities (float16 is compared as float32: widening is exact,
            so the comparisons and argmax are those of float16).
        road_threshold: report road layout where ``belief`` (default: this frame's
            :func:`road_mass`) reaches it; None: the plain argmax.
        belief: ``(N, H, W)`` the filtered road-layout belief (:class:`RoadBelief`).
    """
    out = np.empty(cell_shape(probs), np.uint8)
    compared = probs.astype(np.float32) if probs.dtype == np.float16 else probs   # numba has no float16
    if road_threshold is None:                   # the plain argmax: no cell is layout
        decide_cells(compared, np.zeros(out.shape, bool), -1, -1, out)
        return out
    belief = road_mass(probs) if belief is None else belief     # in the input's precision
    check_cell_shapes("decide", out.shape, belief=belief)
    decide_cells(compared, belief >= road_threshold, ROAD, LANE_MARKING, out)   # one compiled pass
    return out


def decide_log(log, probs: np.ndarray, road_threshold: float | None) -> np.ndarray:
    """:func:`decide` for every frame of a log (``probs`` ``(T, C, H, W)``), with the belief."""
    if road_threshold is None:
        return decide(probs)
    return decide(probs, road_threshold, RoadBelief(log).update(0, road_mass(probs)))


class RoadThresholdFit:
    """Collects the self-supervised targets of calibration logs; :meth:`best` picks the threshold."""

    def __init__(self, thresholds=THRESHOLDS):
        self.thresholds = tuple(float(t) for t in thresholds)
        self.belief: list[np.ndarray] = []
        self.road: list[np.ndarray] = []

    def add(self, log, probs: np.ndarray, world: WorldCells | None = None) -> None:
        """Hidden in-range cells of ``log`` that later frames saw: their belief and class
        (``world``: the log's :class:`WorldCells`, None: computed here)."""
        belief = RoadBelief(log, world=world).update(0, road_mass(probs))
        later = future_targets(log, FUTURE)
        keep = (later != UNOBSERVED) & ~log.visible & sensor_range_mask(log)[None]
        self.belief.append(belief[keep])
        self.road.append(np.isin(later[keep], (ROAD, LANE_MARKING)))

    def best(self) -> float | None:
        """The threshold with the highest road IoU (ties: the one nearest 0.5); None
        without targets."""
        belief = np.concatenate(self.belief) if self.belief else np.zeros(0)
        if not len(belief):
            return None
        road = np.concatenate(self.road)
        scores = [iou(road, belief >= t) for t in self.thresholds]
        best = max(scores)
        candidates = [t for t, s in zip(self.thresholds, scores) if s >= best - 1e-9]
        return min(candidates, key=lambda t: abs(t - 0.5))
