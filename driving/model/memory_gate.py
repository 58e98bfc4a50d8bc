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
bins borrow from all classes seen as recently and as surely, see :meth:`MemoryGate.finish`). Fitted
per world, on that world's own normal logs (a static layout remembered for a minute
stays right; a car remembered for two seconds has often moved on).

Example:
    >>> gate = MemoryGate().fit(probs_list, traces, targets)     # doctest: +SKIP
    >>> gate.apply(probs, trace, observed)                        # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..schema import UNOBSERVED, DriveLog
from .baselines import world_cells

AGE_EDGES_S = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)   # age bins: [0, .25), ..., [16 s, inf)
STREAK_EDGES = (2, 4, 8, 16)                         # frames seen in a row: 1, 2-3, ..., 16+
WEIGHTS = np.round(np.concatenate([np.linspace(0.0, 0.9, 19), [0.95, 0.98, 0.99]]), 3)
MIN_CELLS = 200                                      # a class's bin counts as this many pooled targets
MAX_CELLS = 20000                                    # targets kept per bin (seeded sample)


@dataclass
class MemoryTrace:
    """Per frame and cell, ``(T, H, W)``: the class last seen (255: never), seconds since,
    and how many frames in a row it was seen as that class."""

    remembered: np.ndarray   # uint8
    age_s: np.ndarray        # float32
    streak: np.ndarray       # int32

    def __getitem__(self, index) -> "MemoryTrace":
        return MemoryTrace(self.remembered[index], self.age_s[index], self.streak[index])


def memory_trace(log: DriveLog) -> MemoryTrace:
    """The world-fixed memory of a log after each frame's observation (visible cells:
    age 0)."""
    t_total = len(log)
    remembered = np.full(log.semantic.shape, UNOBSERVED, np.uint8)
    age = np.full(log.semantic.shape, np.inf, np.float32)
    streak = np.zeros(log.semantic.shape, np.int32)
    if not t_total:
        return MemoryTrace(remembered, age, streak)
    ix, iy = world_cells(log)
    shape = (int(ix.max()) + 1, int(iy.max()) + 1)
    cls = np.full(shape, UNOBSERVED, np.uint8)
    seen_at = np.full(shape, -np.inf)
    run = np.zeros(shape, np.int32)
    times = np.asarray(log.timestamp, dtype=np.float64)
    for t in range(t_total):
        seen = log.visible[t] & (log.semantic[t] != UNOBSERVED)
        x, y, c = ix[t][seen], iy[t][seen], log.semantic[t][seen]
        same = cls[x, y] == c
        run[x, y] = np.where(same, run[x, y] + 1, 1)
        cls[x, y] = c
        seen_at[x, y] = times[t]
        remembered[t] = cls[ix[t], iy[t]]
        age[t] = times[t] - seen_at[ix[t], iy[t]]
        streak[t] = run[ix[t], iy[t]]
    return MemoryTrace(remembered, age, streak)


def gate_bins(trace: MemoryTrace) -> np.ndarray:
    """Flat (age bin, streak bin) index of every cell, ``(T, H, W)`` int64."""
    age_bin = np.searchsorted(np.asarray(AGE_EDGES_S), trace.age_s, side="right")
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
        return (len(AGE_EDGES_S) + 1) * (len(STREAK_EDGES) + 1)

    def add(self, probs: np.ndarray, trace: MemoryTrace, target: np.ndarray,
            observed: np.ndarray) -> "MemoryGate":
        """Collect one log's targets: the network's probabilities ``(T, C, H, W)``, its
        memory trace, what later frames saw ``(T, H, W)`` (255: nothing), the observed grids."""
        if not hasattr(self, "_match"):
            self._n_classes = probs.shape[1]
            self._match, self._p_true = {}, {}
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
        return self

    def finish(self) -> "MemoryGate":
        """Choose every bin's weight from the collected targets.

        A class's bin with few targets borrows from the same (age, streak) bin pooled over
        all classes (shrunk towards it with the weight of ``MIN_CELLS`` targets), and a
        pooled bin with none takes the next younger one's: an object the normal logs hardly
        ever show hidden (debris) is trusted like everything else seen as recently and as
        surely, never dropped in favour of the network's background guess.
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
            for k in range(self.n_bins):
                n = self.cells_[m, k]
                own = WEIGHTS[int(np.argmax(ll[m, k]))] if n else 0.0
                self.weights_[m, k] = (n * own + MIN_CELLS * pooled[k]) / (n + MIN_CELLS)
        for name in ("_match", "_p_true", "_n_classes"):
            self.__dict__.pop(name, None)
        return self

    def fit(self, probs, traces, targets, observed) -> "MemoryGate":
        """:meth:`add` every log (lists, one entry per log), then :meth:`finish`."""
        for p, trace, target, obs in zip(probs, traces, targets, observed):
            self.add(p, trace, target, obs)
        return self.finish()

    def weight(self, trace: MemoryTrace) -> np.ndarray:
        """``w`` of every cell, ``(T, H, W)`` float32 (0 where nothing is remembered)."""
        known = trace.remembered != UNOBSERVED
        cls = np.where(known, trace.remembered, 0).astype(np.int64)
        cls = np.minimum(cls, self.weights_.shape[0] - 1)
        return np.where(known, self.weights_[cls, gate_bins(trace)], 0.0).astype(np.float32)

    def apply(self, probs: np.ndarray, trace: MemoryTrace, observed: np.ndarray) -> np.ndarray:
        """In place on the hidden cells (``observed`` 255) of ``probs`` ``(N, C, H, W)``;
        returns ``probs``."""
        w = np.where(observed == UNOBSERVED, self.weight(trace), 0.0)[:, None]   # (N, 1, H, W)
        if not w.any():
            return probs
        onehot = trace.remembered[:, None] == np.arange(probs.shape[1])[None, :, None, None]
        probs *= 1.0 - w
        probs += w * onehot
        return probs

    def to_dict(self) -> dict:
        return {"age_edges_s": list(AGE_EDGES_S), "streak_edges": list(STREAK_EDGES),
                "weights": self.weights_.tolist(), "cells": self.cells_.tolist(),
                "random_state": self.random_state}

    @classmethod
    def from_dict(cls, d: dict) -> "MemoryGate":
        if tuple(d["age_edges_s"]) != AGE_EDGES_S or tuple(d["streak_edges"]) != STREAK_EDGES:
            raise ValueError("memory gate bins differ from this unmask's; retrain the model")
        out = cls(d["random_state"])
        out.weights_ = np.asarray(d["weights"], dtype=np.float32)
        out.cells_ = np.asarray(d["cells"], dtype=np.int64)
        return out
