"""Context prior: how often normal driving shows this kind of object on this kind of ground.

The object pass of :func:`driving.scoring.surprise.raw_maps` hides every observed object (with a
margin) in all frames and the memory, and the model says what the ground there should be.
This module turns that into a per-cell surprise for the object that *is* there:
``max(0, -log [P(category | ground) / P(category)])`` -- how many times rarer this kind of
object is on this ground than on ground in general (pointwise mutual information),
where

* the **ground** is the model's layout posterior (off-road, sidewalk, lane marking, road)
  with road split by the distance to the kerb (the nearest off-road or sidewalk cell of the
  frame's layout): ``road_kerbside`` (parking strips) and ``road_lane`` (driving lanes);
* the **category** is the observed object class, vehicles split into ``vehicle_static``
  (the same cell was a vehicle ``static_offset`` frames earlier, warped into this frame)
  and ``vehicle`` (moving, or not seen long enough to tell);
* the probabilities are counted on the normal training logs' frames (soft counts over the
  model's posterior for object cells, observed layout cells counted as they are,
  add-``alpha`` smoothing).

Debris on a driving lane, or a car standing still in one, is rare on normal frames
(bins and poles stand on the sidewalk, parked cars at the kerb), whatever the network's
own probabilities say: a network trained to reconstruct grids spreads little mass on
objects anywhere, so its raw ``-log p(object)`` is about as large on the sidewalk as on
the lane. Dividing by the category's overall rate keeps small, rare objects (pedestrians
on the sidewalk) from being surprising just for being rare.

Example:
    >>> prior = ContextPrior(history=(2, 5, 10, 20))                      # doctest: +SKIP
    >>> ground, category = prior.inputs(layout_probs, observed, grids, 0.5)  # doctest: +SKIP
    >>> prior.add(ground, category, observed); prior.finish()            # doctest: +SKIP
    >>> nats = prior.surprise(ground, category)                            # doctest: +SKIP
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import distance_transform_edt

from ..kernels import dilate_by_rows, layout_posterior
from ..schema import (LANE_MARKING, LAYOUT_CLASSES, OFF_ROAD, PEDESTRIAN, ROAD, SIDEWALK,
                     STATIC_OBSTACLE, VEHICLE)

GROUNDS = ("off_road", "sidewalk", "lane_marking", "road_kerbside", "road_lane")
CATEGORIES = ("vehicle_static", "vehicle", "pedestrian", "static_obstacle")


def ground_posterior(layout_probs: np.ndarray, observed: np.ndarray, resolution_m: float,
                     kerb_m: float) -> np.ndarray:
    """``(B, 5, H, W)`` float32 posterior over :data:`GROUNDS` for every cell.

    Args:
        layout_probs: the model's probabilities of off-road, road, lane marking and
            sidewalk (class ids 0-3) ``(B, 4, H, W)`` from the object pass.
        observed: observed classes ``(B, H, W)``; observed layout cells are certain.
        resolution_m: cell size.
        kerb_m: road cells nearer than this to the kerb are ``road_kerbside``.
    """
    layout_probs = np.asarray(layout_probs, dtype=np.float32)
    n_frames, _, h, w = layout_probs.shape
    q = np.empty((n_frames, len(LAYOUT_CLASSES), h, w), np.float32)
    kerb = np.empty((n_frames, h, w), bool)          # the likeliest layout is off-road or sidewalk
    layout_posterior(layout_probs, observed, len(LAYOUT_CLASSES), OFF_ROAD, SIDEWALK, q, kerb)
    kerbside = near_kerb(kerb, resolution_m, kerb_m)
    out = np.empty((len(q), len(GROUNDS)) + q.shape[2:], np.float32)
    out[:, 0], out[:, 1], out[:, 2] = q[:, OFF_ROAD], q[:, SIDEWALK], q[:, LANE_MARKING]
    out[:, 3] = q[:, ROAD] * kerbside
    out[:, 4] = q[:, ROAD] * ~kerbside
    return out


def near_kerb(kerb: np.ndarray, resolution_m: float, kerb_m: float) -> np.ndarray:
    """``(B, H, W)`` bool: cells whose centre is nearer than ``kerb_m`` to a ``kerb`` cell's
    (``(B, H, W)`` bool), kerb cells included.

    The cells ``distance_transform_edt(~kerb) * resolution_m < kerb_m`` gives, found as a
    dilation by the disc of those offsets (the same ``sqrt(dy**2 + dx**2)`` in float64):
    a cell is near when some row of the disc, at its row offset, holds a kerb cell within
    that row's half-width (one compiled pass, ``driving.kernels.dilate_by_rows``), instead
    of an exact distance for every cell. A grid without a
    kerb cell keeps scipy's answer (its transform then measures from a point outside the
    grid).
    """
    reach = int(kerb_m / resolution_m) + 1
    offsets = np.arange(-reach, reach + 1)
    rows, halves = [], []
    for dy in offsets:
        inside = np.sqrt(np.float64(dy * dy) + offsets.astype(np.float64) ** 2) * resolution_m < kerb_m
        if inside.any():                                 # the disc's rows are symmetric runs
            rows.append(dy)
            halves.append(int(offsets[inside].max()))
    out = np.empty_like(kerb, dtype=bool)
    dilate_by_rows(kerb, np.array(rows, np.int64), np.array(halves, np.int64), out)
    for i in np.flatnonzero(~kerb.any((1, 2))):
        out[i] = distance_transform_edt(~kerb[i]) * resolution_m < kerb_m
    return out


def object_category(observed: np.ndarray, earlier: np.ndarray | None) -> np.ndarray:
    """``(B, H, W)`` int8 index into :data:`CATEGORIES` (-1: not an object).

    ``earlier``: the grid ``static_offset`` frames before, warped into these frames
    (None: no such history slot, every vehicle counts as moving)."""
    category = np.full(observed.shape, -1, np.int8)
    vehicle = observed == VEHICLE
    category[vehicle] = 1
    if earlier is not None:
        category[vehicle & (earlier == VEHICLE)] = 0
    category[observed == PEDESTRIAN] = 2
    category[observed == STATIC_OBSTACLE] = 3
    return category


class ContextPrior:
    """``P(category | ground)`` counted on normal frames, and the surprise it gives.

    Args:
        history: the predictor's history offsets (which input slot is ``static_offset``).
        static_offset: frames back at which a vehicle in the same cell counts as static.
        kerb_m: width of the kerbside strip of the road.
        alpha: add-``alpha`` smoothing of the counts.
    """

    def __init__(self, history=(), static_offset: int = 10, kerb_m: float = 2.2,
                 alpha: float = 1.0):
        self.history = tuple(int(h) for h in history)
        self.static_offset = int(static_offset)
        self.kerb_m = float(kerb_m)
        self.alpha = float(alpha)
        self.counts_ = np.zeros((len(CATEGORIES), len(GROUNDS)))
        self.ground_cells_ = np.zeros(len(GROUNDS))

    @property
    def fitted(self) -> bool:
        """Whether :meth:`finish` has turned the counts into the table :meth:`surprise` reads."""
        return hasattr(self, "table_")

    @property
    def slot(self) -> int | None:
        """Input slot (of ``stack_frames``) holding the frame ``static_offset`` back."""
        if self.static_offset not in self.history:
            return None
        return 1 + self.history.index(self.static_offset)

    def inputs(self, layout_probs, observed, grids, resolution_m) -> tuple[np.ndarray, np.ndarray]:
        """Ground posterior and object category of a batch (see the functions above)."""
        earlier = grids[:, self.slot] if self.slot is not None else None
        return (ground_posterior(layout_probs, observed, resolution_m, self.kerb_m),
                object_category(observed, earlier))

    def add(self, ground: np.ndarray, category: np.ndarray, observed: np.ndarray) -> None:
        """Count a batch of normal frames."""
        cells = ground.transpose(0, 2, 3, 1)
        for c in range(len(CATEGORIES)):
            self.counts_[c] += cells[category == c].sum(0, dtype=np.float64)
        self.ground_cells_ += cells[np.isin(observed, LAYOUT_CLASSES)].sum(0, dtype=np.float64)

    def finish(self) -> "ContextPrior":
        """``table_[c, g] = P(c | g) / P(c)``: how much likelier category c is on ground g
        than on any ground."""
        total = self.ground_cells_ + self.counts_.sum(0)
        given = (self.counts_ + self.alpha) / (total + self.alpha * (len(CATEGORIES) + 1))
        rate = (self.counts_.sum(1) + self.alpha) / (total.sum() + self.alpha)
        self.table_ = given / rate[:, None]
        return self

    def surprise(self, ground: np.ndarray, category: np.ndarray) -> np.ndarray:
        """``max(0, -log E_ground[P(category | ground) / P(category)])`` in nats
        ``(B, H, W)`` float32 (0 off objects and where the object is where it belongs)."""
        table = self.table_.astype(np.float32)[np.maximum(category, 0)]   # (B, H, W, G)
        p = np.einsum("bghw,bhwg->bhw", ground, table)
        nats = -np.log(np.maximum(p, 1e-12))
        return np.where(category >= 0, np.maximum(nats, 0.0), 0.0).astype(np.float32)

    def to_dict(self) -> dict:
        return {"history": list(self.history), "static_offset": self.static_offset,
                "kerb_m": self.kerb_m, "alpha": self.alpha, "counts": self.counts_.tolist(),
                "ground_cells": self.ground_cells_.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "ContextPrior":
        out = cls(d["history"], d["static_offset"], d["kerb_m"], d["alpha"])
        out.counts_ = np.asarray(d["counts"], dtype=np.float64)
        out.ground_cells_ = np.asarray(d["ground_cells"], dtype=np.float64)
        return out.finish()


def fit_on_maps(prior: ContextPrior, maps: list[dict]) -> ContextPrior:
    """Fit ``prior`` on the ``context_inputs`` that :func:`driving.scoring.surprise.raw_maps` kept
    for normal logs (the prior was not fitted yet); the maps are left as they are (see
    :func:`with_context`)."""
    for m in maps:
        for ground, category, observed in m["context_inputs"]:
            prior.add(ground, category, observed)
    return prior.finish()


def with_context(prior: ContextPrior, maps: dict) -> dict:
    """A copy of one log's :func:`~driving.scoring.surprise.raw_maps` output with its
    ``object_context`` map under the fitted ``prior`` (from the kept ``context_inputs``,
    which the copy drops)."""
    out = {name: m for name, m in maps.items() if name != "context_inputs"}
    out["object_context"] = np.concatenate([prior.surprise(ground, category)
                                            for ground, category, _ in maps["context_inputs"]])
    return out
