"""The memory gate: never know less about a hidden cell than the memory does.

A network trained to reconstruct whole grids hedges on hidden cells: where the sensor saw
debris a second ago and now cannot, it spreads its mass towards the background. The
world-fixed memory (:func:`memory_trace`: the class last seen in every world cell, how
long ago and how many frames in a row) is often right there. The gate mixes the two,

    p = w * onehot(remembered class) + (1 - w) * p_network,

with a weight ``w`` per remembered class, age bin and streak bin -- how recently and how
surely the cell was seen -- learned from the logs themselves: on hidden cells that later
frames of the same log saw (``inputs.future_targets``; no simulator truth), ``w`` is the
value in :data:`WEIGHTS` that maximises the log-likelihood of what was revealed (sparse
bins borrow from all classes seen as recently and as surely, a static obstacle's from full
trust, see :meth:`MemoryGate.finish`). Fitted per world, on that world's own normal logs (a
static layout remembered for a minute stays right; a car remembered for two seconds has
often moved on).

A world-fixed memory is wrong by design for fast traffic: a highway car at 30 m/s moves 12
cells per 5 Hz frame. So the trace also carries a constant-velocity extrapolation of the
vehicles it lost sight of (:func:`memory_trace`, ``moved_age_s``): every vehicle blob seen
in two frames in a row has a velocity (its world-frame centroid's displacement between
them); once it is no longer seen, its last cells shifted by velocity times the time since
are "a car is probably here now". After the memory term a second mix

    p = v * onehot(vehicle) + (1 - v) * p,

puts weight ``v`` per age bin of that extrapolation on the vehicle. ``v`` is fitted on the
cells the extrapolation carried a lost car to that the sensor *does* see in that frame: the
share that holds a vehicle (shrunk towards 0 where they are few). Not on the hidden cells'
revealed targets: a later frame reveals a world-fixed cell after a fast car has left it
(on a highway log 0-1 % of the hidden carried cells younger than 2 s were revealed as a
vehicle; the simulator had a car on 70-77 % of them).

Example:
    >>> gate = MemoryGate().fit(probs_list, traces, targets)     # doctest: +SKIP
    >>> gate.apply(probs, trace, observed)                        # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..kernels import cell_shape, check_cell_shapes, memory_gate_mix, trace_cells
from ..schema import STATIC_OBSTACLE, UNOBSERVED, VEHICLE, DriveLog
from .baselines import WorldCells, flat_cells

AGE_EDGES_S = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)   # age bins: [0, .25), ..., [16 s, inf)
STREAK_EDGES = (2, 4, 8, 16)                         # frames seen in a row: 1, 2-3, ..., 16+
N_AGE_BINS = len(AGE_EDGES_S) + 1
WEIGHTS = np.round(np.concatenate([np.linspace(0.0, 0.9, 19), [0.95, 0.98, 0.99]]), 3)
MIN_CELLS = 200                                      # a class's bin counts as this many pooled targets
MAX_CELLS = 20000                                    # targets kept per bin (seeded sample)
# Extrapolation: the fastest world-frame vehicle speed a match between two frames may imply
# (a physical bound, above any road's traffic, not a tuned value), and how long a lost car
# is carried forward (the last age bin the gate can weight separately starts there).
MAX_VEHICLE_SPEED_MPS = 60.0
MAX_EXTRAPOLATION_S = AGE_EDGES_S[-3]


@dataclass
class MemoryTrace:
    """Per frame and cell, ``(T, H, W)``: the class last seen (255: never), seconds since,
    and how many frames in a row it was seen as that class."""

    remembered: np.ndarray   # uint8
    age_s: np.ndarray        # float32
    streak: np.ndarray       # int32
    moved_age_s: np.ndarray  # float32: seconds since the car extrapolated here was seen (inf: none)

    def __getitem__(self, index) -> "MemoryTrace":
        return MemoryTrace(self.remembered[index], self.age_s[index], self.streak[index],
                           self.moved_age_s[index])


def memory_trace(log: DriveLog, world: WorldCells | None = None) -> MemoryTrace:
    """The world-fixed memory of a log after each frame's observation (visible cells:
    age 0), and where the vehicles it lost sight of would be now (:class:`VehicleTracks`).
    ``world``: the log's :class:`~driving.model.baselines.WorldCells` (None: computed here)."""
    t_total = len(log)
    remembered = np.full(log.semantic.shape, UNOBSERVED, np.uint8)
    age = np.full(log.semantic.shape, np.inf, np.float32)
    streak = np.zeros(log.semantic.shape, np.int32)
    moved = np.full(log.semantic.shape, np.inf, np.float32)
    if not t_total:
        return MemoryTrace(remembered, age, streak, moved)
    world = WorldCells(log) if world is None else world
    ix, iy, shape = world.ix, world.iy, world.shape
    cls = np.full(shape[0] * shape[1], UNOBSERVED, np.uint8)   # rasters raveled, as world.flat
    seen_at = np.full(cls.shape, -np.inf)
    run = np.zeros(cls.shape, np.int32)
    times = np.asarray(log.timestamp, dtype=np.float64)
    trace_cells(world.flat, log.visible, log.semantic, times, UNOBSERVED, cls, run, seen_at,
                remembered, age, streak)
    tracks = VehicleTracks(shape, log.meta.resolution_m)
    for t in range(t_total):
        moved[t] = tracks.update(log.semantic[t] == VEHICLE, ix[t], iy[t], times[t])
    return MemoryTrace(remembered, age, streak, moved)


class VehicleTracks:
    """Constant-velocity extrapolation of lost vehicles, in a world raster of ``shape``.

    Each frame's vehicle blobs (4-connected) are matched to the previous frame's by their
    world centroid (nearest to where the old blob's velocity puts it, within
    :data:`MAX_VEHICLE_SPEED_MPS`); a match gives the blob a velocity. A blob with a
    velocity that is not matched in the next frame is lost: for up to
    :data:`MAX_EXTRAPOLATION_S` its last world cells are shifted by velocity times the
    time since it was seen, and :meth:`update` returns, per cell of the current frame, the
    seconds since the car painted there was seen (the youngest such car; inf: none).
    """

    def __init__(self, shape: tuple[int, int], resolution_m: float):
        self.shape = shape
        self.max_cells_per_s = MAX_VEHICLE_SPEED_MPS / resolution_m
        self._stamp = np.full(shape, -1, np.int32)   # which update painted a world cell
        self._age = np.zeros(shape, np.float32)
        self._frame = 0
        self._last: list[dict] = []                  # blobs of the previous frame
        self._last_time = None
        self._lost: list[dict] = []

    def update(self, vehicle: np.ndarray, ix: np.ndarray, iy: np.ndarray, time: float
               ) -> np.ndarray:
        """Feed one frame (``vehicle`` mask, world indices ``ix``/``iy``, all ``(H, W)``);
        returns the extrapolation's age map ``(H, W)`` float32."""
        blobs = _blobs(vehicle, ix, iy, time)
        if self._last_time is not None:
            self._match(blobs, time - self._last_time)
        self._lost = [b for b in self._lost if time - b["time"] <= MAX_EXTRAPOLATION_S]
        self._last, self._last_time = blobs, time
        self._frame += 1
        out = np.full(ix.shape, np.inf, np.float32)
        if not self._lost:
            return out
        for blob in sorted(self._lost, key=lambda b: b["time"]):   # the youngest paints last
            shift = blob["velocity"] * (time - blob["time"])
            x = blob["x"] + int(np.rint(shift[0]))
            y = blob["y"] + int(np.rint(shift[1]))
            inside = (x >= 0) & (x < self.shape[0]) & (y >= 0) & (y < self.shape[1])
            self._stamp[x[inside], y[inside]] = self._frame
            self._age[x[inside], y[inside]] = time - blob["time"]
        cells = flat_cells(ix, iy, self.shape)        # raveled: one gather, not a paired one
        painted = self._stamp.ravel()[cells] == self._frame
        out[painted] = self._age.ravel()[cells[painted]]
        return out

    def _match(self, blobs: list[dict], dt: float) -> None:
        """Give ``blobs`` the velocity of the previous frame's blob they continue; previous
        blobs with a velocity and no continuation become lost. (Painting a continued blob's
        previous footprint too, for the hidden part of a partly seen car, was tried: with it
        21 % of the hidden carried cells younger than 0.25 s held a vehicle on a town log,
        84 % without; 0.2 % on a highway log.)"""
        if dt <= 0:
            return
        reach = self.max_cells_per_s * dt
        pairs = []
        for i, old in enumerate(self._last):
            guess = old["centroid"] + (old["velocity"] * dt if old["velocity"] is not None else 0.0)
            for j, new in enumerate(blobs):
                d = float(np.hypot(*(new["centroid"] - guess)))
                if d <= reach:
                    pairs.append((d, i, j))
        used_old, used_new = set(), set()
        for _, i, j in sorted(pairs):                # greedy: the closest pairs first
            if i in used_old or j in used_new:
                continue
            used_old.add(i)
            used_new.add(j)
            blobs[j]["velocity"] = (blobs[j]["centroid"] - self._last[i]["centroid"]) / dt
        self._lost += [old for i, old in enumerate(self._last)
                       if i not in used_old and old["velocity"] is not None]


def _blobs(vehicle: np.ndarray, ix: np.ndarray, iy: np.ndarray, time: float) -> list[dict]:
    """The 4-connected vehicle blobs of one frame: world cells, centroid, time."""
    labels, n = ndimage.label(vehicle)
    if not n:
        return []
    flat = labels.ravel()
    cells = np.flatnonzero(flat)                           # sort the blobs' cells only
    order = cells[np.argsort(flat[cells], kind="stable")]  # by blob, raster order within
    bounds = np.searchsorted(flat[order], np.arange(1, n + 2))
    wx, wy = ix.ravel()[order], iy.ravel()[order]
    out = []
    for k in range(n):
        sel = slice(bounds[k], bounds[k + 1])
        x, y = wx[sel], wy[sel]
        out.append({"x": x, "y": y, "centroid": np.array([x.mean(), y.mean()]),
                    "velocity": None, "time": time})
    return out


def age_bins(age_s: np.ndarray) -> np.ndarray:
    """The age bin (``AGE_EDGES_S``) of each age in seconds, int64, same shape."""
    return np.searchsorted(np.asarray(AGE_EDGES_S), age_s, side="right")


def gate_bins(trace: MemoryTrace) -> np.ndarray:
    """Flat (age bin, streak bin) index of every cell, ``(T, H, W)`` int64."""
    age_bin = age_bins(trace.age_s)
    streak_bin = np.searchsorted(np.asarray(STREAK_EDGES), trace.streak, side="right")
    return age_bin * (len(STREAK_EDGES) + 1) + streak_bin


class MemoryGate:
    """Mixing weights ``w[remembered class, age bin, streak bin]`` (see the module docstring).

    Args:
        random_state: seeds the per-bin sample of targets.
    """

    def __init__(self, random_state: int = 0):
        self.random_state = random_state

    @property
    def n_bins(self) -> int:
        return N_AGE_BINS * (len(STREAK_EDGES) + 1)

    def add(self, probs: np.ndarray, trace: MemoryTrace, target: np.ndarray,
            observed: np.ndarray) -> "MemoryGate":
        """Collect one log's targets: the network's probabilities ``(T, C, H, W)``, its
        memory trace, what later frames saw ``(T, H, W)`` (255: nothing), the observed grids."""
        if not hasattr(self, "_match"):
            self._n_classes = probs.shape[1]
            self._match, self._p_true, self._moved = {}, {}, {}
        keep = (observed == UNOBSERVED) & (trace.remembered != UNOBSERVED) & (target != UNOBSERVED)
        t, r, c = np.nonzero(keep)
        y = target[t, r, c].astype(np.int64)
        mem = trace.remembered[t, r, c].astype(np.int64)
        q = probs[t, np.minimum(y, self._n_classes - 1), r, c]
        key = np.minimum(mem, self._n_classes - 1) * self.n_bins + gate_bins(trace)[t, r, c]
        for k in np.unique(key):
            sel = key == k
            self._match.setdefault(int(k), []).append(y[sel] == mem[sel])
            self._p_true.setdefault(int(k), []).append(q[sel].astype(np.float32))
        self._add_moved(trace, observed)
        return self

    def _add_moved(self, trace, observed) -> None:
        """Collect what the current frame sees where the extrapolation carried a lost car:
        per extrapolation age bin, whether it is a vehicle. (The hidden cells' targets are
        no test of it: later frames reveal a world-fixed cell after a fast car has left it.)"""
        seen = np.isfinite(trace.moved_age_s) & (observed != UNOBSERVED)
        hit = observed[seen] == VEHICLE
        bins = age_bins(trace.moved_age_s[seen])
        for b in np.unique(bins):
            self._moved.setdefault(int(b), []).append(hit[bins == b])

    def finish(self) -> "MemoryGate":
        """Choose every bin's weight from the collected targets.

        A class's bin with few targets borrows from the same (age, streak) bin pooled over
        all classes (shrunk towards it with the weight of ``MIN_CELLS`` targets), and a
        pooled bin with none takes the next younger one's: a class the normal logs hardly
        ever show hidden is trusted like everything else seen as recently and as surely,
        never dropped in favour of the network's background guess. A static obstacle
        (debris) shrinks towards full trust instead: it stays where it was seen, and the pool
        is mostly cars that have moved on and road the network already knows
        (``bench/experiments/driving_static_gate.py``).
        """
        n_classes = getattr(self, "_n_classes", 0)
        rng = np.random.default_rng(self.random_state)
        self.weights_ = np.zeros((n_classes, self.n_bins), np.float32)
        self.cells_ = np.zeros((n_classes, self.n_bins), np.int64)
        ll = np.zeros((n_classes, self.n_bins, len(WEIGHTS)))
        for key in sorted(getattr(self, "_match", {})):
            m, k = divmod(key, self.n_bins)
            hit, q = np.concatenate(self._match[key]), np.concatenate(self._p_true[key])
            self.cells_[m, k] = len(hit)
            if len(hit) > MAX_CELLS:             # a seeded sample, rescaled to the whole bin
                pick = rng.choice(len(hit), MAX_CELLS, replace=False)
                scale, hit, q = len(hit) / MAX_CELLS, hit[pick], q[pick]
            else:
                scale = 1.0
            ll[m, k] = scale * np.log(np.maximum(WEIGHTS[:, None] * hit[None] +
                                                 (1 - WEIGHTS[:, None]) * q[None], 1e-6)).sum(1)
        pooled_cells = self.cells_.sum(0)
        pooled = WEIGHTS[ll.sum(0).argmax(1)] if n_classes else np.zeros(self.n_bins)
        streaks = len(STREAK_EDGES) + 1
        for k in range(streaks, self.n_bins):    # no data at this age: the younger bin's
            if pooled_cells[k] == 0:
                pooled[k] = pooled[k - streaks]
        for m in range(n_classes):
            # a static obstacle stays where it was seen: its prior is full trust, not the
            # pool of classes (mostly moving cars and a road the network already knows)
            prior = np.full(self.n_bins, WEIGHTS[-1]) if m == STATIC_OBSTACLE else pooled
            for k in range(self.n_bins):
                n = self.cells_[m, k]
                own = WEIGHTS[int(np.argmax(ll[m, k]))] if n else 0.0
                self.weights_[m, k] = (n * own + MIN_CELLS * prior[k]) / (n + MIN_CELLS)
        self._finish_moved()
        for name in ("_match", "_p_true", "_moved", "_n_classes"):
            self.__dict__.pop(name, None)
        return self

    def _finish_moved(self) -> None:
        """Each extrapolation age bin's weight ``v``: the share of the cells it carried a
        lost car to that the sensor saw holding a vehicle, shrunk towards 0 (no
        extrapolation) with the weight of ``MIN_CELLS`` cells, so a bin the logs hardly show
        stays off."""
        self.moved_weights_ = np.zeros(N_AGE_BINS, np.float32)
        self.moved_cells_ = np.zeros(N_AGE_BINS, np.int64)
        for b, parts in sorted(getattr(self, "_moved", {}).items()):
            hit = np.concatenate(parts)
            self.moved_cells_[b] = len(hit)
            self.moved_weights_[b] = hit.sum() / (len(hit) + MIN_CELLS)

    def fit(self, probs, traces, targets, observed) -> "MemoryGate":
        """:meth:`add` every log (lists, one entry per log), then :meth:`finish`."""
        for p, trace, target, obs in zip(probs, traces, targets, observed):
            self.add(p, trace, target, obs)
        return self.finish()

    def apply(self, probs: np.ndarray, trace: MemoryTrace, observed: np.ndarray) -> np.ndarray:
        """In place on the hidden cells (``observed`` 255) of ``probs`` ``(N, C, H, W)``;
        returns ``probs``."""
        check_cell_shapes("MemoryGate.apply", cell_shape(probs), observed=observed,
                          remembered=trace.remembered, age_s=trace.age_s, streak=trace.streak,
                          moved_age_s=trace.moved_age_s)
        memory_gate_mix(probs, observed, trace.remembered, trace.age_s, trace.streak,
                        trace.moved_age_s, self.weights_, self.moved_weights_,
                        np.asarray(AGE_EDGES_S), np.asarray(STREAK_EDGES), VEHICLE, UNOBSERVED)
        return probs

    def to_dict(self) -> dict:
        return {"age_edges_s": list(AGE_EDGES_S), "streak_edges": list(STREAK_EDGES),
                "weights": self.weights_.tolist(), "cells": self.cells_.tolist(),
                "moved_weights": self.moved_weights_.tolist(),
                "moved_cells": self.moved_cells_.tolist(), "random_state": self.random_state}

    @classmethod
    def from_dict(cls, d: dict) -> "MemoryGate":
        if tuple(d["age_edges_s"]) != AGE_EDGES_S or tuple(d["streak_edges"]) != STREAK_EDGES:
            raise ValueError("memory gate bins differ from this unmask's; retrain the model")
        out = cls(d["random_state"])
        out.weights_ = np.asarray(d["weights"], dtype=np.float32)
        out.cells_ = np.asarray(d["cells"], dtype=np.int64)
        out.moved_weights_ = np.asarray(d["moved_weights"], dtype=np.float32)
        out.moved_cells_ = np.asarray(d["moved_cells"], dtype=np.int64)
        return out
